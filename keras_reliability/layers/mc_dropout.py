"""Monte-Carlo dropout: dropout that stays on at inference."""

import numbers

import keras

from keras_reliability.arguments import check_positive_int


@keras.saving.register_keras_serializable(package="keras_reliability")
class MCDropout(keras.layers.Dropout):
    """Dropout that also drops units at inference, for Monte-Carlo prediction.

    With `active_at_inference=True` (the default) every call samples a fresh
    dropout mask, in training and in `predict`, so repeated predictions are
    samples from the approximate posterior predictive of Gal & Ghahramani.
    With `active_at_inference=False` it is a plain `keras.layers.Dropout`.
    Switching the attribute on a model that has already been compiled or
    used in `predict` takes effect once Keras rebuilds its step functions
    (e.g. after `model.compile(...)` again).

    Args:
        rate: float in [0, 1), the fraction of units to drop.
        noise_shape: optional shape of the binary mask, as in `Dropout`.
        seed: int seed of the layer's `keras.random.SeedGenerator`.
        active_at_inference: whether dropout stays on outside training.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((784,)),
    ...     keras.layers.Dense(256, activation="relu"),
    ...     MCDropout(0.5),
    ...     keras.layers.Dense(10, activation="softmax"),
    ... ])
    >>> result = keras_reliability.uncertainty.predict_with_uncertainty(model, x)

    References:
        Gal and Ghahramani, "Dropout as a Bayesian Approximation: Representing
        Model Uncertainty in Deep Learning", ICML 2016.
    """

    def __init__(self, rate, noise_shape=None, seed=None, active_at_inference=True, **kwargs):
        valid = (
            isinstance(rate, numbers.Real)
            and not isinstance(rate, bool)
            and 0.0 <= rate < 1.0
        )
        if not valid:
            raise ValueError(f"MCDropout: `rate` must be a number in [0, 1); received {rate!r}.")
        if noise_shape is not None:
            noise_shape = tuple(
                None if n is None else check_positive_int(n, "noise_shape", owner="MCDropout")
                for n in noise_shape
            )
        super().__init__(rate=float(rate), noise_shape=noise_shape, seed=seed, **kwargs)
        self.active_at_inference = bool(active_at_inference)

    def call(self, inputs, training=False):
        return super().call(inputs, training=bool(training) or self.active_at_inference)

    def get_config(self):
        config = super().get_config()
        config["active_at_inference"] = self.active_at_inference
        return config
