"""Per-bin sufficient statistics of confidence and correctness.

The statistics are a `(num_bins, 3)` tensor of (weighted count, confidence
sum, correct sum). They are fixed-shape and additive, so the streaming
metrics keep them as state and the functional metrics compute them in one
pass; `calibration_error_from_bins` turns either into a number.

Everything here uses `keras.ops`, so it runs inside compiled Keras loops on
every backend; `calibration_error_from_bins` also accepts numpy arrays.
"""

import numpy as np
from keras import ops

from keras_reliability import backend

COUNT, CONFIDENCE_SUM, CORRECT_SUM = 0, 1, 2


def top_label(y_pred, from_logits):
    """Returns `(confidence, predicted_class)` of each row of `y_pred`."""
    predicted = backend.argmax(y_pred, axis=-1)
    probabilities = ops.softmax(y_pred, axis=-1) if from_logits else y_pred
    return ops.max(probabilities, axis=-1), predicted


def uniform_bin_index(confidence, num_bins):
    """Bin of each confidence for equal-width bins `(lo, hi]` over [0, 1].

    0 falls in the first bin and anything above the last inner edge
    (including 1.0) in the last.
    """
    edges = ops.convert_to_tensor(
        np.linspace(0.0, 1.0, num_bins + 1).astype("float32")
    )
    # ceil(c * B) - 1 is the bin up to rounding; one comparison with the
    # actual float32 edges on each side makes it exact (a confidence equal
    # to an edge belongs to the lower bin). Elementwise, so any shape works.
    guess = ops.cast(ops.ceil(confidence * num_bins), "int32") - 1
    guess = ops.clip(guess, 0, num_bins - 1)
    below = (confidence <= ops.take(edges, guess)) & (guess > 0)
    above = (confidence > ops.take(edges, guess + 1)) & (guess < num_bins - 1)
    return guess - ops.cast(below, "int32") + ops.cast(above, "int32")


def bin_statistics(bin_index, confidence, correct, weight, num_bins):
    """Sums (weight, weight * confidence, weight * correct) per bin.

    The streaming metrics' per-batch sums (float32, in the compiled step);
    the functional metrics sum in float64 on the host instead.

    Returns:
        A float32 tensor of shape `(num_bins, 3)`.
    """
    confidence = ops.cast(confidence, "float32")
    correct = ops.cast(correct, "float32")
    if weight is None:
        weight = ops.ones_like(confidence)
    weight = ops.cast(weight, "float32")
    columns = ops.stack([weight, weight * confidence, weight * correct], axis=1)
    segments = ops.cast(bin_index, "int32")
    return ops.segment_sum(columns, segments, num_segments=num_bins)


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
        statistics: `(..., num_bins, 3)` tensor or numpy array of per-bin
            sums; leading axes (e.g. classes) are kept.
        norm: `"l1"` (expected calibration error), `"l2"` (root mean square
            calibration error) or `"max"` (maximum calibration error).

    Returns:
        A tensor (a numpy array for numpy input) of shape
        `statistics.shape[:-2]`; NaN where no example has positive weight.
    """
    # numpy statistics (the functional metrics' float64 sums) stay numpy;
    # tensors (the streaming metrics' state) stay in the compiled graph.
    xp = np if isinstance(statistics, np.ndarray) else ops
    count = statistics[..., COUNT]
    gap_mass = xp.abs(statistics[..., CONFIDENCE_SUM] - statistics[..., CORRECT_SUM])
    total = xp.sum(count, axis=-1)
    filled = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = xp.where(filled, gap_mass / xp.where(filled, count, 1.0), 0.0)
        if norm == "l1":
            error = xp.sum(gap_mass, axis=-1) / total
        elif norm == "l2":
            error = xp.sqrt(xp.sum(count * xp.square(gap), axis=-1) / total)
        elif norm == "max":
            error = xp.max(gap, axis=-1)
        else:
            raise ValueError(
                f"`norm` must be one of 'l1', 'l2', 'max'; received {norm!r}."
            )
    return xp.where(total > 0, error, float("nan"))
