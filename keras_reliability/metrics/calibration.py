"""Calibration metrics as functions: labels and predictions in, a float out.

Inputs may be numpy arrays or tensors of the active Keras backend; the heavy
work runs in `keras.ops`, the final arithmetic on a few numbers in numpy.

Conventions (tested): top-label binning over the confidence of the predicted
class, equal-width bins `(lo, hi]` with 0 in the first bin and 1.0 in the
last; `binning="quantile"` gives equal-mass bins (Mukhoti et al.'s
adaptive ECE, still top-label).
"""

import numpy as np
from keras import ops

from keras_reliability import registry
from keras_reliability.metrics import binning as bin_ops
from keras_reliability.metrics._inputs import classification_inputs
from keras_reliability.metrics.reliability_bins import ReliabilityBins
from keras_reliability.metrics.smooth_ece import smooth_calibration_error

BINNINGS = ("uniform", "quantile")

# Floor on the true-class probability before the log, so that a probability
# of 0 gives a large finite NLL instead of inf; logits need no floor. 1e-15 is
# scikit-learn's `log_loss` default before 1.2, kept so that published
# numbers computed with it (e.g. markus93's DenseNet-40 table) reproduce.
_LOG_EPSILON = 1e-15


def check_num_bins(num_bins):
    """Raises a `ValueError` unless `num_bins` is an integer >= 1."""
    if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)):
        raise ValueError(
            f"`num_bins` must be an integer >= 1; received {num_bins!r}."
        )
    if num_bins < 1:
        raise ValueError(f"`num_bins` must be >= 1; received {num_bins}.")
    return int(num_bins)


def _check_binning(binning_name):
    if binning_name not in BINNINGS:
        raise ValueError(
            f"`binning` must be one of {BINNINGS}; received {binning_name!r}."
        )


def _top_label_statistics(
    y_true, y_pred, num_bins, binning_name, from_logits, sample_weight
):
    """Validates inputs and returns `(statistics, edges)` as numpy arrays."""
    num_bins = check_num_bins(num_bins)
    _check_binning(binning_name)
    labels, y_pred, weights, weight_scale = classification_inputs(
        y_true,
        y_pred,
        from_logits=from_logits,
        sample_weight=sample_weight,
        return_weight_scale=True,
    )
    confidence, predicted = bin_ops.top_label(y_pred, from_logits)
    correct = ops.equal(ops.cast(predicted, "int32"), labels)
    if binning_name == "uniform":
        index = bin_ops.uniform_bin_index(confidence, num_bins)
        edges = np.linspace(0.0, 1.0, num_bins + 1)
    else:
        order, index = bin_ops.quantile_bin_index(confidence, weights, num_bins)
        confidence, correct = ops.take(confidence, order), ops.take(correct, order)
        weights = None if weights is None else ops.take(weights, order)
        edges = _quantile_edges(
            ops.convert_to_numpy(confidence), ops.convert_to_numpy(index), num_bins
        )
    # Weighted counts in the caller's units (the weights were rescaled by a
    # power of two, which this multiplication undoes exactly).
    statistics = _sum_per_bin(index, confidence, correct, weights, num_bins)
    return statistics * weight_scale, edges


def _sum_per_bin(index, confidence, correct, weights, num_bins):
    """`(num_bins, 3)` float64 sums of (weight, confidence, correct) per bin.

    Summed on the host in float64: float32 accumulation over 10k examples
    already moves the ECE by ~4e-6.
    """
    index = np.asarray(ops.convert_to_numpy(index)).ravel()
    confidence = np.asarray(ops.convert_to_numpy(confidence), np.float64).ravel()
    correct = np.asarray(ops.convert_to_numpy(correct), np.float64).ravel()
    if weights is None:
        weights = np.ones_like(confidence)
    else:
        weights = np.asarray(ops.convert_to_numpy(weights), np.float64).ravel()
    columns = (weights, weights * confidence, weights * correct)
    return np.stack(
        [np.bincount(index, column, minlength=num_bins) for column in columns], axis=1
    )


def _quantile_edges(sorted_confidence, index, num_bins):
    """Upper edge of each bin = its largest confidence (0 and 1 outside)."""
    edges = np.zeros(num_bins + 1)
    edges[-1] = 1.0
    for i in range(num_bins - 1):
        members = sorted_confidence[index == i]
        edges[i + 1] = members[-1] if members.size else edges[i]
    return edges


def _error(statistics, norm):
    return float(bin_ops.calibration_error_from_bins(statistics, norm=norm))


@registry.register("calibration_metric", "ece")
def expected_calibration_error(
    y_true,
    y_pred,
    *,
    num_bins=15,
    binning="uniform",
    from_logits=False,
    sample_weight=None,
):
    """Top-label expected calibration error (ECE).

    The count-weighted mean, over confidence bins, of the absolute difference
    between accuracy and mean confidence of the predicted class.

    Args:
        y_true: integer labels `(N,)` or one-hot `(N, K)`.
        y_pred: probabilities `(N, K)`, or logits with `from_logits=True`.
            A binary classifier may pass its single sigmoid output `(N,)`.
        num_bins: number of bins, >= 1.
        binning: `"uniform"` for equal-width bins `(lo, hi]` over [0, 1], or
            `"quantile"` for equal-mass bins (see
            `adaptive_calibration_error`).
        from_logits: whether `y_pred` holds logits.
        sample_weight: optional non-negative weights `(N,)`.

    Returns:
        The ECE as a Python float in [0, 1].

    Raises:
        ValueError: for empty or mis-shaped inputs, NaN/inf, probabilities
            that do not sum to 1, labels out of range, `num_bins < 1`.

    Example:

    >>> y_true = [0, 1, 1, 0]
    >>> y_pred = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]
    >>> round(expected_calibration_error(y_true, y_pred, num_bins=5), 4)
    0.3

    References:
        - Naeini et al., "Obtaining Well Calibrated Probabilities Using
          Bayesian Binning", AAAI 2015.
        - Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """
    statistics, _ = _top_label_statistics(
        y_true, y_pred, num_bins, binning, from_logits, sample_weight
    )
    return _error(statistics, "l1")


@registry.register("calibration_metric", "adaptive_ece")
def adaptive_calibration_error(
    y_true, y_pred, *, num_bins=15, from_logits=False, sample_weight=None
):
    """Top-label ECE with equal-mass bins: Mukhoti et al.'s adaptive ECE.

    The confidences of the predicted class are sorted and cut into
    `num_bins` bins holding the same number of examples (the same total
    weight with `sample_weight`; tied confidences may straddle a boundary so
    that the masses stay equal). The result is the count-weighted mean over
    bins of `|accuracy - mean confidence|`, i.e.
    `expected_calibration_error(..., binning="quantile")`. This is AdaECE of
    Mukhoti et al. (2020). Their released code cuts at interpolated edges
    into bins `(lo, hi]`, which can move an example across a boundary and
    leaves out the lowest confidence; here each bin holds exactly its share.

    It is not the adaptive calibration error (ACE) of Nixon et al. (2019),
    which bins every class's probability `p_k` over all examples into
    equal-mass ranges and averages the gaps over classes and ranges; on the
    same predictions the two generally differ.

    Args:
        y_true: integer labels `(N,)` or one-hot `(N, K)`.
        y_pred: probabilities `(N, K)`, or logits with `from_logits=True`.
            A binary classifier may pass its single sigmoid output `(N,)`.
        num_bins: number of equal-mass bins, >= 1.
        from_logits: whether `y_pred` holds logits.
        sample_weight: optional non-negative weights `(N,)`.

    Returns:
        The adaptive ECE as a Python float in [0, 1].

    Raises:
        ValueError: as `expected_calibration_error`.

    Example:

    >>> y_true = [0, 1, 1, 0]
    >>> y_pred = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]
    >>> round(adaptive_calibration_error(y_true, y_pred, num_bins=2), 4)
    0.15

    References:
        - Mukhoti et al., "Calibrating Deep Neural Networks using Focal
          Loss", NeurIPS 2020 (AdaECE, computed here).
        - Nixon et al., "Measuring Calibration in Deep Learning", CVPR
          Workshops 2019 (ACE, the class-wise variant; not computed here).
    """
    return expected_calibration_error(
        y_true,
        y_pred,
        num_bins=num_bins,
        binning="quantile",
        from_logits=from_logits,
        sample_weight=sample_weight,
    )


@registry.register("calibration_metric", "mce")
def max_calibration_error(
    y_true,
    y_pred,
    *,
    num_bins=15,
    binning="uniform",
    from_logits=False,
    sample_weight=None,
):
    """Maximum calibration error (MCE): the largest bin gap.

    The maximum over non-empty bins of `|accuracy - confidence|`. Arguments
    as in `expected_calibration_error`.

    References:
        - Naeini et al., "Obtaining Well Calibrated Probabilities Using
          Bayesian Binning", AAAI 2015.
    """
    statistics, _ = _top_label_statistics(
        y_true, y_pred, num_bins, binning, from_logits, sample_weight
    )
    return _error(statistics, "max")


@registry.register("calibration_metric", "rmsce")
def root_mean_square_calibration_error(
    y_true,
    y_pred,
    *,
    num_bins=15,
    binning="uniform",
    from_logits=False,
    sample_weight=None,
):
    """Root-mean-square calibration error over bins (the binned L2 error).

    `sqrt(sum_b (n_b / N) * (accuracy_b - confidence_b) ** 2)`. Arguments as
    in `expected_calibration_error`.

    References:
        - Hendrycks et al., "Deep Anomaly Detection with Outlier Exposure",
          ICLR 2019 (RMS calibration error).
    """
    statistics, _ = _top_label_statistics(
        y_true, y_pred, num_bins, binning, from_logits, sample_weight
    )
    return _error(statistics, "l2")


def reliability_bins(
    y_true,
    y_pred,
    *,
    num_bins=15,
    binning="uniform",
    from_logits=False,
    sample_weight=None,
):
    """Per-bin count, mean confidence and accuracy: the reliability diagram.

    Arguments as in `expected_calibration_error`.

    Returns:
        A `ReliabilityBins`; its `expected_calibration_error` equals
        `expected_calibration_error(...)` with the same arguments.

    Example:

    >>> bins = reliability_bins([0, 1, 1], [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    >>> bins.count.sum()
    3.0
    """
    statistics, edges = _top_label_statistics(
        y_true, y_pred, num_bins, binning, from_logits, sample_weight
    )
    count = statistics[:, bin_ops.COUNT]
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(
            count > 0, statistics[:, bin_ops.CONFIDENCE_SUM] / count, np.nan
        )
        accuracy = np.where(
            count > 0, statistics[:, bin_ops.CORRECT_SUM] / count, np.nan
        )
    return ReliabilityBins(
        edges=edges, count=count, confidence=confidence, accuracy=accuracy
    )


def _probabilities(y_pred, from_logits):
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


@registry.register("calibration_metric", "classwise_ece")
def classwise_calibration_error(
    y_true, y_pred, *, num_bins=15, from_logits=False, sample_weight=None
):
    """Class-wise ECE: the ECE of every class's probability, averaged.

    For each class `k`, examples are binned by `p_k` (equal-width bins
    `(lo, hi]`) and each bin's mean `p_k` is compared with the frequency of
    label `k` in it; the result is the mean over classes.

    Kull et al. (2019) report the *sum* over classes (here: the mean times
    the number of classes), and with a different number of bins.

    Args:
        y_true, y_pred, num_bins, from_logits, sample_weight: as in
            `expected_calibration_error`.

    Returns:
        The class-wise ECE as a Python float.

    References:
        - Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
          multi-class probabilities with Dirichlet calibration", NeurIPS 2019.
    """
    num_bins = check_num_bins(num_bins)
    labels, y_pred, weights = classification_inputs(
        y_true, y_pred, from_logits=from_logits, sample_weight=sample_weight
    )
    probabilities = _probabilities(y_pred, from_logits)
    num_classes = probabilities.shape[-1]
    # One pass for all classes: class k uses bins k * num_bins ... .
    offsets = ops.arange(num_classes, dtype="int32") * num_bins
    index = bin_ops.uniform_bin_index(probabilities, num_bins) + offsets
    is_label = _one_hot(labels, num_classes)
    if weights is not None:
        weights = ops.expand_dims(weights, -1) * ops.ones_like(probabilities)
    statistics = _sum_per_bin(
        index, probabilities, is_label, weights, num_classes * num_bins
    )
    per_class = bin_ops.calibration_error_from_bins(
        statistics.reshape(num_classes, num_bins, 3), norm="l1"
    )
    return float(np.mean(per_class))


def _one_hot(labels, num_classes):
    return ops.one_hot(labels, num_classes, dtype="float32")


def _weighted_mean(values, weights):
    if weights is None:
        return float(ops.mean(values))
    return float(ops.sum(values * weights) / ops.sum(weights))


@registry.register("calibration_metric", "brier")
def brier_score(y_true, y_pred, *, from_logits=False, sample_weight=None):
    """Brier score: mean over examples and classes of `(p - one_hot)**2`.

    This is the mean over all `N x K` entries, so it lies in [0, 2 / K]
    (scikit-learn's binary `brier_score_loss` and the per-example sum used
    by TensorFlow Probability are scaled differently).

    Args:
        y_true, y_pred, from_logits, sample_weight: as in
            `expected_calibration_error`.

    Returns:
        The Brier score as a Python float.

    References:
        - Brier, "Verification of forecasts expressed in terms of
          probability", Monthly Weather Review, 1950.
    """
    labels, y_pred, weights = classification_inputs(
        y_true, y_pred, from_logits=from_logits, sample_weight=sample_weight
    )
    probabilities = _probabilities(y_pred, from_logits)
    targets = _one_hot(labels, probabilities.shape[-1])
    per_example = ops.mean(ops.square(probabilities - targets), axis=-1)
    return _weighted_mean(per_example, weights)


def brier_decomposition(y_true, y_pred, *, from_logits=False):
    """Splits the Brier score into uncertainty, resolution and reliability.

    `brier ~= uncertainty - resolution + reliability`, with forecasts grouped
    by their predicted class (as TensorFlow Probability's
    `brier_decomposition`); the identity holds up to an estimation error of
    order `K / N`. All three are in the units of `brier_score` (mean over
    classes): TensorFlow Probability's are `K` times larger and its
    uncertainty is shifted by -1. Its resolution (0.25) broadcasts the mean
    label distribution along the predicted-class axis; ours is the textbook
    `sum_k w_k ||p(y | pred=k) - p(y)||^2`, so the two agree only when the
    labels are balanced.

    Args:
        y_true, y_pred, from_logits: as in `expected_calibration_error`.

    Returns:
        A dict with float entries `"uncertainty"`, `"resolution"` and
        `"reliability"`.

    References:
        - Bröcker, "Reliability, sufficiency, and the decomposition of proper
          scores", Quarterly Journal of the Royal Meteorological Society, 2009.
    """
    labels, y_pred, _ = classification_inputs(
        y_true, y_pred, from_logits=from_logits
    )
    probabilities = ops.convert_to_numpy(_probabilities(y_pred, from_logits))
    probabilities = probabilities.astype(np.float64)
    labels = ops.convert_to_numpy(labels)
    num_examples, num_classes = probabilities.shape
    predicted = np.argmax(probabilities, axis=1)
    confusion = np.zeros((num_classes, num_classes))
    np.add.at(confusion, (predicted, labels), 1.0)
    group_size = confusion.sum(axis=1)
    group_weight = group_size / num_examples
    label_frequency = confusion.sum(axis=0) / num_examples
    # Empirical label distribution among examples predicted as each class.
    group_label_distribution = confusion / np.maximum(group_size, 1.0)[:, None]
    uncertainty = 1.0 - np.sum(np.square(label_frequency))
    resolution = np.sum(
        group_weight
        * np.sum(np.square(group_label_distribution - label_frequency), axis=1)
    )
    reliability = np.mean(
        np.sum(
            np.square(probabilities - group_label_distribution[predicted]), axis=1
        )
    )
    return {
        "uncertainty": float(uncertainty / num_classes),
        "resolution": float(resolution / num_classes),
        "reliability": float(reliability / num_classes),
    }


@registry.register("calibration_metric", "nll")
def negative_log_likelihood(
    y_true, y_pred, *, from_logits=False, sample_weight=None
):
    """Mean negative log-likelihood of the true class (cross-entropy).

    From logits it is exact (log-softmax, no clipping). From probabilities,
    `y_pred` is read as float32 and the true-class probability `p` enters as
    `-log(max(p, 1e-15))`: a probability of 0, or any below 1e-15 (say
    1e-30), costs `-log(1e-15) ~= 34.539` nats; nothing is clipped at the
    top, so `p = 1` costs 0.

    This equals scikit-learn's `log_loss` on float64 probabilities (up to
    float32 rounding) as long as every true-class probability is at least
    1e-15. Below that they differ: since version 1.2 scikit-learn clips to
    `[eps, 1 - eps]` with `eps` the machine epsilon of the input's dtype
    (2.2e-16 for float64, so `p = 0` costs ~36.044 nats; 1.2e-7 for
    float32, where it already clips any `p < 1.2e-7`). 1e-15 was its default
    before 1.2, so numbers published with older versions reproduce.

    Args:
        y_true, y_pred, from_logits, sample_weight: as in
            `expected_calibration_error`.

    Returns:
        The NLL in nats as a Python float.

    Raises:
        ValueError: as `expected_calibration_error`.

    Example:

    >>> round(negative_log_likelihood([0, 1], [[0.5, 0.5], [1.0, 0.0]]), 3)
    17.616
    """
    labels, y_pred, weights = classification_inputs(
        y_true, y_pred, from_logits=from_logits, sample_weight=sample_weight
    )
    targets = _one_hot(labels, y_pred.shape[-1])
    if from_logits:
        log_probabilities = ops.log_softmax(y_pred, axis=-1)
        true_log_probability = ops.sum(log_probabilities * targets, axis=-1)
    else:
        true_probability = ops.sum(y_pred * targets, axis=-1)
        true_log_probability = ops.log(ops.maximum(true_probability, _LOG_EPSILON))
    return _weighted_mean(-true_log_probability, weights)


@registry.register("calibration_metric", "smooth_ece")
def smooth_ece(
    y_true, y_pred, *, from_logits=False, sample_weight=None, bandwidth=None
):
    """Top-label smooth ECE: kernel-smoothed, with an automatic bandwidth.

    Applies `keras_reliability.metrics.smooth_calibration_error` to the
    confidence of the predicted class and whether it was right. Needs no
    choice of bins; the bandwidth is the fixed point `smECE(sigma) = sigma`
    unless given.

    Args:
        y_true, y_pred, from_logits, sample_weight: as in
            `expected_calibration_error`.
        bandwidth: kernel width; `None` chooses it automatically.

    Returns:
        The smooth ECE as a Python float.

    References:
        - Błasiok & Nakkiran, "Smooth ECE: Principled Reliability Diagrams
          via Kernel Smoothing", ICLR 2024.
    """
    labels, y_pred, weights, weight_scale = classification_inputs(
        y_true,
        y_pred,
        from_logits=from_logits,
        sample_weight=sample_weight,
        return_weight_scale=True,
    )
    if weights is not None:
        # smECE's density floor is per example of weight 1, so the weights
        # go in with the caller's scale (the rescaling is undone exactly).
        weights = np.asarray(ops.convert_to_numpy(weights), np.float64) * weight_scale
    confidence, predicted = bin_ops.top_label(y_pred, from_logits)
    correct = ops.convert_to_numpy(ops.equal(ops.cast(predicted, "int32"), labels))
    return float(
        smooth_calibration_error(
            np.clip(ops.convert_to_numpy(confidence).astype(np.float64), 0.0, 1.0),
            correct.astype(np.float64),
            bandwidth=bandwidth,
            sample_weight=weights,
        )
    )
