"""Priors over the weights of the Bayesian layers.

A prior is a small serializable object with `log_prob(w)` (elementwise, in
`keras.ops`) and, where the KL divergence from a Gaussian posterior has a
closed form, `kl_divergence(loc, scale)`. The layers use the closed form when
it exists and a one-sample Monte-Carlo estimate otherwise.
"""

import math
import numbers

import keras
from keras import ops

from keras_reliability.arguments import check_number

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def normal_log_prob(x, loc, scale):
    """Elementwise log-density of Normal(loc, scale) at `x`."""
    z = (x - loc) / scale
    return -0.5 * ops.square(z) - ops.log(scale) - _LOG_SQRT_2PI


@keras.saving.register_keras_serializable(package="keras_reliability")
class Prior:
    """Base class of weight priors: subclass it to define your own.

    Subclasses implement `log_prob(w)` and `get_config()`, and may implement
    `kl_divergence(loc, scale)` returning the elementwise closed-form
    KL(Normal(loc, scale) || prior); the base returns None, which makes the
    layers fall back to a Monte-Carlo estimate.
    """

    def log_prob(self, w):
        raise NotImplementedError(f"{type(self).__name__} must implement `log_prob`.")

    def kl_divergence(self, loc, scale):
        return None

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_reliability")
class NormalPrior(Prior):
    """Independent Normal(loc, scale) prior on every weight.

    The default prior of the Bayesian layers, `NormalPrior(0, 1)`, is the one
    `tfp.layers` uses. Its KL divergence from a Gaussian posterior is exact.

    Args:
        loc: prior mean.
        scale: prior standard deviation, > 0.

    Example:

    >>> layer = DenseFlipout(10, kernel_prior=NormalPrior(0.0, 0.1))
    """

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = _finite(loc, "loc")
        self.scale = check_number(scale, "scale", positive=True, owner="NormalPrior")

    def log_prob(self, w):
        return normal_log_prob(w, self.loc, self.scale)

    def kl_divergence(self, loc, scale):
        if self.loc == 0.0 and self.scale == 1.0:
            # The default prior: fewer elementwise passes over the kernel,
            # which eager backends (torch) do not fuse.
            return 0.5 * (ops.square(scale) + ops.square(loc)) - ops.log(scale) - 0.5
        ratio = scale / self.scale
        return (
            0.5 * ops.square(ratio)
            + 0.5 * ops.square((loc - self.loc) / self.scale)
            - ops.log(ratio)
            - 0.5
        )

    def get_config(self):
        return {"loc": self.loc, "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_reliability")
class ScaleMixturePrior(Prior):
    """Mixture of two zero-mean Normals, the prior of Bayes by Backprop.

    `p(w) = pi * Normal(0, sigma_1) + (1 - pi) * Normal(0, sigma_2)`, with a
    wide component and a narrow one that pulls many weights towards zero. The
    KL divergence has no closed form; the layers estimate it from the sampled
    weights.

    Args:
        pi: weight of the first component, in (0, 1).
        sigma_1: standard deviation of the first component, > 0.
        sigma_2: standard deviation of the second component, > 0.

    References:
        Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015.
    """

    def __init__(self, pi=0.5, sigma_1=1.0, sigma_2=math.exp(-6.0)):
        if not _is_real(pi) or not 0.0 < pi < 1.0:
            raise ValueError(f"ScaleMixturePrior: `pi` must be in (0, 1); received {pi!r}.")
        self.pi = float(pi)
        self.sigma_1 = check_number(sigma_1, "sigma_1", positive=True, owner="ScaleMixturePrior")
        self.sigma_2 = check_number(sigma_2, "sigma_2", positive=True, owner="ScaleMixturePrior")

    def log_prob(self, w):
        first = math.log(self.pi) + normal_log_prob(w, 0.0, self.sigma_1)
        second = math.log1p(-self.pi) + normal_log_prob(w, 0.0, self.sigma_2)
        return ops.logaddexp(first, second)

    def get_config(self):
        return {"pi": self.pi, "sigma_1": self.sigma_1, "sigma_2": self.sigma_2}


def get(identifier, name="prior"):
    """Returns a `Prior` from an instance, a config dict, or None (Normal(0, 1)).

    `name` is the argument's name, for the error message.
    """
    if identifier is None:
        return NormalPrior()
    if isinstance(identifier, Prior):
        return identifier
    if isinstance(identifier, dict):
        prior = keras.saving.deserialize_keras_object(identifier)
        if isinstance(prior, Prior):
            return prior
    raise ValueError(
        f"`{name}` must be a `keras_reliability.layers.Prior` (e.g. NormalPrior(0, 1) "
        f"or ScaleMixturePrior()), its serialized config, or None; received {identifier!r}."
    )


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _finite(value, name):
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"NormalPrior: `{name}` must be a finite number; received {value!r}.")
    return float(value)
