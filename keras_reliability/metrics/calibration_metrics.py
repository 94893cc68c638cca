"""Streaming calibration metrics for `model.compile(metrics=[...])`.

State is three `(num_bins,)` variables (weighted count, confidence sum,
correct sum), so the metrics run inside Keras' compiled loops on every
backend and stream over any amount of data in O(num_bins) memory.

Inside a compiled step a metric cannot raise on data-dependent problems, so
rows with NaN/inf predictions, probabilities that do not sum to 1 or labels
out of range are counted instead, and `result()` is NaN once any was seen:
a visibly invalid number rather than a silently wrong one. The functional
metrics in `keras_reliability.metrics` raise immediately.
"""

import keras
from keras import ops

from keras_reliability.metrics import binning
from keras_reliability.metrics.calibration import check_num_bins

# Same tolerance as the functional checks (see _inputs._SUM_TOLERANCE).
_SUM_TOLERANCE = 1e-3


class _BinnedCalibrationError(keras.metrics.Metric):
    """Base class: accumulates equal-width bin statistics of the top label."""

    _norm = None

    def __init__(self, num_bins=15, from_logits=False, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_bins = check_num_bins(num_bins)
        if not isinstance(from_logits, bool):
            raise ValueError(
                f"`from_logits` must be a bool; received {from_logits!r}."
            )
        self.from_logits = from_logits
        self.bin_count = self.add_variable(
            shape=(self.num_bins,), initializer="zeros", name="bin_count"
        )
        self.confidence_sum = self.add_variable(
            shape=(self.num_bins,), initializer="zeros", name="confidence_sum"
        )
        self.correct_sum = self.add_variable(
            shape=(self.num_bins,), initializer="zeros", name="correct_sum"
        )
        self.invalid_count = self.add_variable(
            shape=(), initializer="zeros", name="invalid_count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred, dtype="float32")
        y_pred = self._two_or_more_classes(y_pred)
        num_classes = y_pred.shape[-1]
        labels, integral = self._sparse_labels(y_true, num_classes)

        finite = ops.all(ops.isfinite(y_pred), axis=-1)
        valid = finite & integral & (labels >= 0) & (labels < num_classes)
        if not self.from_logits:
            row_sum_error = ops.abs(ops.sum(y_pred, axis=-1) - 1.0)
            valid = valid & (row_sum_error <= _SUM_TOLERANCE)
            valid = valid & ops.all(y_pred >= 0.0, axis=-1)
        # Invalid rows are counted, then neutralised so they cannot poison
        # the bin sums with NaN.
        y_pred = ops.where(ops.expand_dims(valid, -1), y_pred, 0.0)

        confidence, predicted = binning.top_label(y_pred, self.from_logits)
        correct = ops.equal(ops.cast(predicted, "int32"), labels)
        weight = ops.cast(valid, "float32")
        if sample_weight is not None:
            sample_weight = ops.reshape(
                ops.cast(sample_weight, "float32"), ops.shape(weight)
            )
            weight = weight * sample_weight
        statistics = binning.uniform_bin_statistics(
            confidence, correct, weight, self.num_bins
        )
        self.bin_count.assign_add(statistics[:, binning.COUNT])
        self.confidence_sum.assign_add(statistics[:, binning.CONFIDENCE_SUM])
        self.correct_sum.assign_add(statistics[:, binning.CORRECT_SUM])
        self.invalid_count.assign_add(
            ops.sum(ops.cast(ops.logical_not(valid), "float32"))
        )

    def _two_or_more_classes(self, y_pred):
        if len(y_pred.shape) == 1:
            y_pred = ops.expand_dims(y_pred, -1)
        if y_pred.shape[-1] != 1:
            return y_pred
        if self.from_logits:
            return ops.concatenate([ops.zeros_like(y_pred), y_pred], axis=-1)
        return ops.concatenate([1.0 - y_pred, y_pred], axis=-1)

    @staticmethod
    def _sparse_labels(y_true, num_classes):
        """Integer labels, and whether each label was a whole number."""
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == 2 and y_true.shape[-1] == num_classes:
            labels = ops.cast(ops.argmax(y_true, axis=-1), "int32")
            return labels, ops.ones_like(labels, dtype="bool")
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "float32")
        # Labels arrive as floats in compiled steps; 1.5 must not pass as 1.
        return ops.cast(y_true, "int32"), ops.equal(y_true, ops.floor(y_true))

    def result(self):
        statistics = ops.stack(
            [self.bin_count, self.confidence_sum, self.correct_sum], axis=1
        )
        error = binning.calibration_error_from_bins(statistics, norm=self._norm)
        return ops.where(self.invalid_count > 0, float("nan"), error)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"num_bins": self.num_bins, "from_logits": self.from_logits})
        return config


@keras.saving.register_keras_serializable(package="keras_reliability")
class ExpectedCalibrationError(_BinnedCalibrationError):
    """Streaming top-label expected calibration error (ECE).

    Accumulates per-bin statistics over batches (equal-width bins `(lo, hi]`
    over the predicted class's confidence) and reports the count-weighted
    mean of `|accuracy - confidence|`. Equal to the functional
    `expected_calibration_error` on the same data.

    Args:
        num_bins: number of equal-width bins, >= 1.
        from_logits: whether the model outputs logits. Sigmoid models with
            one output column are treated as two-class classifiers.
        name: metric name.
        dtype: metric dtype.

    Returns from `result()`: the ECE, or NaN if any row seen was invalid
    (NaN/inf, probabilities not summing to 1, label out of range).

    Example:

    ```python
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy", keras_reliability.metrics.ExpectedCalibrationError()],
    )
    ```

    References:
        - Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    _norm = "l1"

    def __init__(self, num_bins=15, from_logits=False, name="ece", dtype=None):
        super().__init__(
            num_bins=num_bins, from_logits=from_logits, name=name, dtype=dtype
        )


@keras.saving.register_keras_serializable(package="keras_reliability")
class MaxCalibrationError(_BinnedCalibrationError):
    """Streaming maximum calibration error: the largest gap over bins.

    Arguments as in `ExpectedCalibrationError`.

    References:
        - Naeini et al., "Obtaining Well Calibrated Probabilities Using
          Bayesian Binning", AAAI 2015.
    """

    _norm = "max"

    def __init__(self, num_bins=15, from_logits=False, name="mce", dtype=None):
        super().__init__(
            num_bins=num_bins, from_logits=from_logits, name=name, dtype=dtype
        )


@keras.saving.register_keras_serializable(package="keras_reliability")
class RootMeanSquareCalibrationError(_BinnedCalibrationError):
    """Streaming root-mean-square calibration error over bins.

    Arguments as in `ExpectedCalibrationError`.
    """

    _norm = "l2"

    def __init__(self, num_bins=15, from_logits=False, name="rmsce", dtype=None):
        super().__init__(
            num_bins=num_bins, from_logits=from_logits, name=name, dtype=dtype
        )
