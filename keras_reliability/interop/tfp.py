"""Migrate `tf_keras` models built with `tfp.layers` into Keras 3.

`tfp.layers` runs on `tf_keras` (Keras 2) only. `from_tfp` rebuilds such a
model as a Keras 3 `keras.Sequential` with this library's Bayesian layers,
carrying over the posterior of every Bayesian layer (means and standard
deviations), its prior and the weight of its KL divergence, and the weights
of the plain layers around them. TensorFlow Probability and `tf_keras` are
imported when `from_tfp` is called, never at import time.
"""

import numbers
import warnings

import keras
import numpy as np

from keras_reliability.layers.conv_variational import Conv2DFlipout
from keras_reliability.layers.conv_variational import Conv2DReparameterization
from keras_reliability.layers.dense_variational import DenseFlipout
from keras_reliability.layers.dense_variational import DenseReparameterization
from keras_reliability.layers.priors import NormalPrior
from keras_reliability.layers.variational import SCALE_FLOOR
from keras_reliability.layers.variational import untransformed_scale

_INSTALL_HINT = "pip install keras-reliability[tfp]"

# `tfp.layers` class name -> our layer class.
_BAYESIAN = {
    "DenseFlipout": DenseFlipout,
    "DenseReparameterization": DenseReparameterization,
    "Convolution2DFlipout": Conv2DFlipout,
    "Convolution2DReparameterization": Conv2DReparameterization,
}
_CONV_ATTRIBUTES = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate")

# Relative tolerance of the check that a divergence function is
# `kl_weight * KL(q || p)`: float32 sums of many KL terms agree to ~1e-6.
_RTOL = 1e-4


def from_tfp(tf_keras_model, kl_weight="infer", seed=None):
    """Converts a `tf_keras` model with `tfp.layers` into a Keras 3 model.

    Each `tfp.layers.DenseFlipout`, `DenseReparameterization`,
    `Convolution2DFlipout` and `Convolution2DReparameterization` becomes
    the `keras_reliability.layers` layer of the same name (`Conv2DFlipout`,
    `Conv2DReparameterization` for the convolutions) with the same
    posterior: the posterior means and the untransformed standard deviations
    `rho` are copied one to one (both libraries compute the standard
    deviation as `eps + softplus(rho)`, `eps` the float32 machine epsilon;
    a posterior of another parameterisation gets the `rho` that reproduces
    its standard deviations). A deterministic TFP bias (the default) becomes a plain bias;
    a Normal bias posterior becomes `bayesian_bias=True`. Normal priors with
    one mean and one standard deviation (TFP's default is Normal(0, 1))
    become `NormalPrior(loc, scale)`. Activations are carried over by name
    and checked to compute the same function in Keras 3. The plain layers
    listed below are rebuilt with the same configuration and weights.

    TFP scales the KL divergence with an arbitrary `kernel_divergence_fn`,
    typically `lambda q, p, _: tfd.kl_divergence(q, p) / num_examples`. With
    `kl_weight="infer"` the model is called twice on a batch of zeros, and
    each Bayesian layer's added loss is divided by the closed-form KL of its
    posterior from its prior; the quotient is checked to be the same for
    another posterior (so the function is `weight * KL`) and across calls
    (so it is not a Monte-Carlo estimate). A TFP layer without a prior or
    without a divergence function adds no KL, and gets `kl_weight=0`.

    The new layers sample weights at every call, as TFP's layers do
    (`sample_at_inference=True`); set `layer.sample_at_inference = False` to
    predict with the posterior means. Their random streams differ from
    TFP's, so outputs agree in distribution, not sample by sample.

    Supported layers: the four `tfp.layers` classes above and the
    `tf_keras.layers` classes `InputLayer`, `Dense`, `Conv2D`, `Dropout`,
    `Flatten`, `Reshape`, `Activation`, `MaxPooling2D`, `AveragePooling2D`,
    `GlobalMaxPooling2D`, `GlobalAveragePooling2D` and
    `BatchNormalization`, in a `tf_keras.Sequential` (nested Sequentials
    are flattened) or a functional model that is a single chain of layers.

    Args:
        tf_keras_model: a built `tf_keras` Sequential (or single-chain
            functional) model.
        kl_weight: "infer" (default) to read each layer's KL weight from its
            divergence function, or a number >= 0 used as the `kl_weight` of
            every Bayesian layer that has a prior (usually
            1 / number of training examples).
        seed: int or None; Bayesian layer `i` (counting all converted
            layers) gets the seed `seed + i`.

    Returns:
        A new, uncompiled `keras.Sequential` named like the original, whose
        layers keep the original names. The original model is not modified.

    Raises:
        ImportError: if TensorFlow Probability or `tf_keras` is not installed.
        ValueError: for a `kl_weight` that is neither "infer" nor a number
            >= 0, a bad `seed`, an object that is not a `tf_keras` model, a
            model that is not built, a subclassed or branching model, a layer
            of an unsupported type or configuration (a non-Normal posterior
            or prior, a prior whose parameters vary across weights, an
            activation with no identical Keras 3 counterpart, ...), or a
            divergence function whose weight cannot be inferred.

    Example:

    >>> import tensorflow_probability as tfp
    >>> import tf_keras
    >>> kl = lambda q, p, _: tfp.distributions.kl_divergence(q, p) / 60000
    >>> old = tf_keras.Sequential([
    ...     tf_keras.Input((784,)),
    ...     tfp.layers.DenseFlipout(128, activation="relu", kernel_divergence_fn=kl),
    ...     tfp.layers.DenseFlipout(10, kernel_divergence_fn=kl),
    ... ])
    >>> model = from_tfp(old)
    >>> model.layers[0].kl_weight  # 1 / 60000, up to float32 rounding

    References:
        Dillon et al., "TensorFlow Distributions", 2017.
        Wen et al., "Flipout: Efficient Pseudo-Independent Weight Perturbations
        on Mini-Batches", ICLR 2018.
        Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015.
    """
    kl_weight = _check_kl_weight(kl_weight)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"from_tfp: `seed` must be an int or None; received {seed!r}.")
    modules = _Modules()
    layers = _layer_chain(tf_keras_model, modules)
    input_shape, input_dtype = _input_signature(tf_keras_model)

    conversions = [_conversion(layer, modules) for layer in layers]
    bayesian = [c for c in conversions if isinstance(c, _BayesianConversion) and c.terms]
    if kl_weight is None:
        weights = _infer_kl_weights(tf_keras_model, input_shape, input_dtype, bayesian, modules)
    else:
        weights = [kl_weight] * len(bayesian)
    for conversion, weight in zip(bayesian, weights):
        conversion.kl_weight = weight

    new_layers = [
        conversion.make(None if seed is None else int(seed) + index)
        for index, conversion in enumerate(conversions)
    ]
    model = keras.Sequential(
        [keras.Input(shape=tuple(input_shape[1:]), dtype=input_dtype)] + new_layers,
        name=tf_keras_model.name,
    )
    for conversion, layer in zip(conversions, new_layers):
        conversion.assign(layer)
    return model


# Arguments and modules.


def _check_kl_weight(kl_weight):
    if isinstance(kl_weight, str) and kl_weight == "infer":
        return None
    valid = (
        not isinstance(kl_weight, bool)
        and isinstance(kl_weight, numbers.Real)
        and np.isfinite(kl_weight)
        and kl_weight >= 0
    )
    if not valid:
        raise ValueError(
            "from_tfp: `kl_weight` must be 'infer' or a finite number >= 0; "
            f"received {kl_weight!r}."
        )
    return float(kl_weight)


class _Modules:
    """TensorFlow, tf_keras and TensorFlow Probability, imported on demand."""

    def __init__(self):
        try:
            import tensorflow as tf
            import tensorflow_probability as tfp
            import tf_keras
        except ImportError as error:
            raise ImportError(
                "keras_reliability.interop.tfp.from_tfp needs TensorFlow Probability and "
                f"tf_keras ({error}). Install them with `{_INSTALL_HINT}`."
            ) from error
        self.tf = tf
        self.tf_keras = tf_keras
        self.tfp = tfp
        self.tfd = tfp.distributions

    def numpy(self, value, dtype=None):
        array = np.asarray(self.tf.convert_to_tensor(value))
        return array if dtype is None else array.astype(dtype)


# The chain of layers.


def _layer_chain(model, modules):
    tf_keras = modules.tf_keras
    if not isinstance(model, tf_keras.Model):
        hint = ""
        if isinstance(model, keras.Model):
            hint = (
                " (a Keras 3 model: use keras_reliability.layers.bayesianize to make "
                "its layers Bayesian)"
            )
        raise ValueError(
            "from_tfp: `tf_keras_model` must be a tf_keras model built with tfp.layers; "
            f"received {type(model).__name__}{hint}."
        )
    if not isinstance(model, tf_keras.Sequential) and not getattr(
        model, "_is_graph_network", False
    ):
        raise _subclassed(model)
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"from_tfp: the tf_keras model {model.name!r} is not built with a known input "
            "shape; give it an Input (or call `model.build(input_shape)`) first."
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"from_tfp: the tf_keras model {model.name!r} has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; only single-input, single-output Sequential models "
            "(or single-chain functional models) can be converted."
        )
    return _flat_layers(model, modules)


def _flat_layers(model, modules):
    tf_keras = modules.tf_keras
    if isinstance(model, tf_keras.Sequential):
        layers = list(model.layers)
    elif getattr(model, "_is_graph_network", False):
        layers = _functional_chain(model, tf_keras)
    else:
        raise _subclassed(model)
    flat = []
    for layer in layers:
        if isinstance(layer, tf_keras.layers.InputLayer):
            continue
        if isinstance(layer, tf_keras.Model):
            flat.extend(_flat_layers(layer, modules))
        else:
            flat.append(layer)
    return flat


def _subclassed(model):
    return ValueError(
        f"from_tfp: {model.name!r} is a subclassed tf_keras model "
        f"({type(model).__name__}); only Sequential models (and functional models that "
        "are a single chain of layers) can be converted."
    )


def _functional_chain(model, tf_keras):
    chain = []
    previous = model.inputs[0] if len(model.inputs) == 1 else None
    for layer in model.layers:
        if previous is None:
            break
        if isinstance(layer, tf_keras.layers.InputLayer):
            continue
        previous = _output_fed_by(layer, previous)
        chain.append(layer)
    if previous is None or len(model.outputs) != 1 or previous is not model.outputs[0]:
        raise ValueError(
            f"from_tfp: the functional tf_keras model {model.name!r} is not a single chain of "
            "layers (it has branches, several inputs or outputs, or shared layers); only "
            "Sequential models and single-chain functional models can be converted."
        )
    return chain


def _output_fed_by(layer, tensor):
    """The output of the one call of `layer` on `tensor`, else None."""
    # A nested model also has a node for its own internal graph; the call in
    # the outer model is the node whose input is `tensor`.
    outputs = []
    for index in range(len(getattr(layer, "_inbound_nodes", ()))):
        try:
            if layer.get_input_at(index) is tensor:
                outputs.append(layer.get_output_at(index))
        except (AttributeError, ValueError, RuntimeError):
            continue
    return outputs[0] if len(outputs) == 1 else None


def _input_signature(model):
    tensor = model.inputs[0]
    shape = tuple(tensor.shape.as_list())
    return shape, tensor.dtype.name


# Layer conversions.


def _conversion(layer, modules):
    kind = type(layer)
    for name, ours in _BAYESIAN.items():
        if kind is getattr(modules.tfp.layers, name):
            return _BayesianConversion(layer, ours, modules)
    for name, maker in _PLAIN.items():
        if kind is getattr(modules.tf_keras.layers, name):
            return _PlainConversion(layer, maker, modules)
    supported = [f"tfp.layers.{name}" for name in _BAYESIAN] + [
        f"tf_keras.layers.{name}" for name in ("InputLayer",) + tuple(_PLAIN)
    ]
    raise ValueError(
        f"from_tfp: layer {layer.name!r} is a {kind.__module__}.{kind.__name__}, which "
        f"from_tfp cannot convert. Supported layers: {', '.join(supported)}."
    )


def _where(layer):
    return f"from_tfp: layer {layer.name!r} ({type(layer).__name__})"


def _dtype(layer):
    policy = getattr(layer, "dtype_policy", None)
    return getattr(policy, "name", None) or layer.dtype


class _Term:
    """One KL term of a TFP layer: its divergence function and distributions."""

    def __init__(
        self, which, divergence_fn, prior, tensor_attribute, loc, scale, prior_loc, prior_scale
    ):
        self.which = which
        self.divergence_fn = divergence_fn
        self.prior = prior
        self.tensor_attribute = tensor_attribute
        self.loc = loc
        self.scale = scale
        self.prior_loc = prior_loc
        self.prior_scale = prior_scale

    def kl(self, loc, scale):
        """Closed-form KL(Normal(loc, scale) || prior), summed, in float64."""
        loc = np.asarray(loc, np.float64)
        ratio = np.asarray(scale, np.float64) / self.prior_scale
        terms = 0.5 * ratio**2 + 0.5 * ((loc - self.prior_loc) / self.prior_scale) ** 2
        return float(np.sum(terms - np.log(ratio) - 0.5))


class _BayesianConversion:
    def __init__(self, layer, target, modules):
        self.layer = layer
        self.target = target
        self.kl_weight = 0.0
        where = _where(layer)
        if layer.activity_regularizer is not None:
            raise ValueError(
                f"{where} has an activity regularizer, which from_tfp does not convert."
            )

        self.kernel = _posterior(layer.kernel_posterior, "kernel", layer, modules)
        if self.kernel[0] != "normal":
            raise ValueError(
                f"{where}: its kernel posterior must be a Normal (tfd.Independent(tfd.Normal)); "
                f"received {layer.kernel_posterior.name!r}."
            )
        self.bias = None
        if layer.bias_posterior is not None:
            self.bias = _posterior(layer.bias_posterior, "bias", layer, modules)

        kernel_kl = layer.kernel_divergence_fn is not None and layer.kernel_prior is not None
        bias_kl = (
            self.bias is not None
            and layer.bias_divergence_fn is not None
            and layer.bias_prior is not None
        )
        if self.bias is not None and self.bias[0] == "deterministic" and bias_kl:
            raise ValueError(
                f"{where} has a deterministic bias with a bias prior; from_tfp converts "
                "a bias prior only with a Normal bias posterior."
            )
        if self.bias is not None and self.bias[0] == "normal" and bias_kl != kernel_kl:
            raise ValueError(
                f"{where} has a Normal bias posterior and a KL divergence on "
                f"{'the bias only' if bias_kl else 'the kernel only'}; keras_reliability "
                "layers with `bayesian_bias=True` add the KL of both or of neither. Give "
                "the TFP layer both a kernel and a bias prior (or neither)."
            )

        self.kernel_prior = None
        self.bias_prior = None
        self.terms = []
        if kernel_kl:
            self.kernel_prior = _normal_prior(layer.kernel_prior, "kernel", layer, modules)
            self.terms.append(self._term("kernel", self.kernel, self.kernel_prior))
        if bias_kl:
            self.bias_prior = _normal_prior(layer.bias_prior, "bias", layer, modules)
            self.terms.append(self._term("bias", self.bias, self.bias_prior))
        self.activation = _activation(layer.activation, layer, modules)

    def _term(self, which, posterior, prior):
        _, loc, scale, _ = posterior
        layer = self.layer
        return _Term(
            which,
            getattr(layer, f"{which}_divergence_fn"),
            getattr(layer, f"{which}_prior"),
            f"{which}_posterior_tensor",
            loc,
            scale,
            prior.loc,
            prior.scale,
        )

    def make(self, seed):
        layer = self.layer
        arguments = {
            "name": layer.name,
            "trainable": layer.trainable,
            "dtype": _dtype(layer),
            "activation": self.activation,
            "use_bias": self.bias is not None,
            "bayesian_bias": self.bias is not None and self.bias[0] == "normal",
            "kernel_prior": self.kernel_prior,
            "bias_prior": self.bias_prior,
            "kl_weight": self.kl_weight,
            "seed": seed,
        }
        if issubclass(self.target, (Conv2DFlipout, Conv2DReparameterization)):
            arguments.update({key: getattr(layer, key) for key in _CONV_ATTRIBUTES})
        else:
            arguments["units"] = layer.units
        return self.target(**arguments)

    def assign(self, new):
        _, loc, scale, raw = self.kernel
        _assign(new.kernel_loc, loc, self.layer)
        _assign(
            new.kernel_untransformed_scale,
            _untransformed(scale, raw, self.layer, "kernel"),
            self.layer,
        )
        if self.bias is not None:
            _assign(new.bias_loc, self.bias[1], self.layer)
            if self.bias[0] == "normal":
                _, _, bias_scale, bias_raw = self.bias
                _assign(
                    new.bias_untransformed_scale,
                    _untransformed(bias_scale, bias_raw, self.layer, "bias"),
                    self.layer,
                )


def _posterior(distribution, which, layer, modules):
    """("normal", loc, scale, raw untransformed scale or None) or ("deterministic", loc)."""
    tfd = modules.tfd
    base = distribution.distribution if isinstance(distribution, tfd.Independent) else distribution
    where = _where(layer)
    if isinstance(base, tfd.Normal):
        loc = modules.numpy(base.loc)
        scale = np.broadcast_to(modules.numpy(base.scale), loc.shape).copy()
        if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(scale))):
            raise ValueError(f"{where}: its {which} posterior has non-finite parameters.")
        raw = None
        if isinstance(base.scale, modules.tfp.util.DeferredTensor):
            raw = modules.numpy(base.scale.pretransformed_input)
            if raw.shape != loc.shape or raw.dtype != scale.dtype:
                raw = None
        return ("normal", loc, scale, raw)
    if which == "bias" and isinstance(base, tfd.Deterministic):
        loc = modules.numpy(base.loc)
        if not np.all(np.isfinite(loc)):
            raise ValueError(f"{where}: its bias has non-finite values.")
        return ("deterministic", loc)
    raise ValueError(
        f"{where}: its {which} posterior is a {type(base).__name__}; from_tfp converts Normal "
        f"posteriors{' and deterministic biases' if which == 'bias' else ''} only."
    )


def _normal_prior(distribution, which, layer, modules):
    tfd = modules.tfd
    base = distribution.distribution if isinstance(distribution, tfd.Independent) else distribution
    where = _where(layer)
    if not isinstance(base, tfd.Normal):
        raise ValueError(
            f"{where}: its {which} prior is a {type(base).__name__}; from_tfp converts Normal "
            "priors (to NormalPrior) only. Build the Keras 3 layer with the prior you need "
            "(e.g. ScaleMixturePrior) and copy the weights by hand."
        )
    loc = modules.numpy(base.loc, np.float64)
    scale = modules.numpy(base.scale, np.float64)
    constant = (
        loc.size > 0
        and scale.size > 0
        and np.all(loc == loc.flat[0])
        and np.all(scale == scale.flat[0])
    )
    if not constant:
        raise ValueError(
            f"{where}: its {which} prior is a Normal whose loc or scale varies across the "
            "weights; from_tfp converts Normal priors with one loc and one scale only."
        )
    loc, scale = float(loc.flat[0]), float(scale.flat[0])
    if not (np.isfinite(loc) and np.isfinite(scale) and scale > 0):
        raise ValueError(
            f"{where}: its {which} prior Normal({loc!r}, {scale!r}) needs a finite loc and "
            "a finite scale > 0."
        )
    if base.trainable_variables:
        warnings.warn(
            f"{where}: its {which} prior has trainable parameters; the Keras 3 layer gets the "
            f"fixed prior NormalPrior({loc!r}, {scale!r}) at their current values.",
            stacklevel=3,
        )
    return NormalPrior(loc, scale)


def _untransformed(scale, raw, layer, which):
    """Our `rho` with `eps + softplus(rho)` equal to TFP's posterior scale."""
    if raw is not None:
        ours = keras.ops.convert_to_numpy(
            SCALE_FLOOR + keras.ops.softplus(keras.ops.convert_to_tensor(raw))
        )
        if np.array_equal(ours, scale):
            return raw  # the parameterisations agree: copy one to one
    if np.any(scale <= SCALE_FLOOR):
        raise ValueError(
            f"{_where(layer)}: its {which} posterior has a standard deviation of "
            f"{float(np.min(scale))!r}, which keras_reliability's layers cannot represent "
            f"(their posterior standard deviations are > {SCALE_FLOOR})."
        )
    return untransformed_scale(scale).astype(scale.dtype)


def _assign(variable, value, layer):
    value = np.asarray(value, dtype=variable.dtype)
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(
            f"{_where(layer)}: a weight of shape {value.shape} does not fit the Keras 3 "
            f"variable {variable.path!r} of shape {tuple(variable.shape)}."
        )
    variable.assign(value)


def _activation(function, layer, modules):
    """The Keras 3 name of a tf_keras activation, checked to compute the same."""
    if function is None:
        return None
    name = modules.tf_keras.activations.serialize(function)
    where = _where(layer)
    try:
        ours = keras.activations.get(name) if isinstance(name, str) else None
    except (ValueError, TypeError):
        ours = None
    if ours is None:
        raise ValueError(
            f"{where}: its activation {name!r} has no Keras 3 counterpart known by name; "
            "use a built-in activation."
        )
    probe = np.linspace(-6.0, 6.0, 48, dtype=np.float32).reshape(4, 12)
    expected = modules.numpy(function(modules.tf.constant(probe)))
    received = keras.ops.convert_to_numpy(ours(keras.ops.convert_to_tensor(probe)))
    same = expected.shape == received.shape and np.allclose(
        received, expected, rtol=1e-5, atol=1e-6
    )
    if not same:
        raise ValueError(
            f"{where}: its activation {name!r} computes a different function in Keras 3 "
            "than in tf_keras; replace it with one that agrees."
        )
    return name


# Plain layers.


class _PlainConversion:
    def __init__(self, layer, maker, modules):
        self.layer = layer
        self.arguments = maker(layer, layer.get_config(), modules)
        self.arguments.update(name=layer.name, trainable=layer.trainable, dtype=_dtype(layer))
        self.target = getattr(keras.layers, type(layer).__name__)
        self.weights = [np.array(w) for w in layer.get_weights()]

    def make(self, seed):
        del seed
        return self.target(**self.arguments)

    def assign(self, new):
        if len(new.weights) != len(self.weights):
            raise ValueError(
                f"{_where(self.layer)}: it has {len(self.weights)} weights and its Keras 3 "
                f"counterpart {len(new.weights)}."
            )
        for variable, value in zip(new.weights, self.weights):
            _assign(variable, value, self.layer)


def _keys(config, *keys):
    return {key: config[key] for key in keys}


def _extras(layer, config, modules, regularizers, constraints):
    """Regularizers and constraints, carried over through their configs."""
    where = _where(layer)
    if config.get("activity_regularizer") is not None:
        raise ValueError(
            f"{where} has an activity regularizer, which from_tfp does not convert "
            "(tf_keras and Keras 3 scale it differently)."
        )
    arguments = {}
    for key in regularizers + constraints:
        value = getattr(layer, key, None)
        if value is None:
            continue
        if key in regularizers:
            module, target = modules.tf_keras.regularizers, keras.regularizers
        else:
            module, target = modules.tf_keras.constraints, keras.constraints
        try:
            arguments[key] = target.get(module.serialize(value))
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"{where}: its {key} {value!r} has no Keras 3 counterpart ({error})."
            ) from error
    return arguments


def _weighted(*keys):
    def maker(layer, config, modules):
        arguments = _keys(config, *keys)
        if "activation" in arguments:
            arguments["activation"] = _activation(layer.activation, layer, modules)
        arguments.update(
            _extras(
                layer,
                config,
                modules,
                ("kernel_regularizer", "bias_regularizer"),
                ("kernel_constraint", "bias_constraint"),
            )
        )
        return arguments

    return maker


def _simple(*keys):
    def maker(layer, config, modules):
        arguments = _keys(config, *keys)
        if "activation" in arguments:
            arguments["activation"] = _activation(layer.activation, layer, modules)
        return arguments

    return maker


def _batch_normalization(layer, config, modules):
    where = _where(layer)
    if config.get("renorm") or config.get("virtual_batch_size") or layer.adjustment is not None:
        raise ValueError(
            f"{where} uses renorm, virtual batches or an adjustment, which Keras 3's "
            "BatchNormalization does not have."
        )
    axis = config["axis"]
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            raise ValueError(f"{where} normalizes over several axes {axis}; Keras 3 takes one.")
        axis = axis[0]
    arguments = {"axis": int(axis)}
    arguments.update(_keys(config, "momentum", "epsilon", "center", "scale"))
    arguments.update(
        _extras(
            layer,
            config,
            modules,
            ("beta_regularizer", "gamma_regularizer"),
            ("beta_constraint", "gamma_constraint"),
        )
    )
    return arguments


_POOLING = ("pool_size", "strides", "padding", "data_format")

# tf_keras layer class name (the same in keras.layers) -> constructor arguments.
_PLAIN = {
    "Dense": _weighted("units", "activation", "use_bias"),
    "Conv2D": _weighted(
        "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
        "groups", "activation", "use_bias",
    ),
    "Dropout": _simple("rate", "noise_shape", "seed"),
    "Flatten": _simple("data_format"),
    "Reshape": _simple("target_shape"),
    "Activation": _simple("activation"),
    "MaxPooling2D": _simple(*_POOLING),
    "AveragePooling2D": _simple(*_POOLING),
    "GlobalMaxPooling2D": _simple("data_format", "keepdims"),
    "GlobalAveragePooling2D": _simple("data_format", "keepdims"),
    "BatchNormalization": _batch_normalization,
}


# KL weights.


def _infer_kl_weights(model, input_shape, input_dtype, conversions, modules):
    if not conversions:
        return []
    advice = "Pass `kl_weight` explicitly (usually 1 / number of training examples)."
    if any(size is None for size in input_shape[1:]):
        raise ValueError(
            f"from_tfp: cannot infer `kl_weight`: the input shape {input_shape} of "
            f"{model.name!r} has unknown sizes, so the model cannot be called on a dummy "
            f"batch. {advice}"
        )
    dummy = np.zeros((1,) + tuple(input_shape[1:]), dtype=input_dtype)
    calls = []
    for _ in range(2):
        model(dummy, training=False)
        calls.append([_layer_loss(c.layer, modules) for c in conversions])

    weights = []
    for conversion, first, second in zip(conversions, *calls):
        layer = conversion.layer
        where = _where(layer)
        if not first == second:
            raise ValueError(
                f"{where}: its KL divergence changed between two calls ({first!r}, "
                f"{second!r}), so it is a Monte-Carlo estimate, not a weighted closed-form "
                f"KL, and from_tfp cannot infer its weight. {advice}"
            )
        kl = sum(term.kl(term.loc, term.scale) for term in conversion.terms)
        if not (np.isfinite(kl) and kl > 0):
            raise ValueError(
                f"{where}: the KL divergence of its posterior from its prior is {kl!r}, so "
                f"its weight cannot be inferred from the loss it adds. {advice}"
            )
        weight = first / kl
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"{where}: the loss it adds ({first!r}) divided by its KL divergence "
                f"({kl!r}) is {weight!r}, not a weight >= 0. {advice}"
            )
        for term in conversion.terms:
            _check_proportional(term, weight, layer, modules, advice)
        weights.append(float(weight))
    return weights


def _layer_loss(layer, modules):
    return float(sum(np.sum(modules.numpy(loss, np.float64)) for loss in layer.losses))


def _check_proportional(term, weight, layer, modules, advice):
    """Checks `divergence_fn(q, p, w) == weight * KL(q || p)` at another posterior q."""
    tfd = modules.tfd
    loc = np.full_like(term.loc, term.prior_loc + 0.5 * term.prior_scale)
    scale = np.full_like(term.scale, 0.5 * term.prior_scale)
    other = tfd.Independent(
        tfd.Normal(loc=modules.tf.constant(loc), scale=modules.tf.constant(scale)),
        reinterpreted_batch_ndims=loc.ndim,
    )
    where = _where(layer)
    try:
        value = modules.numpy(
            term.divergence_fn(other, term.prior, getattr(layer, term.tensor_attribute, None)),
            np.float64,
        )
    except Exception as error:  # noqa: BLE001 - any failure means we cannot check
        raise ValueError(
            f"{where}: its {term.which} divergence function could not be evaluated at another "
            f"posterior ({type(error).__name__}: {error}), so its weight cannot be inferred. "
            f"{advice}"
        ) from error
    value = float(np.sum(value))
    expected = weight * term.kl(loc, scale)
    if not abs(value - expected) <= _RTOL * max(abs(value), abs(expected)) + 1e-30:
        raise ValueError(
            f"{where}: its {term.which} divergence function is not a constant multiple of "
            f"KL(posterior || prior): the weight {weight!r} read at the layer's posterior "
            f"predicts {expected!r} at another posterior, where it gives {value!r}. {advice}"
        )
