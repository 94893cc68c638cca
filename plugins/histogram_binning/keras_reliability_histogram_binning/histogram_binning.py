"""One-vs-rest histogram binning of a classifier's probabilities."""

import keras
import numpy as np
from keras import ops
from keras_reliability import registry
from keras_reliability.arguments import check_positive_int
from keras_reliability.calibration import Calibrator
from keras_reliability.metrics.binning import uniform_bin_index

# Calibrated probabilities are floored before the logarithm: a bin without a
# positive example maps to 0, which must not become -inf.
_FLOOR = 1e-7


@keras.saving.register_keras_serializable(package="keras_reliability_histogram_binning")
@registry.register("calibrator", "histogram_binning")
class HistogramBinning(Calibrator):
    """Replaces each class probability by the accuracy of its bin.

    For every class `k`, `fit` splits `softmax(z)_k` into `num_bins`
    equal-width bins `(lo, hi]` (the library's ECE bins) and stores the
    (weighted) fraction of held-out examples of class `k` in each bin. The
    layer maps each probability to its bin's fraction, renormalises over the
    classes and returns the logarithms (logits), or the probabilities with
    `from_logits=False`. A bin no held-out example fell into keeps its
    midpoint. Unlike temperature scaling it can change the predicted class.

    Args:
        num_bins: bins per class, >= 1.
        from_logits: whether inputs are logits (default) or probabilities.
        **kwargs: base layer arguments.

    Example:

    ```python
    calibrated = HistogramBinning.calibrate(model, x_val, y_val, num_bins=15)
    ```

    References:
        Zadrozny and Elkan, "Obtaining calibrated probability estimates from
        decision trees and naive Bayesian classifiers", ICML 2001; one-vs-rest
        for several classes as in Guo et al., "On Calibration of Modern
        Neural Networks", ICML 2017.
    """

    def __init__(self, num_bins=15, from_logits=True, **kwargs):
        super().__init__(from_logits=from_logits, **kwargs)
        self.num_bins = check_positive_int(num_bins, "num_bins", owner="HistogramBinning")

    def build(self, input_shape):
        self.bin_values = self.add_weight(
            shape=(input_shape[-1], self.num_bins),
            initializer=keras.initializers.Constant(self._midpoints(input_shape[-1])),
            trainable=False,
            name="bin_values",
        )

    def _midpoints(self, num_classes):
        midpoints = (np.arange(self.num_bins) + 0.5) / self.num_bins
        return np.tile(midpoints, (num_classes, 1)).astype("float32")

    def _scale(self, logits):
        probabilities = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        bins = uniform_bin_index(probabilities, self.num_bins)
        num_classes = self.bin_values.shape[0]
        # Row k of the (classes, bins) table, column bins[:, k]: one flat gather.
        flat_index = bins + ops.arange(num_classes, dtype="int32") * self.num_bins
        values = ops.take(ops.reshape(self.bin_values, (-1,)), flat_index)
        values = ops.maximum(values, _FLOOR)
        calibrated = values / ops.sum(values, axis=-1, keepdims=True)
        return ops.cast(ops.log(calibrated), logits.dtype)

    def _fit_logits(self, logits, labels, weights):
        shifted = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        bins = np.asarray(
            ops.convert_to_numpy(
                uniform_bin_index(ops.convert_to_tensor(probabilities, "float32"), self.num_bins)
            )
        )
        num_classes = logits.shape[1]
        values = self._midpoints(num_classes).astype(np.float64)
        for k in range(num_classes):
            mass = np.bincount(bins[:, k], weights=weights, minlength=self.num_bins)
            hits = np.bincount(bins[:, k], weights=weights * (labels == k), minlength=self.num_bins)
            filled = mass > 0
            values[k, filled] = hits[filled] / mass[filled]
        self.bin_values.assign(values.astype("float32"))

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins}
