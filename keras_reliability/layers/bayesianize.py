"""Swap the layers of an existing model for Bayesian ones, keeping its weights."""

import keras

from keras_reliability.arguments import check_number
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
    weights. The original model is not modified.

    Works on Sequential and functional models, including models nested in
    them. The new model is not compiled.

    Args:
        model: a built Sequential or functional `keras.Model`.
        layers: names (or layer objects) of the layers to replace; None for
            every `Dense` and `Conv2D` layer (every `Dropout` layer for
            `"mc_dropout"`).
        method: "flipout", "reparameterization" or "mc_dropout".
        kl_weight: number >= 0, the new layers' `kl_weight` (usually
            1 / number of training examples).
        initial_scale: posterior standard deviation every weight starts at,
            in (1e-5, inf). The default keeps the predictions as they were;
            to fine-tune the posterior, start wider (e.g. 0.02 for an MLP on
            digits, as in `examples/bayesian_layer_swap.py`): from 1e-3 a few
            epochs barely widen it.
        kernel_prior: a `Prior` for the new layers; default `NormalPrior(0, 1)`.
        seed: int seed for the new layers (the `i`-th replaced layer gets
            `seed + i`), or None.

    Returns:
        A new `keras.Model`.

    Raises:
        ValueError: for an unknown method, a name that is not a layer of the
            model, a chosen layer of the wrong type, an unbuilt model, or a
            subclassed model (which cannot be cloned).

    Example:

    >>> bayesian = bayesianize(trained_model, kl_weight=1 / len(x_train))
    >>> bayesian.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    >>> bayesian.fit(x_train, y_train, epochs=5)
    """
    if method not in ("flipout", "reparameterization", "mc_dropout"):
        raise ValueError(
            "`method` must be 'flipout', 'reparameterization' or 'mc_dropout'; "
            f"received {method!r}."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    if not model.built:
        raise ValueError(
            f"`model` ({model.name}) must be built (call it once, or give it an Input) "
            "so that its weights can be copied."
        )
    kl_weight = check_number(kl_weight, "kl_weight", positive=False)
    scale_parameter = float(untransformed_scale(check_number(initial_scale, "initial_scale", positive=True)))
    targets = _chosen_layers(model, layers, method)

    pairs = []
    replaced = []

    def clone(layer):
        if layer in targets:
            new = _replacement(layer, method, kl_weight, scale_parameter, kernel_prior, seed, len(replaced))
            replaced.append(new)
        else:
            new = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    try:
        new_model = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except ValueError as error:
        raise ValueError(
            f"bayesianize can only rebuild Sequential and functional models; "
            f"`model` is a {type(model).__name__} that Keras cannot clone ({error}). "
            "Build a subclassed model with the Bayesian layers directly."
        ) from error

    for old, new in pairs:
        if old in targets and method != "mc_dropout":
            # numpy copies: on JAX, assigning the array itself would share a
            # buffer that a later jitted step of either model donates.
            new.kernel_loc.assign(keras.ops.convert_to_numpy(old.kernel))
            if old.use_bias:
                new.bias_loc.assign(keras.ops.convert_to_numpy(old.bias))
        else:
            new.set_weights(old.get_weights())
    return new_model


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


def _chosen_layers(model, layers, method):
    everything = list(_all_layers(model))
    kinds = "Dropout" if method == "mc_dropout" else "Dense or Conv2D"
    if layers is None:
        chosen = [layer for layer in everything if _eligible(layer, method)]
        if not chosen:
            raise ValueError(f"`model` ({model.name}) has no {kinds} layer to replace.")
    else:
        if isinstance(layers, (str, keras.layers.Layer)):
            layers = [layers]
        by_name = {layer.name: layer for layer in everything}
        chosen = []
        for item in layers:
            layer = by_name.get(item) if isinstance(item, str) else item
            if layer is None or layer not in everything:
                raise ValueError(
                    f"`layers` names {item!r}, which is not a layer of `model` "
                    f"({model.name}); its layers are {sorted(by_name)}."
                )
            if not _eligible(layer, method):
                raise ValueError(
                    f"`layers` names {layer.name!r}, a {type(layer).__name__}; "
                    f"method {method!r} replaces {kinds} layers only."
                )
            chosen.append(layer)
    for layer in chosen:
        if isinstance(layer, keras.layers.Conv2D) and layer.groups != 1:
            raise ValueError(
                f"Layer {layer.name!r} is a grouped Conv2D (groups={layer.groups}), "
                "which the Bayesian convolutions do not support; leave it out of `layers`."
            )
    return set(chosen)


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
