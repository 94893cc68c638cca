"""Temperature scaling: one scalar that divides the logits."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_reliability import registry
from keras_reliability.calibration.calibrator import Calibrator
from keras_reliability.arguments import check_number

# Search range for the inverse temperature: T in [1e-4, 1e4].
_MIN_INVERSE_TEMPERATURE = 1e-4
_MAX_INVERSE_TEMPERATURE = 1e4


@keras.saving.register_keras_serializable(package="keras_reliability")
@registry.register("calibrator", "temperature_scaling")
class TemperatureScaling(Calibrator):
    """Divides logits by a temperature fitted to minimise held-out NLL.

    The layer holds `log_temperature` (non-trainable: it is set by `fit`, and
    fine-tuning a model should not move it). `fit` finds the exact optimum:
    the NLL is convex in the inverse temperature, so a safeguarded Newton
    iteration on it converges to machine precision in a few steps.

    Temperature scaling keeps the predicted class, so accuracy is unchanged.

    Args:
        from_logits: whether inputs are logits (default) or probabilities. A
            single sigmoid column is supported in both cases.
        temperature: initial temperature, > 0.
        **kwargs: base layer arguments.

    Example:

    ```python
    ts = TemperatureScaling().fit(val_logits, val_labels)
    ts.temperature                      # e.g. 2.88
    calibrated_logits = ts(test_logits)
    # Or wrap a model in one call:
    calibrated_model = TemperatureScaling.calibrate(model, x_val, y_val)
    ```

    References:
        - Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    supports_binary = True

    def __init__(self, from_logits=True, temperature=1.0, **kwargs):
        super().__init__(from_logits=from_logits, **kwargs)
        self.initial_temperature = check_number(
            temperature, "temperature", positive=True
        )
        self.log_temperature = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(np.log(temperature)),
            trainable=False,
            name="log_temperature",
        )

    @property
    def temperature(self):
        """The current temperature as a Python float."""
        return float(np.exp(ops.convert_to_numpy(self.log_temperature)))

    def _scale(self, logits):
        return logits * ops.cast(ops.exp(-self.log_temperature), logits.dtype)

    def _fit_logits(self, logits, labels, weights):
        inverse_temperature = _optimal_inverse_temperature(logits, labels, weights)
        self.log_temperature.assign(-np.log(inverse_temperature))

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.initial_temperature
        return config


def _nll_derivatives(beta, logits, true_logit, weights):
    """First and second derivatives of the weighted NLL of softmax(beta z)."""
    scaled = beta * logits
    scaled -= scaled.max(axis=1, keepdims=True)
    probabilities = np.exp(scaled)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    mean_logit = np.sum(probabilities * logits, axis=1)
    variance = np.sum(probabilities * np.square(logits), axis=1) - mean_logit**2
    gradient = np.sum(weights * (mean_logit - true_logit))
    curvature = np.sum(weights * np.maximum(variance, 0.0))
    return gradient, curvature


def _optimal_inverse_temperature(logits, labels, weights, tolerance=1e-12):
    """Minimises NLL(beta) = mean(logsumexp(beta z) - beta z_y) over beta > 0.

    NLL is convex in beta, so its derivative is increasing: bracket the root
    of the derivative, then take Newton steps, falling back to bisection
    whenever a step would leave the bracket.
    """
    rows = np.arange(len(labels))
    true_logit = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    if np.all(true_logit > others.max(axis=1)):
        # Every prediction right: the NLL decreases for ever as T -> 0.
        return _at_bound(
            _MAX_INVERSE_TEMPERATURE,
            "T = 1e-4 (every held-out prediction is right, so the NLL keeps "
            "falling as T shrinks)",
        )

    def derivatives(beta):
        return _nll_derivatives(beta, logits, true_logit, weights)

    low, high = 1.0, 1.0
    while derivatives(low)[0] > 0 and low > _MIN_INVERSE_TEMPERATURE:
        low = max(low / 2.0, _MIN_INVERSE_TEMPERATURE)
    while derivatives(high)[0] < 0 and high < _MAX_INVERSE_TEMPERATURE:
        high = min(high * 2.0, _MAX_INVERSE_TEMPERATURE)
    if derivatives(low)[0] > 0:
        return _at_bound(low, "T = 1e4 (the outputs carry no usable signal)")
    if derivatives(high)[0] < 0:
        return _at_bound(high, "T = 1e-4")
    beta = 0.5 * (low + high)
    for _ in range(200):
        gradient, curvature = derivatives(beta)
        if abs(gradient) < tolerance:
            break
        if gradient > 0:
            high = beta
        else:
            low = beta
        newton = beta - gradient / curvature if curvature > 0 else np.inf
        beta = newton if low < newton < high else 0.5 * (low + high)
        if high - low < tolerance * beta:
            break
    return beta


def _at_bound(beta, reason):
    warnings.warn(
        f"TemperatureScaling.fit: the NLL has no minimum in T in [1e-4, 1e4]; "
        f"using {reason}.",
        # _at_bound < _optimal_inverse_temperature < _fit_logits < fit < caller.
        stacklevel=5,
    )
    return beta
