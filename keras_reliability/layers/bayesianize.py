"""Swap the layers of an existing model for Bayesian ones, keeping its weights."""

import warnings

import keras
import numpy as np

from keras_reliability.arguments import check_number
from keras_reliability.layers import priors
from keras_reliability.layers.conv_variational import Conv2DFlipout
from keras_reliability.layers.conv_variational import Conv2DReparameterization
from keras_reliability.layers.dense_variational import DenseFlipout
from keras_reliability.layers.dense_variational import DenseReparameterization
from keras_reliability.layers.mc_dropout import MCDropout
from keras_reliability.layers.variational import untransformed_scale

_BAYESIAN = {
    "flipout": {keras.layers.Dense: DenseFlipout, keras.layers.Conv2D: Conv2DFlipout},
    "reparameterization": {
        keras.layers.Dense: DenseReparameterization,
        keras.layers.Conv2D: Conv2DReparameterization,
    },
}
_METHODS = ("flipout", "reparameterization", "mc_dropout")
# Weights that make a layer a candidate for a posterior: a layer holding one
# of them that is not replaced is named in the "left deterministic" warning.
_KERNEL_NAMES = frozenset(
    ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel", "embeddings")
)
# Dropout-like layers that `method="mc_dropout"` leaves off at inference.
_DROPOUT_LIKE = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
_SHARED_KEYS = ("name", "trainable", "dtype", "activation", "use_bias")
_CONV_KEYS = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate")


def bayesianize(
    model,
    layers=None,
    method="flipout",
    kl_weight=1.0,
    initial_scale=1e-3,
    kernel_prior=None,
    seed=None,
):
    """Returns a copy of `model` with Bayesian layers in place of chosen ones.

    With `method="flipout"` or `"reparameterization"`, each chosen
    `keras.layers.Dense` / `Conv2D` becomes a `DenseFlipout` / `Conv2DFlipout`
    (or the `Reparameterization` variants) with the same configuration, whose
    posterior means are the original kernel and whose bias is the original
    bias; the posterior standard deviations start at `initial_scale`, small
    enough that the new model predicts like the old one. With
    `method="mc_dropout"`, each chosen `keras.layers.Dropout` becomes an
    `MCDropout` with the same rate. Every other layer is copied with its
    weights, and every other operation of a functional graph (such as the
    `Add` of `z + 3.0`, or the hard-swish of `keras.applications` models) is
    rebuilt as it was. The original model is not modified.

    Works on Sequential and functional models, including models nested in
    them and `keras.applications` models. The new model is not compiled.

    Only `Dense` and `Conv2D` layers (of exactly these classes) can be made
    Bayesian. With `layers=None`, a `UserWarning` names every other layer
    with a kernel that stays deterministic, grouped by type (for example the
    `DepthwiseConv2D` layers of MobileNet and EfficientNet); with
    `method="mc_dropout"`, it names the dropout-like layers other than
    `Dropout` (`SpatialDropout2D`, `GaussianDropout`, ...), which stay off at
    inference. Naming the layers in `layers` silences it.

    Args:
        model: a built Sequential or functional `keras.Model`.
        layers: name (or layer object) or list of names (or layer objects) of
            the layers to replace; None for every `Dense` and `Conv2D` layer
            (every `Dropout` layer for `"mc_dropout"`).
        method: "flipout", "reparameterization" or "mc_dropout".
        kl_weight: number >= 0, the new layers' `kl_weight` (usually
            1 / number of training examples).
        initial_scale: posterior standard deviation every weight starts at,
            in (1e-5, inf). The default keeps the predictions as they were;
            to fine-tune the posterior, start wider (e.g. 0.02 for an MLP on
            digits, as in `examples/bayesian_layer_swap.py`): from 1e-3 a few
            epochs barely widen it.
        kernel_prior: a `Prior` (or its serialized config) for the new
            layers; default `NormalPrior(0, 1)`.
        seed: int >= 0 seed for the new layers (the `i`-th replaced layer
            gets `seed + i`), or None.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: for an argument of the wrong type or value (the message
            names the argument and the value received), a name that is not
            a layer of the model, a chosen layer of the wrong type, an
            unbuilt model, or a subclassed model (which cannot be cloned).

    Example:

    >>> bayesian = bayesianize(trained_model, kl_weight=1 / len(x_train))
    >>> bayesian.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> bayesian.fit(x_train, y_train, epochs=5)
    """
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(
            "bayesianize: `method` must be 'flipout', 'reparameterization' or "
            f"'mc_dropout'; received {method!r}."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            "bayesianize: `model` must be a keras.Model; received "
            f"{_short_repr(model)} (a {type(model).__name__})."
        )
    if not model.built:
        raise ValueError(
            f"bayesianize: `model` ({model.name}) must be built (call it once, or give "
            "it an Input) so that its weights can be copied."
        )
    kl_weight = check_number(kl_weight, "kl_weight", positive=False, owner="bayesianize")
    initial_scale = check_number(initial_scale, "initial_scale", positive=True, owner="bayesianize")
    scale_parameter = float(untransformed_scale(initial_scale))
    priors.get(kernel_prior, "kernel_prior")  # fails here rather than halfway through the clone
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ValueError(f"bayesianize: `seed` must be an int >= 0 or None; received {seed!r}.")
    targets, left_out = _chosen_layers(model, layers, method)
    if left_out:
        warnings.warn(_left_out_message(left_out, method), UserWarning, stacklevel=2)

    pairs = []
    replaced = []

    def clone(operation):
        if operation in targets:
            new = _replacement(
                operation, method, kl_weight, scale_parameter, kernel_prior, seed, len(replaced)
            )
            replaced.append(new)
        else:
            # Layers and the raw operations of a functional graph
            # (keras.ops.Add for `z + 3.0`) alike: rebuilt from their config.
            new = operation.__class__.from_config(operation.get_config())
        pairs.append((operation, new))
        return new

    try:
        new_model = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ValueError as error:
        if pairs:  # the graph was being rebuilt: not a subclassed model
            raise
        raise ValueError(
            f"bayesianize can only rebuild Sequential and functional models; "
            f"`model` is a {type(model).__name__} that Keras cannot clone ({error}). "
            "Build a subclassed model with the Bayesian layers directly."
        ) from error

    for old, new in pairs:
        if not isinstance(old, keras.layers.Layer):
            continue  # an operation such as keras.ops.Add: no weights
        if old in targets and method != "mc_dropout":
            # numpy copies: on JAX, assigning the array itself would share a
            # buffer that a later jitted step of either model donates.
            new.kernel_loc.assign(keras.ops.convert_to_numpy(old.kernel))
            if old.use_bias:
                new.bias_loc.assign(keras.ops.convert_to_numpy(old.bias))
        else:
            new.set_weights(old.get_weights())
            if isinstance(new, keras.layers.Normalization):
                # Its call uses tensors made from the weights at build time
                # (as after `adapt` or loading); remake them from the copies.
                new.finalize_state()
    return new_model


def _short_repr(value, limit=80):
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _eligible(layer, method):
    if method == "mc_dropout":
        return type(layer) is keras.layers.Dropout
    return type(layer) in _BAYESIAN[method]


def _left_deterministic(layer, method):
    """Whether `layer`, not chosen, is one a user could expect to be replaced."""
    if method == "mc_dropout":
        return isinstance(layer, _DROPOUT_LIKE)
    return any(weight.name in _KERNEL_NAMES for weight in layer.weights)


def _left_out_message(left_out, method):
    by_type = {}
    for layer in left_out:
        by_type.setdefault(type(layer).__name__, []).append(layer.name)
    groups = "; ".join(
        f"{kind} ({len(names)}): {', '.join(repr(name) for name in names)}"
        for kind, names in by_type.items()
    )
    if method == "mc_dropout":
        return (
            f"bayesianize: {len(left_out)} dropout-like layer(s) stay inactive at "
            f"inference, as method 'mc_dropout' replaces Dropout layers only: {groups}. "
            "Name the layers to replace in `layers` to silence this warning."
        )
    return (
        f"bayesianize: {len(left_out)} layer(s) with weights stay deterministic, as "
        f"method {method!r} makes only Dense and Conv2D layers Bayesian: {groups}. "
        "Name the layers to replace in `layers` to silence this warning."
    )


def _names_list(names, limit=20):
    names = sorted(names)
    if len(names) <= limit:
        return str(names)
    return f"{names[:limit]} and {len(names) - limit} more"


def _chosen_layers(model, layers, method):
    """The layers to replace, and (for `layers=None`) those left out to warn about."""
    everything = list(_all_layers(model))
    kinds = "Dropout" if method == "mc_dropout" else "Dense or Conv2D"
    left_out = []
    if layers is None:
        chosen = [layer for layer in everything if _eligible(layer, method)]
        if not chosen:
            raise ValueError(
                f"bayesianize: `model` ({model.name}) has no {kinds} layer to replace."
            )
        left_out = [
            layer
            for layer in everything
            if not _eligible(layer, method) and _left_deterministic(layer, method)
        ]
    else:
        if isinstance(layers, (str, keras.layers.Layer)):
            layers = [layers]
        elif not isinstance(layers, (list, tuple, set, frozenset)):
            raise ValueError(
                "bayesianize: `layers` must be None, a layer name, a layer, or a list of "
                f"them; received {_short_repr(layers)} (a {type(layers).__name__})."
            )
        if not layers:
            raise ValueError(
                f"bayesianize: `layers` names no layer (received {layers!r}); pass None "
                f"to replace every {kinds} layer."
            )
        by_name = {layer.name: layer for layer in everything}
        type_names = {kind.__name__.lower() for kind in _BAYESIAN["flipout"]}
        type_names |= {type(layer).__name__.lower() for layer in everything}
        type_names.add("dropout")
        chosen = []
        for item in layers:
            if not isinstance(item, (str, keras.layers.Layer)):
                raise ValueError(
                    "bayesianize: `layers` must hold layer names or layers; it holds "
                    f"{_short_repr(item)} (a {type(item).__name__})."
                )
            layer = by_name.get(item) if isinstance(item, str) else item
            if layer is None or layer not in everything:
                hint = ""
                if isinstance(item, str) and item.lower() in type_names:
                    hint = (
                        " `layers` takes layer names or layers, not layer types: pass "
                        f"layers=None to replace every {kinds} layer."
                    )
                raise ValueError(
                    f"bayesianize: `layers` names {item!r}, which is not a layer of `model` "
                    f"({model.name}); its layers are {_names_list(by_name)}.{hint}"
                )
            if not _eligible(layer, method):
                raise ValueError(
                    f"bayesianize: `layers` names {layer.name!r}, a {type(layer).__name__}; "
                    f"method {method!r} replaces {kinds} layers only."
                )
            chosen.append(layer)
    for layer in chosen:
        if isinstance(layer, keras.layers.Conv2D) and layer.groups != 1:
            raise ValueError(
                f"bayesianize: layer {layer.name!r} is a grouped Conv2D "
                f"(groups={layer.groups}), which the Bayesian convolutions do not "
                "support; leave it out of `layers`."
            )
    return set(chosen), left_out


def _replacement(layer, method, kl_weight, scale_parameter, kernel_prior, seed, index):
    config = layer.get_config()
    if method == "mc_dropout":
        keys = ("name", "trainable", "dtype", "rate", "noise_shape", "seed")
        return MCDropout(**{key: config[key] for key in keys if key in config})
    bayesian_class = _BAYESIAN[method][type(layer)]
    keys = _SHARED_KEYS + ("units",) if type(layer) is keras.layers.Dense else _SHARED_KEYS + _CONV_KEYS
    arguments = {key: config[key] for key in keys}
    return bayesian_class(
        **arguments,
        kernel_untransformed_scale_initializer=keras.initializers.Constant(scale_parameter),
        kernel_prior=kernel_prior,
        kl_weight=kl_weight,
        seed=None if seed is None else seed + index,
    )
