"""Validation and normalisation of classifier outputs and labels.

Every functional metric goes through `classification_inputs`, so bad input
fails the same way everywhere: early, with the argument and value named.
"""

import numpy as np
from keras import ops

# float32 softmax rows sum to 1 within ~1e-6; 1e-3 still rejects logits and
# unnormalised scores while tolerating probabilities saved at low precision.
_SUM_TOLERANCE = 1e-3


def classification_inputs(y_true, y_pred, *, from_logits, sample_weight=None):
    """Checks and normalises `(y_true, y_pred, sample_weight)`.

    Args:
        y_true: integer labels `(N,)` or `(N, 1)`, or one-hot `(N, K)`.
        y_pred: probabilities or logits `(N, K)`; `(N,)` or `(N, 1)` for a
            binary classifier with one sigmoid output.
        from_logits: whether `y_pred` holds logits.
        sample_weight: optional non-negative weights `(N,)`.

    Returns:
        `(labels, y_pred, weights)`: labels as an int32 tensor `(N,)`, `y_pred`
        as a float32 tensor `(N, K)` with `K >= 2` (a single sigmoid column is
        expanded to two classes), weights as a float32 tensor `(N,)` or None.

    Raises:
        ValueError: on empty or mis-shaped data, NaN/inf, probabilities that
            do not sum to 1, probabilities passed as logits, labels that are
            not integers or out of range, or invalid weights.
    """
    y_pred = _as_float_tensor(y_pred, "y_pred")
    if len(y_pred.shape) == 1:
        y_pred = ops.expand_dims(y_pred, -1)
    if len(y_pred.shape) != 2:
        raise ValueError(
            "`y_pred` must have shape (num_examples, num_classes) or "
            f"(num_examples,); received shape {tuple(y_pred.shape)}."
        )
    num_examples, num_classes = y_pred.shape
    if num_examples == 0:
        raise ValueError("`y_pred` is empty: received shape (0, ...).")
    if num_classes == 0:
        raise ValueError(f"`y_pred` has no classes: shape {tuple(y_pred.shape)}.")
    _check_finite(y_pred, "y_pred")
    if num_classes == 1:
        y_pred = _binary_to_two_classes(y_pred, from_logits)
        num_classes = 2
    elif from_logits:
        if _rows_are_probabilities(y_pred) and num_examples > 1:
            raise ValueError(
                "`y_pred` looks like probabilities (every row lies in [0, 1] "
                "and sums to 1) but `from_logits=True`. Pass "
                "`from_logits=False`."
            )
    else:
        _check_probabilities(y_pred)
    labels = ops.convert_to_tensor(checked_labels(y_true, num_examples, num_classes))
    weights = None
    if sample_weight is not None:
        weights = _weights(sample_weight, num_examples)
    return labels, y_pred, weights


def _as_float_tensor(x, name):
    if x is None:
        raise ValueError(f"`{name}` is required; received None.")
    try:
        return ops.convert_to_tensor(x, dtype="float32")
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be numeric; could not convert it ({error})."
        ) from None


def _check_finite(x, name):
    if not bool(ops.all(ops.isfinite(x))):
        bad = int(ops.sum(ops.cast(ops.logical_not(ops.isfinite(x)), "int32")))
        raise ValueError(
            f"`{name}` contains {bad} NaN or infinite value(s); calibration "
            "metrics need finite predictions."
        )


def _binary_to_two_classes(y_pred, from_logits):
    if from_logits:
        # softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)].
        return ops.concatenate([ops.zeros_like(y_pred), y_pred], axis=-1)
    low, high = float(ops.min(y_pred)), float(ops.max(y_pred))
    if low < 0.0 or high > 1.0:
        raise ValueError(
            "A single-column `y_pred` with `from_logits=False` must hold "
            f"probabilities in [0, 1]; received values in [{low}, {high}]. "
            "Pass `from_logits=True` for logits."
        )
    return ops.concatenate([1.0 - y_pred, y_pred], axis=-1)


def _row_sum_error(y_pred):
    return float(ops.max(ops.abs(ops.sum(y_pred, axis=-1) - 1.0)))


def _rows_are_probabilities(y_pred):
    return (
        float(ops.min(y_pred)) >= 0.0
        and float(ops.max(y_pred)) <= 1.0
        and _row_sum_error(y_pred) <= _SUM_TOLERANCE
    )


def _check_probabilities(y_pred):
    low = float(ops.min(y_pred))
    error = _row_sum_error(y_pred)
    if low < 0.0 or error > _SUM_TOLERANCE:
        raise ValueError(
            "`y_pred` must hold probabilities when `from_logits=False`: "
            f"rows must be non-negative and sum to 1, but min={low:.6g} and "
            f"max |row sum - 1|={error:.6g}. Pass `from_logits=True` if "
            "these are logits."
        )


def checked_labels(y_true, num_examples, num_classes):
    """Validates labels against the predictions' shape; numpy int32 `(N,)`.

    Accepts integer (or integer-valued float, or bool) labels `(N,)` or
    `(N, 1)`, or one-hot `(N, num_classes)`.
    """
    if y_true is None:
        raise ValueError("`y_true` is required; received None.")
    labels = np.asarray(ops.convert_to_numpy(y_true))
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        labels = _one_hot_to_sparse(labels)
    elif labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != num_examples:
        raise ValueError(
            "`y_true` must hold one integer label per example, shape "
            f"({num_examples},) or one-hot ({num_examples}, {num_classes}), "
            f"to match `y_pred`; received shape {labels.shape}."
        )
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not np.issubdtype(labels.dtype, np.number):
        raise ValueError(
            f"`y_true` must hold integer class labels; received dtype "
            f"{labels.dtype}."
        )
    if not np.issubdtype(labels.dtype, np.integer):
        non_integer = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if non_integer.size:
            raise ValueError(
                "`y_true` must hold integer class labels; received dtype "
                f"{labels.dtype} with non-integer value {non_integer[0]!r}."
            )
    low, high = labels.min().item(), labels.max().item()
    if low < 0 or high >= num_classes:
        bad = int(low if low < 0 else high)
        raise ValueError(
            f"`y_true` has label {bad!r} outside [0, {num_classes - 1}] for "
            f"`y_pred` with {num_classes} classes."
        )
    return labels.astype(np.int32)


def _one_hot_to_sparse(labels):
    is_binary = np.all((labels == 0) | (labels == 1))
    if not is_binary or not np.all(labels.sum(axis=1) == 1):
        raise ValueError(
            "`y_true` of shape (N, num_classes) must be one-hot (a single 1 "
            "per row); soft labels are not supported by top-label metrics."
        )
    return np.argmax(labels, axis=1)


def _weights(sample_weight, num_examples):
    weights = np.asarray(ops.convert_to_numpy(sample_weight), dtype=np.float64)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape != (num_examples,):
        raise ValueError(
            f"`sample_weight` must have shape ({num_examples},); received "
            f"shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise ValueError(
            "`sample_weight` must be finite and non-negative; received min="
            f"{np.nanmin(weights)!r}."
        )
    if weights.sum() <= 0:
        raise ValueError("`sample_weight` sums to 0: no example would count.")
    return ops.convert_to_tensor(weights.astype(np.float32))


def outputs_are_probabilities(outputs):
    """Guesses whether model outputs are probabilities rather than logits.

    A single column counts as probabilities when it lies in [0, 1]; several
    columns when every row is non-negative and sums to 1. Logits practically
    never pass this test on more than a handful of rows.
    """
    outputs = np.asarray(ops.convert_to_numpy(outputs), dtype=np.float64)
    if outputs.ndim == 1 or outputs.shape[-1] == 1:
        return bool(outputs.min() >= 0.0 and outputs.max() <= 1.0)
    row_error = np.abs(outputs.sum(axis=-1) - 1.0).max()
    return bool(outputs.min() >= 0.0 and row_error <= _SUM_TOLERANCE)
