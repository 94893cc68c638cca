"""Validation and normalisation of classifier outputs and labels.

Every functional metric goes through `classification_inputs`, so bad input
fails the same way everywhere: early, with the argument and value named.
"""

import numpy as np
from keras import ops

from keras_reliability.data import check_sample_weight
from keras_reliability.models.labels import class_labels

# float32 softmax rows sum to 1 within ~1e-6; 1e-3 still rejects logits and
# unnormalised scores while tolerating probabilities saved at low precision.
_SUM_TOLERANCE = 1e-3


def classification_inputs(
    y_true, y_pred, *, from_logits, sample_weight=None, return_weight_scale=False
):
    """Checks and normalises `(y_true, y_pred, sample_weight)`.

    Args:
        y_true: integer labels `(N,)` or `(N, 1)`, or one-hot `(N, K)`.
        y_pred: probabilities or logits `(N, K)`; `(N,)` or `(N, 1)` for a
            binary classifier with one sigmoid output.
        from_logits: whether `y_pred` holds logits.
        sample_weight: optional non-negative weights `(N,)`.
        return_weight_scale: also return the power of two the weights were
            divided by (see `_weights`), for callers that report weighted
            counts.

    Returns:
        `(labels, y_pred, weights)`: labels as an int32 tensor `(N,)`, `y_pred`
        as a float32 tensor `(N, K)` with `K >= 2` (a single sigmoid column is
        expanded to two classes), weights as a float32 tensor `(N,)` (rescaled
        by a power of two, see `_weights`) or None; with
        `return_weight_scale=True`, the scale (a float, 1.0 without weights)
        as a fourth entry.

    Raises:
        ValueError: on empty or mis-shaped data, NaN/inf, probabilities that
            do not sum to 1, probabilities passed as logits, labels that are
            not integers or out of range, or invalid weights.
    """
    if not isinstance(from_logits, (bool, np.bool_)):
        raise ValueError(
            f"`from_logits` must be True or False; received {from_logits!r}."
        )
    from_logits = bool(from_logits)
    y_pred = float_tensor(y_pred, "y_pred")
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
    labels = ops.convert_to_tensor(
        class_labels(y_true, num_examples, num_classes, name="y_true")
    )
    weights, scale = None, 1.0
    if sample_weight is not None:
        weights, scale = _weights(sample_weight, num_examples)
    if return_weight_scale:
        return labels, y_pred, weights, scale
    return labels, y_pred, weights


def float_tensor(x, name):
    """`x` as a float32 tensor, refusing what is not an array of real numbers.

    Backend tensors are checked by their dtype only (no copy to the host);
    anything else goes through numpy first, so that strings, objects, ragged
    lists, complex or boolean values and floats beyond the float32 range
    are refused with the argument named, instead of failing inside the
    backend or being cast silently (complex to real, 1e39 to inf).
    """
    if x is None:
        raise ValueError(f"`{name}` is required; received None.")
    if ops.is_tensor(x):
        kind = np.dtype(_numpy_dtype_name(x.dtype)).kind
        dtype = x.dtype
    else:
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`{name}` must be an array of numbers; could not read it "
                f"({type(error).__name__}: {error})."
            ) from None
        kind, dtype = x.dtype.kind, x.dtype
    if kind not in "fiu":
        raise ValueError(
            f"`{name}` must hold real numbers (floats or integers); received "
            f"dtype {dtype}."
        )
    if not ops.is_tensor(x) and kind == "f" and x.size:
        finite = x[np.isfinite(x)]
        if finite.size and np.abs(finite).max() > np.finfo(np.float32).max:
            raise ValueError(
                f"`{name}` holds values beyond the float32 range (largest "
                f"|value| {np.abs(finite).max():.4g}); metrics read predictions "
                "as float32."
            )
    return ops.convert_to_tensor(x, dtype="float32")


def _numpy_dtype_name(dtype):
    """A backend dtype as a numpy dtype name ("float32", "bool", "complex64"...)."""
    from keras import backend

    name = backend.standardize_dtype(dtype)
    return "float32" if name == "bfloat16" else name


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


def _weights(sample_weight, num_examples):
    """Float32 weights rescaled by a power of two, and that power.

    Every weighted metric is a ratio (sum w * x / sum w), so the weights are
    divided by `2**e`, putting their maximum in [0.5, 1), before the float32
    cast: weights of 1e-45 (a float32 subnormal, flushed to zero on
    TensorFlow's CPU threads) or 1e-50 would otherwise sum to 0 and give NaN,
    and weights beyond the float32 range inf / inf. A power of two changes
    no significant bit, so weights that float32 holds stay exact; callers
    that report weighted counts multiply them by the returned scale.
    """
    weights = check_sample_weight(sample_weight, num_examples)
    _, exponent = np.frexp(weights.max())
    scale = float(np.ldexp(1.0, int(exponent)))
    weights = np.ldexp(weights, -int(exponent))
    return ops.convert_to_tensor(weights.astype(np.float32)), scale
