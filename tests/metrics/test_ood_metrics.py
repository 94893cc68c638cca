"""OOD detection metrics: exactness against scikit-learn, conventions, errors."""

import math
import re
import time
import warnings

import keras
import numpy as np
import pytest

from keras_reliability.metrics import detection_error
from keras_reliability.metrics import evaluate_ood
from keras_reliability.metrics import fpr_at_tpr
from keras_reliability.metrics import ood_aupr_in
from keras_reliability.metrics import ood_aupr_out
from keras_reliability.metrics import ood_auroc
from keras_reliability.metrics import ood_roc_curve
from keras_reliability.metrics import ood as ood_module

sklearn_metrics = pytest.importorskip("sklearn.metrics")

SEEDS = range(8)
SCALAR_METRICS = (ood_auroc, ood_aupr_in, ood_aupr_out, fpr_at_tpr, detection_error)


def _tied_scores(seed):
    """Integer-rounded scores: many ties, within and across the two sets."""
    rng = np.random.default_rng(seed)
    scores_in = np.round(rng.normal(0.0, 2.0, size=int(rng.integers(50, 400))))
    scores_out = np.round(rng.normal(1.5, 2.0, size=int(rng.integers(50, 400))))
    return scores_in, scores_out


def _labels_and_scores(scores_in, scores_out):
    labels = np.r_[np.zeros(len(scores_in)), np.ones(len(scores_out))]
    return labels, np.r_[scores_in, scores_out]


def _sklearn_fpr_at_tpr(labels, scores, tpr):
    # ID positive, score negated; the first ROC point that keeps >= tpr of ID.
    fpr, tpr_curve, _ = sklearn_metrics.roc_curve(
        1 - labels, -scores, drop_intermediate=False
    )
    return fpr[np.argmax(tpr_curve >= tpr)]


def _escaped(value):
    return re.escape(value if isinstance(value, str) else repr(value))


# ----------------------------------------------------------------------------
# Equality with scikit-learn, ties included
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_scores_have_ties_within_and_across_sets(seed):
    scores_in, scores_out = _tied_scores(seed)
    assert np.unique(scores_in).size < scores_in.size / 4
    assert np.intersect1d(scores_in, scores_out).size >= 3


@pytest.mark.parametrize("seed", SEEDS)
def test_auroc_equals_sklearn(seed):
    scores_in, scores_out = _tied_scores(seed)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    expected = sklearn_metrics.roc_auc_score(labels, scores)
    assert ood_auroc(scores_in, scores_out) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_aupr_in_equals_sklearn(seed):
    scores_in, scores_out = _tied_scores(seed)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    expected = sklearn_metrics.average_precision_score(1 - labels, -scores)
    assert ood_aupr_in(scores_in, scores_out) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_aupr_out_equals_sklearn(seed):
    scores_in, scores_out = _tied_scores(seed)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    expected = sklearn_metrics.average_precision_score(labels, scores)
    assert ood_aupr_out(scores_in, scores_out) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("tpr", [0.95, 0.8, 0.5, 1.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_fpr_at_tpr_equals_sklearn_roc_curve(seed, tpr):
    scores_in, scores_out = _tied_scores(seed)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    expected = _sklearn_fpr_at_tpr(labels, scores, tpr)
    assert fpr_at_tpr(scores_in, scores_out, tpr=tpr) == expected


@pytest.mark.parametrize("drop_intermediate", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
def test_roc_curve_equals_sklearn(seed, drop_intermediate):
    scores_in, scores_out = _tied_scores(seed)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    ours = ood_roc_curve(scores_in, scores_out, drop_intermediate=drop_intermediate)
    theirs = sklearn_metrics.roc_curve(
        labels, scores, drop_intermediate=drop_intermediate
    )
    for name, mine, reference in zip(("fpr", "tpr", "thresholds"), ours, theirs):
        np.testing.assert_array_equal(mine, reference, err_msg=name)


@pytest.mark.parametrize("seed", SEEDS)
def test_detection_error_equals_minimum_over_sklearn_roc(seed):
    scores_in, scores_out = _tied_scores(seed)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    # OOD positive: 0.5 * (OOD missed) + 0.5 * (ID flagged), at every threshold.
    fpr, tpr, _ = sklearn_metrics.roc_curve(labels, scores, drop_intermediate=False)
    expected = np.min(0.5 * (1 - tpr) + 0.5 * fpr)
    assert detection_error(scores_in, scores_out) == pytest.approx(expected, abs=1e-15)


def test_continuous_scores_equal_sklearn():
    rng = np.random.default_rng(123)
    scores_in = rng.normal(0.0, 1.0, 20_000)
    scores_out = rng.normal(0.7, 1.3, 7_000)
    labels, scores = _labels_and_scores(scores_in, scores_out)
    results = evaluate_ood(scores_in, scores_out)
    assert results["auroc"] == pytest.approx(
        sklearn_metrics.roc_auc_score(labels, scores), rel=1e-12
    )
    assert results["aupr_in"] == pytest.approx(
        sklearn_metrics.average_precision_score(1 - labels, -scores), rel=1e-12
    )
    assert results["aupr_out"] == pytest.approx(
        sklearn_metrics.average_precision_score(labels, scores), rel=1e-12
    )
    assert results["fpr95"] == _sklearn_fpr_at_tpr(labels, scores, 0.95)


# ----------------------------------------------------------------------------
# Conventions on hand-checked examples
# ----------------------------------------------------------------------------


def test_perfectly_separated_scores():
    scores_in, scores_out = np.arange(100.0), np.arange(100.0, 150.0)
    assert ood_auroc(scores_in, scores_out) == 1.0
    assert ood_aupr_in(scores_in, scores_out) == 1.0
    assert ood_aupr_out(scores_in, scores_out) == 1.0
    assert fpr_at_tpr(scores_in, scores_out) == 0.0
    assert detection_error(scores_in, scores_out) == 0.0


def test_swapped_scores():
    scores_in, scores_out = np.arange(100.0, 150.0), np.arange(100.0)
    assert ood_auroc(scores_in, scores_out) == 0.0
    assert fpr_at_tpr(scores_in, scores_out) == 1.0
    # The best threshold is an extreme (accept all or nothing): chance.
    assert detection_error(scores_in, scores_out) == 0.5


def test_higher_score_means_more_ood():
    assert ood_auroc([0.1, 0.2], [0.8, 0.9]) == 1.0
    assert ood_auroc([0.8, 0.9], [0.1, 0.2]) == 0.0


def test_auroc_counts_ties_half():
    # Pairs (in, out): (1, 1) tie -> 1/2, (1, 2) -> 1.
    assert ood_auroc([1.0], [1.0, 2.0]) == 0.75
    # Pairs: (3, 3) tie -> 1/2, (4, 3) -> 0.
    assert ood_auroc([3.0, 4.0], [3.0]) == 0.25


def test_detection_error_hand_computed():
    # Threshold t, ID accepted iff score <= t:
    #   t=0.1: 0.5 * 2/3 + 0 = 1/3;  t=0.2: 0.5 * 1/3 + 0 = 1/6
    #   t=0.3: 0.5 * 1/3 + 0.5 * 1/2 = 5/12;  t=0.6: 0 + 1/4;  t=0.9: 1/2
    assert detection_error([0.1, 0.2, 0.6], [0.3, 0.9]) == pytest.approx(1 / 6)


def test_detection_error_hand_computed_with_ties():
    # t=0: 0.5 * 2/3 = 1/3;  t=1: 0 + 0.5 * 1/2 = 1/4;  t=2: 1/2.
    assert detection_error([0.0, 1.0, 1.0], [1.0, 2.0]) == pytest.approx(0.25)


def test_fpr_at_tpr_threshold_and_pessimistic_ties():
    scores_in, scores_out = [1.0, 2.0, 3.0, 4.0], [4.0, 4.0, 5.0]
    # 3 of 4 ID kept at t=3: no OOD at or below 3.
    assert fpr_at_tpr(scores_in, scores_out, tpr=0.75) == 0.0
    # Just above 3/4 needs t=4, and both OOD scores equal to 4 are accepted.
    assert fpr_at_tpr(scores_in, scores_out, tpr=0.76) == pytest.approx(2 / 3)
    assert fpr_at_tpr(scores_in, scores_out, tpr=1.0) == pytest.approx(2 / 3)


def test_aupr_hand_computed():
    # OOD positive, descending: 0.9 (OOD, P=1), 0.5 (ID), 0.3 (OOD, P=2/3).
    assert ood_aupr_out([0.1, 0.5], [0.3, 0.9]) == pytest.approx(0.5 + 1 / 3)
    # ID positive, ascending: 0.1 (ID, P=1), 0.3 (OOD), 0.5 (ID, P=2/3).
    assert ood_aupr_in([0.1, 0.5], [0.3, 0.9]) == pytest.approx(0.5 + 1 / 3)


def test_roc_curve_hand_computed():
    fpr, tpr, thresholds = ood_roc_curve([0.1, 0.4], [0.3, 0.9])
    np.testing.assert_array_equal(fpr, [0.0, 0.0, 0.5, 0.5, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.9, 0.4, 0.3, 0.1])


def test_sets_constant_but_different_are_not_degenerate():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ood_auroc([0.0] * 5, [1.0] * 3) == 1.0
        assert detection_error([0.0] * 5, [1.0] * 3) == 0.0


# ----------------------------------------------------------------------------
# Degenerate input: every score equal
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", SCALAR_METRICS, ids=lambda f: f.__name__)
def test_constant_scores_give_nan_and_warn(metric):
    with pytest.warns(UserWarning, match="constant"):
        value = metric([0.5, 0.5, 0.5], [0.5, 0.5])
    assert isinstance(value, float) and math.isnan(value)


def test_constant_scores_evaluate_ood_all_nan_one_warning():
    with pytest.warns(UserWarning, match="constant") as record:
        results = evaluate_ood([2.0, 2.0], [2.0])
    assert len(record) == 1
    assert set(results) == {"auroc", "aupr_in", "aupr_out", "fpr95", "detection_error"}
    assert all(math.isnan(value) for value in results.values())


def test_constant_scores_roc_curve_is_diagonal_with_warning():
    with pytest.warns(UserWarning, match="constant"):
        fpr, tpr, thresholds = ood_roc_curve([1.0, 1.0], [1.0])
    np.testing.assert_array_equal(fpr, [0.0, 1.0])
    np.testing.assert_array_equal(tpr, [0.0, 1.0])
    np.testing.assert_array_equal(thresholds, [np.inf, 1.0])


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", SCALAR_METRICS, ids=lambda f: f.__name__)
def test_empty_scores_in_raises(metric):
    with pytest.raises(ValueError, match=r"`scores_in` is empty"):
        metric([], [1.0, 2.0])


@pytest.mark.parametrize("metric", SCALAR_METRICS, ids=lambda f: f.__name__)
def test_empty_scores_out_raises(metric):
    with pytest.raises(ValueError, match=r"`scores_out` is empty"):
        metric(np.array([1.0, 2.0]), np.zeros((0,)))


@pytest.mark.parametrize("shape", [(3, 2), (2, 2, 1), ()])
def test_wrong_shape_raises_with_shape(shape):
    bad = np.ones(shape)
    with pytest.raises(ValueError, match=r"`scores_out`.*" + _escaped(str(shape))):
        ood_auroc([1.0, 2.0], bad)
    with pytest.raises(ValueError, match=r"`scores_in`.*" + _escaped(str(shape))):
        evaluate_ood(bad, [1.0, 2.0])


def test_column_vectors_are_accepted():
    scores_in, scores_out = _tied_scores(0)
    flat = evaluate_ood(scores_in, scores_out)
    column = evaluate_ood(scores_in[:, None], scores_out[:, None])
    assert column == flat


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(bad):
    with pytest.raises(ValueError, match=r"`scores_in` must be finite"):
        ood_auroc([0.0, bad, 1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"`scores_out` must be finite"):
        fpr_at_tpr([0.0, 1.0], [1.0, bad])


def test_non_numeric_scores_raise():
    with pytest.raises(ValueError, match=r"`scores_in`"):
        ood_auroc(["a", "b"], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"`scores_out` is required"):
        ood_auroc([1.0, 2.0], None)


@pytest.mark.parametrize("tpr", [0.0, -0.1, 1.5, float("nan"), True, "0.95"])
def test_invalid_tpr_raises(tpr):
    with pytest.raises(ValueError, match=r"`tpr`.*" + _escaped(repr(tpr))):
        fpr_at_tpr([0.0, 1.0], [1.0, 2.0], tpr=tpr)
    with pytest.raises(ValueError, match=r"`tpr`"):
        evaluate_ood([0.0, 1.0], [1.0, 2.0], tpr=tpr)


# ----------------------------------------------------------------------------
# evaluate_ood, inputs, speed
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_evaluate_ood_equals_individual_functions(seed):
    scores_in, scores_out = _tied_scores(seed)
    results = evaluate_ood(scores_in, scores_out)
    assert list(results) == ["auroc", "aupr_in", "aupr_out", "fpr95", "detection_error"]
    assert all(type(value) is float for value in results.values())
    assert results["auroc"] == ood_auroc(scores_in, scores_out)
    assert results["aupr_in"] == ood_aupr_in(scores_in, scores_out)
    assert results["aupr_out"] == ood_aupr_out(scores_in, scores_out)
    assert results["fpr95"] == fpr_at_tpr(scores_in, scores_out, tpr=0.95)
    assert results["detection_error"] == detection_error(scores_in, scores_out)


def test_evaluate_ood_names_fpr_key_after_tpr():
    scores_in, scores_out = _tied_scores(1)
    results = evaluate_ood(scores_in, scores_out, tpr=0.8)
    assert "fpr95" not in results
    assert results["fpr80"] == fpr_at_tpr(scores_in, scores_out, tpr=0.8)


def test_evaluate_ood_counts_scores_once(monkeypatch):
    calls = []
    original = ood_module._score_counts

    def counting(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(ood_module, "_score_counts", counting)
    evaluate_ood(*_tied_scores(2))
    assert len(calls) == 1


def test_lists_are_accepted():
    assert ood_auroc([1, 2, 3], [2, 3, 4]) == pytest.approx(
        sklearn_metrics.roc_auc_score([0, 0, 0, 1, 1, 1], [1, 2, 3, 2, 3, 4])
    )


def test_backend_tensors_are_accepted():
    scores_in, scores_out = _tied_scores(3)
    expected = evaluate_ood(scores_in.astype("float32"), scores_out.astype("float32"))
    tensor_in = keras.ops.convert_to_tensor(scores_in, dtype="float32")
    tensor_out = keras.ops.convert_to_tensor(scores_out[:, None], dtype="float32")
    assert keras.ops.is_tensor(tensor_in)
    assert evaluate_ood(tensor_in, tensor_out) == expected
    fpr, tpr, _ = ood_roc_curve(tensor_in, tensor_out)
    reference = ood_roc_curve(scores_in, scores_out)
    np.testing.assert_array_equal(fpr, reference[0])
    np.testing.assert_array_equal(tpr, reference[1])


def test_two_million_scores_are_fast():
    rng = np.random.default_rng(0)
    scores_in = rng.normal(0.0, 1.0, 1_000_000)
    scores_out = rng.normal(1.0, 1.0, 1_000_000)
    start = time.perf_counter()
    results = evaluate_ood(scores_in, scores_out)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, elapsed
    # Two unit normals one apart: AUROC = Phi(1 / sqrt(2)) = 0.7602.
    assert results["auroc"] == pytest.approx(0.76025, abs=2e-3)
