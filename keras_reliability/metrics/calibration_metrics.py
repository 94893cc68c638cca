"""Streaming calibration metrics for `model.compile(metrics=[...])`.

State is three `(num_bins,)` variables (weighted count, confidence sum,
correct sum) and two small counters of invalid rows, so the metrics run
inside Keras' compiled loops on every backend and stream over any amount of
data in O(num_bins) memory.

Inside a compiled step a metric can neither raise nor warn on
data-dependent problems, so invalid rows are counted instead, per reason,
and left out of the bins:

- `y_pred` with NaN or infinite values;
- with `from_logits=False`, `y_pred` rows that are not probabilities
  (a negative value, or a sum more than 1e-3 from 1): typically a logits
  model;
- with `from_logits=True`, every row of a batch of more than one row that
  looks like probabilities (in [0, 1] and summing to 1), as the functional
  metrics refuse it;
- labels that are not integers in `[0, num_classes)`;
- one-hot labels `(N, num_classes)` whose row is not exactly one 1 and
  zeros (e.g. soft labels);
- negative or non-finite `sample_weight`.

`result()` is then NaN (inside the compiled step too), and the user is told
why at the first eager `result()` call: Keras calls `result()` eagerly when
an epoch or `evaluate` ends (and on every step on PyTorch, which runs steps
eagerly), and a standalone `result()` call is eager. That call emits one
`InvalidRowsWarning` per new reason and reset cycle, naming each reason and
its row count; `invalid_reasons()` returns the counts. A NaN from no data at
all (no example with positive weight) is reported the same way. The
functional metrics in `keras_reliability.metrics` raise immediately.
"""

import warnings

import keras
import numpy as np
from keras import ops

from keras_reliability.arrays import is_real_dtype
from keras_reliability.arrays import real_array
from keras_reliability.metrics import binning
from keras_reliability.metrics.calibration import check_num_bins

# Same tolerance as the functional checks (see _inputs._SUM_TOLERANCE).
_SUM_TOLERANCE = 1e-3

# Index of each reason in the `invalid_reason_counts` state variable.
NON_FINITE_PREDICTIONS = 0
NOT_PROBABILITIES = 1
PROBABILITIES_AS_LOGITS = 2
INVALID_LABELS = 3
NOT_ONE_HOT = 4
INVALID_SAMPLE_WEIGHTS = 5
REASONS = (
    "non_finite_predictions",
    "not_probabilities",
    "probabilities_as_logits",
    "invalid_labels",
    "not_one_hot",
    "invalid_sample_weights",
)


class InvalidRowsWarning(UserWarning):
    """A streaming calibration metric is NaN because of its input.

    Emitted eagerly (after an epoch or `evaluate`, or by a standalone
    `result()` call) once per reason between two `reset_state()` calls.
    """


def _explanation(reason, count, num_classes):
    rows = f"{count:d} row(s)"
    if reason == "non_finite_predictions":
        return f"{rows} with NaN or infinite values in `y_pred`"
    if reason == "not_probabilities":
        return (
            f"{rows} whose `y_pred` is not probabilities (a negative value, "
            f"or a row sum more than {_SUM_TOLERANCE:g} from 1); if the "
            "model outputs logits, pass `from_logits=True`"
        )
    if reason == "probabilities_as_logits":
        return (
            f"{rows} whose `y_pred` looks like probabilities although "
            "`from_logits=True` (every row of their batch lies in [0, 1] "
            "and sums to 1); if the model outputs probabilities, pass "
            "`from_logits=False`"
        )
    if reason == "invalid_labels":
        classes = "" if num_classes is None else f" in [0, {num_classes - 1}]"
        return f"{rows} whose `y_true` is not an integer class label{classes}"
    if reason == "not_one_hot":
        return (
            f"{rows} of one-hot `y_true` that are not one-hot (exactly one 1, "
            "zeros elsewhere); soft labels are not supported by top-label "
            "metrics"
        )
    return f"{rows} with a negative or non-finite `sample_weight`"


def _traced(value):
    """Whether `value` (a state variable's value) is being traced or built.

    True inside a compiled step (`tf.function`, `jax.jit`, `torch.compile`)
    and inside Keras' symbolic and stateless scopes (shape inference, JAX's
    stateless steps), where the value cannot or must not be read on the host.
    """
    # Keras exports `StatelessScope` and `SymbolicScope` but no way to ask
    # whether one is active (Keras' torch shape inference runs the metric on
    # real tensors inside them).
    try:
        from keras.src.backend.common.stateless_scope import in_stateless_scope
        from keras.src.backend.common.symbolic_scope import in_symbolic_scope
    except ImportError:  # Keras moved them: never read state in doubt.
        return True
    if in_stateless_scope() or in_symbolic_scope():
        return True
    name = keras.backend.backend()
    if name == "tensorflow":
        import tensorflow as tf

        return not tf.executing_eagerly()
    if name == "jax":
        import jax

        tracer = getattr(jax.core, "Tracer", None)
        return tracer is None or isinstance(value, tracer)
    if name == "torch":
        import torch

        is_compiling = getattr(torch.compiler, "is_compiling", None)
        if is_compiling is None:  # torch < 2.3
            import torch._dynamo

            is_compiling = torch._dynamo.is_compiling
        return is_compiling()
    return False


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
        # Rows left out of the bins (each row once), and rows per reason (a
        # row may fail several checks). float32 like all metric state: exact
        # up to 2**24 rows.
        self.invalid_count = self.add_variable(
            shape=(), initializer="zeros", name="invalid_count"
        )
        self.invalid_reason_counts = self.add_variable(
            shape=(len(REASONS),), initializer="zeros", name="invalid_reason_counts"
        )
        # Python-side: reasons already warned about since the last reset, and
        # the number of classes last seen (for the label message).
        self._reported = ()
        self._num_classes = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = self._check_structure(y_true, y_pred)
        y_pred = ops.convert_to_tensor(y_pred, dtype="float32")
        if len(y_pred.shape) == 1:
            y_pred = ops.expand_dims(y_pred, -1)
        several_columns = y_pred.shape[-1] != 1
        y_pred = self._two_or_more_classes(y_pred)
        num_classes = y_pred.shape[-1]
        self._num_classes = num_classes

        finite = ops.all(ops.isfinite(y_pred), axis=-1)
        row_sum_error = ops.abs(ops.sum(y_pred, axis=-1) - 1.0)
        probability_row = (
            finite
            & ops.all(y_pred >= 0.0, axis=-1)
            & ops.all(y_pred <= 1.0, axis=-1)
            & (row_sum_error <= _SUM_TOLERANCE)
        )
        no = ops.zeros_like(finite)
        if self.from_logits:
            not_probabilities = no
            if several_columns:
                # Like the functional check: only a whole batch of more than
                # one row counts, as one logits row may look like this.
                num_rows = ops.sum(ops.ones_like(row_sum_error))
                whole_batch = ops.all(probability_row) & (num_rows > 1.0)
                probabilities_as_logits = probability_row & whole_batch
            else:
                probabilities_as_logits = no
        else:
            not_probabilities = finite & ops.logical_not(probability_row)
            probabilities_as_logits = no

        labels, label_ok, one_hot_ok = self._sparse_labels(y_true, num_classes)
        if sample_weight is None:
            weight_ok = ops.ones_like(finite)
            weight = ops.ones_like(row_sum_error)
        else:
            weight = ops.reshape(
                ops.cast(sample_weight, "float32"), ops.shape(row_sum_error)
            )
            weight_ok = ops.isfinite(weight) & (weight >= 0.0)

        failed = [
            ops.logical_not(finite),
            not_probabilities,
            probabilities_as_logits,
            ops.logical_not(label_ok),
            ops.logical_not(one_hot_ok),
            ops.logical_not(weight_ok),
        ]
        invalid = failed[0]
        for flags in failed[1:]:
            invalid = invalid | flags
        valid = ops.logical_not(invalid)
        # Invalid rows are counted, then neutralised (zero weight, finite
        # values) so they cannot poison the bin sums with NaN.
        y_pred = ops.where(ops.expand_dims(valid, -1), y_pred, 0.0)
        weight = ops.where(valid, weight, 0.0)

        confidence, predicted = binning.top_label(y_pred, self.from_logits)
        correct = ops.equal(ops.cast(predicted, "int32"), labels)
        statistics = binning.uniform_bin_statistics(
            confidence, correct, weight, self.num_bins
        )
        self.bin_count.assign_add(statistics[:, binning.COUNT])
        self.confidence_sum.assign_add(statistics[:, binning.CONFIDENCE_SUM])
        self.correct_sum.assign_add(statistics[:, binning.CORRECT_SUM])
        self.invalid_count.assign_add(ops.sum(ops.cast(invalid, "float32")))
        self.invalid_reason_counts.assign_add(
            ops.stack([ops.sum(ops.cast(flags, "float32")) for flags in failed])
        )

    def _two_or_more_classes(self, y_pred):
        if y_pred.shape[-1] != 1:
            return y_pred
        if self.from_logits:
            return ops.concatenate([ops.zeros_like(y_pred), y_pred], axis=-1)
        return ops.concatenate([1.0 - y_pred, y_pred], axis=-1)

    def _check_structure(self, y_true, y_pred):
        """Refuses arrays whose dtype or shape no row could fix.

        Dtypes and ranks are known when a compiled step is traced, so these
        errors are raised there too; only value problems are counted.
        """
        owner = f"{type(self).__name__}.update_state"
        arrays = {}
        for name, value in (("y_true", y_true), ("y_pred", y_pred)):
            if not ops.is_tensor(value) and not isinstance(value, keras.KerasTensor):
                value = real_array(value, name, owner)
            elif not is_real_dtype(value.dtype):
                raise ValueError(
                    f"{owner}: `{name}` must hold real numbers; received dtype {value.dtype}."
                )
            arrays[name] = value
        y_true, y_pred = arrays["y_true"], arrays["y_pred"]
        if len(y_pred.shape) not in (1, 2):
            raise ValueError(
                f"{owner}: `y_pred` must have shape (batch, num_classes) or (batch,); "
                f"received shape {tuple(y_pred.shape)}."
            )
        width = y_pred.shape[-1] if len(y_pred.shape) == 2 else 1
        num_classes = None if width is None else max(width, 2)
        if len(y_true.shape) not in (1, 2) or (
            len(y_true.shape) == 2
            and None not in (num_classes, y_true.shape[-1])
            and y_true.shape[-1] not in (1, num_classes)
        ):
            raise ValueError(
                f"{owner}: `y_true` must hold class labels (batch,), (batch, 1) or one-hot "
                f"(batch, {num_classes}) for `y_pred` of shape {tuple(y_pred.shape)}; "
                f"received shape {tuple(y_true.shape)}."
            )
        rows = {y_true.shape[0], y_pred.shape[0]} - {None}
        if len(rows) > 1:
            raise ValueError(
                f"{owner}: `y_true` has {y_true.shape[0]} rows but `y_pred` has "
                f"{y_pred.shape[0]}."
            )
        return y_true, y_pred

    @staticmethod
    def _sparse_labels(y_true, num_classes):
        """Integer labels, whether each is a class, whether each is one-hot."""
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == 2 and y_true.shape[-1] == num_classes:
            y_true = ops.cast(y_true, "float32")
            zero_or_one = ops.all((y_true == 0.0) | (y_true == 1.0), axis=-1)
            one_hot = zero_or_one & (ops.sum(y_true, axis=-1) == 1.0)
            labels = ops.cast(ops.argmax(y_true, axis=-1), "int32")
            return labels, ops.ones_like(one_hot), one_hot
        y_true = ops.cast(ops.reshape(y_true, (-1,)), "float32")
        # Labels arrive as floats in compiled steps: 1.5 must not pass as 1,
        # and NaN, inf or 1e10 must not be cast to an int32 class.
        is_class = (
            ops.isfinite(y_true)
            & ops.equal(y_true, ops.floor(y_true))
            & (y_true >= 0.0)
            & (y_true < float(num_classes))
        )
        labels = ops.cast(ops.where(is_class, y_true, 0.0), "int32")
        return labels, is_class, ops.ones_like(is_class)

    def result(self):
        statistics = ops.stack(
            [self.bin_count, self.confidence_sum, self.correct_sum], axis=1
        )
        error = binning.calibration_error_from_bins(statistics, norm=self._norm)
        self._warn_if_nan()
        return ops.where(self.invalid_count > 0, float("nan"), error)

    def invalid_reasons(self):
        """Counts of invalid rows seen since the last reset, by reason.

        Reads the state, so call it eagerly (e.g. after `model.evaluate`),
        not inside a compiled step.

        Returns:
            A dict from reason to number of rows, holding only reasons with
            at least one row: `"non_finite_predictions"`,
            `"not_probabilities"`, `"probabilities_as_logits"`,
            `"invalid_labels"`, `"not_one_hot"`, `"invalid_sample_weights"`.
            Empty when every row was valid. A row failing several checks
            counts under each.
        """
        counts = ops.convert_to_numpy(self.invalid_reason_counts)
        return {
            reason: int(count)
            for reason, count in zip(REASONS, np.asarray(counts))
            if count > 0
        }

    def _warn_if_nan(self):
        """Warns, when run eagerly, about reasons not yet reported."""
        counts_value = self.invalid_reason_counts.value
        if _traced(counts_value):
            return
        # One small host read; in compiled steps this code is not reached.
        state = np.asarray(
            ops.convert_to_numpy(
                ops.concatenate(
                    [
                        counts_value,
                        ops.reshape(self.invalid_count, (1,)),
                        ops.reshape(ops.sum(self.bin_count), (1,)),
                    ]
                )
            )
        )
        counts, invalid, total_weight = state[: len(REASONS)], state[-2], state[-1]
        reasons = [r for r, count in zip(REASONS, counts) if count > 0]
        if invalid > 0:
            if set(reasons) <= set(self._reported):
                return
            self._reported = tuple(self._reported) + tuple(
                r for r in reasons if r not in self._reported
            )
            details = "; ".join(
                _explanation(r, int(count), self._num_classes)
                for r, count in zip(REASONS, counts)
                if count > 0
            )
            message = (
                f"{type(self).__name__} {self.name!r} is NaN: {int(invalid)} "
                f"invalid row(s) were seen since the last reset: {details}. "
                "They are left out of the bins; `invalid_reasons()` gives the "
                "current counts."
            )
        elif total_weight <= 0:
            if "no_data" in self._reported:
                return
            self._reported = tuple(self._reported) + ("no_data",)
            message = (
                f"{type(self).__name__} {self.name!r} is NaN: no example with "
                "positive weight was seen since the last reset (no data, or "
                "every `sample_weight` was 0)."
            )
        else:
            return
        warnings.warn(message, InvalidRowsWarning, stacklevel=3)

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros(variable.shape, dtype=variable.dtype))
        self._reported = ()

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

    Returns from `result()`: the ECE, or NaN if any row seen since the last
    reset was invalid: NaN/inf predictions; with `from_logits=False`, rows
    that are not probabilities (e.g. a logits model); with
    `from_logits=True`, a batch of probabilities; labels that are not a
    class, or one-hot rows that are not one-hot (soft labels); negative or
    non-finite `sample_weight`. Invalid rows are left out of the bins and
    counted per reason. The first eager `result()` that sees a new reason
    (Keras makes one when an epoch or `evaluate` ends) emits an
    `InvalidRowsWarning` with the reason and row count;
    `invalid_reasons()` returns the counts. NaN from no data (no example
    with positive weight) warns too.

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
