"""Out-of-distribution (OOD) detection metrics on two sets of scores.

Every function takes the scores of in-distribution (ID) examples and of OOD
examples as 1-D arrays (numpy arrays, lists or tensors of the active Keras
backend) and returns a Python float. The metrics are exact: each set is
sorted once, the two are merged into counts at every distinct score, and every
metric is read from those counts in numpy (integer counts, float64), so they
match scikit-learn (ties included) and run on millions of scores in well under
a second. `evaluate_ood` computes them all from a single pass.

Conventions (pinned and tested):

- A **higher score means more OOD**.
- AUROC and AUPR-out take OOD as the positive class; AUPR-in takes ID as the
  positive class (with the score negated). Tied scores count half in AUROC.
- FPR@TPR: an example is accepted as ID iff its score is `<= t`; `t` is the
  smallest score at which at least a fraction `tpr` of the ID examples is
  accepted, and the result is the fraction of OOD examples accepted too (an
  OOD score equal to `t` counts as accepted: ties are pessimistic).
- When all scores, ID and OOD together, are equal, no threshold separates
  anything: every metric is undefined, returns NaN and warns.
"""

import numbers
import typing
import warnings

import keras
import numpy as np

DEFAULT_TPR = 0.95


class _ScoreCounts(typing.NamedTuple):
    """Counts of ID and OOD scores at each distinct score, from one sort.

    Attributes:
        values: the distinct scores, ascending, float64 `(M,)`.
        in_count: number of ID scores equal to each value, int64 `(M,)`.
        out_count: number of OOD scores equal to each value, int64 `(M,)`.
        in_le: number of ID scores `<= values[k]` (cumulative `in_count`).
        out_le: number of OOD scores `<= values[k]`.
        num_in: number of ID scores.
        num_out: number of OOD scores.
    """

    values: np.ndarray
    in_count: np.ndarray
    out_count: np.ndarray
    in_le: np.ndarray
    out_le: np.ndarray
    num_in: int
    num_out: int

    @property
    def is_constant(self):
        return self.values.size == 1

    @property
    def in_ge(self):
        """Number of ID scores `>= values[k]`."""
        return self.num_in - self.in_le + self.in_count

    @property
    def out_ge(self):
        """Number of OOD scores `>= values[k]`."""
        return self.num_out - self.out_le + self.out_count


def check_scores(scores, name):
    """Returns `scores` as a float64 numpy vector, or raises naming `name`.

    Accepts shape `(N,)` or `(N, 1)` with `N >= 1` and finite values.
    """
    if scores is None:
        raise ValueError(f"`{name}` is required; received None.")
    if keras.ops.is_tensor(scores):
        scores = keras.ops.convert_to_numpy(scores)
    try:
        array = np.asarray(scores)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{name}` must be numeric scores; could not convert it ({error})."
        ) from None
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
        or array.dtype == np.bool_
    ):
        raise ValueError(
            f"`{name}` must hold real numbers; received dtype {array.dtype}."
        )
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must have shape (num_examples,) or (num_examples, 1); "
            f"received shape {array.shape}."
        )
    if array.size == 0:
        raise ValueError(f"`{name}` is empty: received shape {array.shape}.")
    array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"`{name}` must be finite; received {array[bad]} at index {bad} "
            f"({int((~finite).sum())} non-finite value(s))."
        )
    return array


def _check_tpr(tpr):
    valid = (
        not isinstance(tpr, bool)
        and isinstance(tpr, numbers.Real)
        and 0.0 < tpr <= 1.0
    )
    if not valid:
        raise ValueError(
            f"`tpr` must be a number in (0, 1]; received {tpr!r}."
        )
    return float(tpr)


def _score_counts(scores_in, scores_out):
    """Validates both score sets and counts them at every distinct score.

    The only sorting in this module (each set sorted once, then merged):
    every metric is read from its result.
    """
    scores_in = check_scores(scores_in, "scores_in")
    scores_out = check_scores(scores_out, "scores_out")
    num_in, num_out = scores_in.size, scores_out.size
    sorted_in = np.sort(scores_in)
    # numpy's stable sort (timsort) merges the two sorted runs in linear time.
    merged = np.sort(np.concatenate([sorted_in, np.sort(scores_out)]), kind="stable")
    # Last position of each run of equal scores.
    ends = np.append(np.flatnonzero(merged[1:] != merged[:-1]), merged.size - 1)
    values = merged[ends]
    in_le = np.searchsorted(sorted_in, values, side="right").astype(np.int64)
    out_le = ends.astype(np.int64) + 1 - in_le
    return _ScoreCounts(
        values=values,
        in_count=np.diff(in_le, prepend=0),
        out_count=np.diff(out_le, prepend=0),
        in_le=in_le,
        out_le=out_le,
        num_in=num_in,
        num_out=num_out,
    )


def _warn_constant(counts, consequence, stacklevel=3):
    warnings.warn(
        f"All {counts.num_in + counts.num_out} in- and out-of-distribution "
        f"scores are constant (equal to {float(counts.values[0])!r}), so no "
        f"threshold separates the two sets: {consequence}.",
        UserWarning,
        stacklevel=stacklevel,
    )


# Metrics from counts. Each is a few vectorised operations over the distinct
# scores; sums are over integer counts, in int64 or float64.


def _auroc(counts):
    # Mann-Whitney: P(out > in) + P(out == in) / 2, summed over ID values.
    out_greater = counts.num_out - counts.out_le
    twice = np.sum(counts.in_count * (2 * out_greater + counts.out_count))
    return float(twice / (2.0 * counts.num_in * counts.num_out))


def _average_precision(positive_count, positive_accepted, accepted, num_positive):
    # sum over thresholds of (recall step) * precision, as scikit-learn's
    # `average_precision_score` (no interpolation).
    precision = positive_accepted / accepted.astype(np.float64)
    return float(np.sum(positive_count * precision) / num_positive)


def _aupr_in(counts):
    # ID positive, accepted iff score <= t.
    return _average_precision(
        counts.in_count, counts.in_le, counts.in_le + counts.out_le, counts.num_in
    )


def _aupr_out(counts):
    # OOD positive, flagged iff score >= t.
    out_ge = counts.out_ge
    return _average_precision(
        counts.out_count, out_ge, out_ge + counts.in_ge, counts.num_out
    )


def _fpr_at_tpr(counts, tpr):
    # Same float division as scikit-learn's roc_curve, so `>=` agrees with it.
    id_accepted = counts.in_le / counts.num_in
    index = int(np.argmax(id_accepted >= tpr))
    return float(counts.out_le[index] / counts.num_out)


def _detection_error(counts):
    # Threshold at each distinct score. The largest one accepts all (0.5),
    # and accepting nothing gives 0.5 too, so the extremes are covered.
    errors = 0.5 * (1.0 - counts.in_le / counts.num_in) + 0.5 * (
        counts.out_le / counts.num_out
    )
    return float(np.min(errors))


def _metric(scores_in, scores_out, compute, what):
    counts = _score_counts(scores_in, scores_out)
    if counts.is_constant:
        _warn_constant(counts, f"{what} is undefined; returning NaN", 4)
        return float("nan")
    return compute(counts)


def ood_auroc(scores_in, scores_out):
    """Area under the ROC curve for detecting OOD examples by their score.

    The probability that a random OOD example scores higher than a random ID
    example, ties counted half. Equals
    `sklearn.metrics.roc_auc_score(labels, scores)` with label 1 for OOD.

    Args:
        scores_in: scores of in-distribution examples, shape `(N,)` or
            `(N, 1)`; higher means more OOD.
        scores_out: scores of out-of-distribution examples, shape `(M,)` or
            `(M, 1)`.

    Returns:
        The AUROC as a Python float in [0, 1] (0.5 is chance); NaN, with a
        `UserWarning`, when all scores are equal.

    Raises:
        ValueError: if either argument is empty, not 1-D (or `(N, 1)`),
            non-numeric, or holds NaN/inf.

    Example:

    >>> ood_auroc([0.1, 0.2, 0.4], [0.3, 0.9])
    0.8333333333333334

    References:
        - Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
          Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    """
    return _metric(scores_in, scores_out, _auroc, "the AUROC")


def ood_aupr_in(scores_in, scores_out):
    """Area under the precision-recall curve with ID as the positive class.

    Average precision of detecting ID examples by their negated score; equals
    `sklearn.metrics.average_precision_score(1 - labels, -scores)` with label
    1 for OOD.

    Args:
        scores_in, scores_out: as in `ood_auroc`.

    Returns:
        AUPR-in as a Python float in [0, 1]; NaN, with a `UserWarning`, when
        all scores are equal.

    Raises:
        ValueError: as in `ood_auroc`.

    Example:

    >>> ood_aupr_in([0.1, 0.2], [0.3, 0.9])
    1.0

    References:
        - Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
          Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    """
    return _metric(scores_in, scores_out, _aupr_in, "AUPR-in")


def ood_aupr_out(scores_in, scores_out):
    """Area under the precision-recall curve with OOD as the positive class.

    Average precision of detecting OOD examples by their score; equals
    `sklearn.metrics.average_precision_score(labels, scores)` with label 1
    for OOD.

    Args:
        scores_in, scores_out: as in `ood_auroc`.

    Returns:
        AUPR-out as a Python float in [0, 1]; NaN, with a `UserWarning`,
        when all scores are equal.

    Raises:
        ValueError: as in `ood_auroc`.

    Example:

    >>> ood_aupr_out([0.1, 0.5], [0.3, 0.9])
    0.8333333333333333

    References:
        - Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
          Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    """
    return _metric(scores_in, scores_out, _aupr_out, "AUPR-out")


def fpr_at_tpr(scores_in, scores_out, tpr=DEFAULT_TPR):
    """Fraction of OOD examples accepted when a fraction `tpr` of ID is kept.

    An example is accepted as ID iff its score is `<= t`, where `t` is the
    smallest score at which at least `tpr` of the ID examples are accepted.
    OOD examples scoring exactly `t` count as accepted (ties are
    pessimistic). This is the FPR of scikit-learn's
    `roc_curve(1 - labels, -scores, drop_intermediate=False)` at its first
    point with TPR `>= tpr`. With `tpr=0.95` it is the usual FPR@95%TPR.

    Args:
        scores_in, scores_out: as in `ood_auroc`.
        tpr: the fraction of ID examples to keep, in (0, 1].

    Returns:
        The false positive rate as a Python float in [0, 1] (lower is
        better); NaN, with a `UserWarning`, when all scores are equal.

    Raises:
        ValueError: as in `ood_auroc`, or if `tpr` is not in (0, 1].

    Example:

    >>> fpr_at_tpr([0.1, 0.2, 0.3, 0.4], [0.35, 0.9], tpr=0.75)
    0.0

    References:
        - Liang et al., "Enhancing The Reliability of Out-of-distribution
          Image Detection in Neural Networks", ICLR 2018.
    """
    tpr = _check_tpr(tpr)
    return _metric(
        scores_in,
        scores_out,
        lambda counts: _fpr_at_tpr(counts, tpr),
        f"the FPR at {tpr:g} TPR",
    )


def detection_error(scores_in, scores_out):
    """Minimum detection error over all thresholds.

    `min_t 0.5 * (1 - TPR_in(t)) + 0.5 * FPR_out(t)`: the error of the best
    threshold when ID and OOD are equally likely. ID is accepted iff its
    score is `<= t`; thresholds range over the distinct scores and the two
    extremes (accept nothing, accept all), which both give 0.5.

    Args:
        scores_in, scores_out: as in `ood_auroc`.

    Returns:
        The detection error as a Python float in [0, 0.5] (lower is better);
        NaN, with a `UserWarning`, when all scores are equal.

    Raises:
        ValueError: as in `ood_auroc`.

    Example:

    >>> round(detection_error([0.1, 0.2, 0.6], [0.3, 0.9]), 4)
    0.1667

    References:
        - Liang et al., "Enhancing The Reliability of Out-of-distribution
          Image Detection in Neural Networks", ICLR 2018.
    """
    return _metric(scores_in, scores_out, _detection_error, "the detection error")


def _roc_curve(counts, drop_intermediate):
    # Thresholds descending; flagged as OOD iff score >= threshold.
    in_flagged = counts.in_ge[::-1]
    out_flagged = counts.out_ge[::-1]
    thresholds = counts.values[::-1]
    if drop_intermediate and thresholds.size > 2:
        # scikit-learn's rule, on the integer counts (exact): keep the ends
        # and every point where the curve bends.
        bends = (np.diff(in_flagged, 2) != 0) | (np.diff(out_flagged, 2) != 0)
        keep = np.flatnonzero(np.r_[True, bends, True])
        in_flagged, out_flagged = in_flagged[keep], out_flagged[keep]
        thresholds = thresholds[keep]
    # The curve starts at (0, 0): nothing flagged above the largest score.
    return (
        np.r_[0.0, in_flagged / counts.num_in],
        np.r_[0.0, out_flagged / counts.num_out],
        np.r_[np.inf, thresholds],
    )


def ood_roc_curve(scores_in, scores_out, *, drop_intermediate=True):
    """ROC curve for detecting OOD examples, with OOD as the positive class.

    Same output as `sklearn.metrics.roc_curve(labels, scores)` with label 1
    for OOD: an example is flagged as OOD iff its score is `>= threshold`.

    Args:
        scores_in, scores_out: as in `ood_auroc`.
        drop_intermediate: whether to drop points that lie on a straight line
            between their neighbours (as scikit-learn does by default); they
            do not change the plotted curve or its area.

    Returns:
        `(fpr, tpr, thresholds)` float64 arrays: the fraction of ID flagged
        as OOD, the fraction of OOD flagged, and the thresholds, descending,
        the first one `inf` (nothing flagged). When all scores are equal the
        curve is the chance diagonal, with a `UserWarning`.

    Raises:
        ValueError: as in `ood_auroc`, or if `drop_intermediate` is not a
            bool.

    Example:

    >>> fpr, tpr, thresholds = ood_roc_curve([0.1, 0.4], [0.3, 0.9])
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    if not isinstance(drop_intermediate, (bool, np.bool_)):
        raise ValueError(
            "`drop_intermediate` must be True or False; received "
            f"{drop_intermediate!r}."
        )
    counts = _score_counts(scores_in, scores_out)
    if counts.is_constant:
        _warn_constant(counts, "the ROC curve is only the chance diagonal")
    return _roc_curve(counts, drop_intermediate)


def fpr_key(tpr):
    """The `evaluate_ood` key for `fpr_at_tpr`: `"fpr95"` for `tpr=0.95`."""
    return f"fpr{int(round(_check_tpr(tpr) * 100))}"


def evaluate_ood(scores_in, scores_out, tpr=DEFAULT_TPR):
    """All OOD detection metrics from one sort of the scores.

    Args:
        scores_in, scores_out: as in `ood_auroc`.
        tpr: the ID acceptance rate for `fpr_at_tpr`, in (0, 1].

    Returns:
        A dict of Python floats with keys `"auroc"`, `"aupr_in"`,
        `"aupr_out"`, `"fpr95"` (for another `tpr`, `f"fpr{round(100 *
        tpr)}"`) and `"detection_error"`, equal to the individual functions.
        All NaN, with one `UserWarning`, when all scores are equal.

    Raises:
        ValueError: as in `fpr_at_tpr`.

    Example:

    >>> results = evaluate_ood([0.1, 0.2, 0.4], [0.3, 0.9])
    >>> sorted(results)
    ['aupr_in', 'aupr_out', 'auroc', 'detection_error', 'fpr95']
    """
    key = fpr_key(tpr)
    tpr = _check_tpr(tpr)
    counts = _score_counts(scores_in, scores_out)
    keys = ("auroc", "aupr_in", "aupr_out", key, "detection_error")
    if counts.is_constant:
        _warn_constant(counts, "every OOD metric is undefined; returning NaN")
        return {name: float("nan") for name in keys}
    values = (
        _auroc(counts),
        _aupr_in(counts),
        _aupr_out(counts),
        _fpr_at_tpr(counts, tpr),
        _detection_error(counts),
    )
    return dict(zip(keys, values))
