"""Per-bin sufficient statistics of confidence and correctness.

The statistics are a `(num_bins, 3)` tensor of (weighted count, confidence
sum, correct sum). They are fixed-shape and additive, so the streaming
metrics keep them as state and the functional metrics compute them in one
pass; `calibration_error_from_bins` turns either into a number.

Everything here uses `keras.ops` only, so it runs inside compiled Keras
loops on every backend.
"""

import numpy as np
from keras import ops

COUNT, CONFIDENCE_SUM, CORRECT_SUM = 0, 1, 2


def top_label(y_pred, from_logits):
    """Returns `(confidence, predicted_class)` of each row of `y_pred`."""
    predicted = ops.argmax(y_pred, axis=-1)
    if from_logits:
        # max softmax = 1 / sum(exp(z - max z)): no (N, K) softmax is stored.
        shifted = y_pred - ops.max(y_pred, axis=-1, keepdims=True)
        confidence = 1.0 / ops.sum(ops.exp(shifted), axis=-1)
    else:
        confidence = ops.max(y_pred, axis=-1)
    return confidence, predicted


def uniform_bin_index(confidence, num_bins):
    """Bin of each confidence for equal-width bins `(lo, hi]` over [0, 1].

    0 falls in the first bin and anything above the last inner edge
    (including 1.0) in the last.
    """
    inner_edges = np.linspace(0.0, 1.0, num_bins + 1)[1:-1].astype("float32")
    # The number of inner edges strictly below each confidence; the same as
    # searchsorted(side="left"), without its slow path on PyTorch.
    above = ops.expand_dims(confidence, -1) > ops.convert_to_tensor(inner_edges)
    return ops.sum(ops.cast(above, "int32"), axis=-1)


def bin_statistics(bin_index, confidence, correct, weight, num_bins):
    """Sums (weight, weight * confidence, weight * correct) per bin.

    Returns:
        A float32 tensor of shape `(num_bins, 3)`.
    """
    confidence = ops.cast(confidence, "float32")
    correct = ops.cast(correct, "float32")
    if weight is None:
        weight = ops.ones_like(confidence)
    weight = ops.cast(weight, "float32")
    columns = ops.stack([weight, weight * confidence, weight * correct], axis=1)
    membership = ops.one_hot(ops.cast(bin_index, "int32"), num_bins)
    return ops.matmul(ops.transpose(membership), columns)


def uniform_bin_statistics(confidence, correct, weight, num_bins):
    index = uniform_bin_index(confidence, num_bins)
    return bin_statistics(index, confidence, correct, weight, num_bins)


def quantile_bin_index(confidence, weight, num_bins):
    """Equal-mass bins: sorts by confidence and cuts the cumulative weight.

    Returns:
        `(order, bin_index)`: the sorting permutation and the bin of each
        example in sorted order. Ties may straddle a boundary, so that every
        bin holds the same mass (as in Nixon et al.'s adaptive ECE).
    """
    order = ops.argsort(confidence)
    if weight is None:
        sorted_weight = ops.ones_like(confidence)
    else:
        sorted_weight = ops.take(ops.cast(weight, "float32"), order)
    mass_before = ops.cumsum(sorted_weight) - sorted_weight
    total = ops.sum(sorted_weight)
    index = ops.floor(mass_before * num_bins / total)
    return order, ops.cast(ops.minimum(index, num_bins - 1), "int32")


def calibration_error_from_bins(statistics, norm="l1"):
    """Calibration error from per-bin statistics.

    Args:
        statistics: `(num_bins, 3)` tensor or array from `bin_statistics`.
        norm: `"l1"` (expected calibration error), `"l2"` (root mean square
            calibration error) or `"max"` (maximum calibration error).

    Returns:
        A scalar tensor; NaN when no example has positive weight.
    """
    statistics = ops.convert_to_tensor(statistics, dtype="float32")
    count = statistics[:, COUNT]
    gap_mass = ops.abs(statistics[:, CONFIDENCE_SUM] - statistics[:, CORRECT_SUM])
    total = ops.sum(count)
    filled = count > 0
    gap = ops.where(filled, gap_mass / ops.where(filled, count, 1.0), 0.0)
    if norm == "l1":
        error = ops.sum(gap_mass) / total
    elif norm == "l2":
        error = ops.sqrt(ops.sum(count * ops.square(gap)) / total)
    elif norm == "max":
        error = ops.max(gap)
    else:
        raise ValueError(
            f"`norm` must be one of 'l1', 'l2', 'max'; received {norm!r}."
        )
    return ops.where(total > 0, error, float("nan"))
