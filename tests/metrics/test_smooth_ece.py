"""Tests for `keras_reliability.metrics.smooth_ece`."""

import math

import numpy as np
import pytest

from keras_reliability.metrics.smooth_ece import smooth_calibration_error

# Tolerance against relplot. Both implementations use the same discretisation
# (grid sizes, linear binning, cut-off reflected kernel, evaluation points and
# the 1e-4 density floor), so the only differences are floating-point: we
# convolve with an FFT where relplot uses np.convolve, and sum in a different
# order. Measured differences are <= 2e-16; 1e-12 leaves room for other
# FFT/BLAS builds while still catching any change in the discretisation (for
# example, centring the kernel exactly on the grid nodes when the grid size is
# even -- relplot's taps are then half a cell off -- moves the value by ~4e-6
# at bandwidth 0.003).
REFERENCE_ATOL = 1e-12
SEARCH_RESOLUTION = 2.0**-10  # width of the final bisection bracket


def _dataset(seed):
    """A few differently shaped (scores, outcomes) problems, all seeded."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 4000))
    kind = seed % 5
    if kind == 0:  # calibrated, uniform scores
        scores = rng.uniform(size=n)
        outcomes = rng.uniform(size=n) < scores
    elif kind == 1:  # overconfident, scores piled up near 1
        scores = rng.beta(5.0, 1.0, size=n)
        outcomes = rng.uniform(size=n) < scores**2
    elif kind == 2:  # uninformative outcomes
        scores = rng.uniform(size=n)
        outcomes = rng.uniform(size=n) < 0.5
    elif kind == 3:  # scores on a coarse lattice, including both ends
        scores = np.round(rng.uniform(size=n), 2)
        scores[:3] = [0.0, 1.0, 0.5]
        outcomes = rng.uniform(size=n) < scores
    else:  # underconfident, scores squeezed towards 1/2
        scores = 0.5 + 0.2 * (rng.uniform(size=n) - 0.5)
        outcomes = rng.uniform(size=n) < 2.5 * scores - 0.75
    return scores, outcomes.astype(np.float64)


# --------------------------------------------------------------------------
# Agreement with the reference implementation.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_smooth_matches_relplot_automatic_bandwidth(seed):
    relplot = pytest.importorskip("relplot")
    scores, outcomes = _dataset(seed)
    expected, expected_sigma = relplot.smECE(
        scores, outcomes, return_width=True
    )
    value, sigma = smooth_calibration_error(
        scores, outcomes, return_bandwidth=True
    )
    assert abs(value - float(expected)) <= REFERENCE_ATOL
    # The bandwidth is a dyadic number k / 1024 picked by the same sequence
    # of comparisons, so it must match exactly.
    assert sigma == expected_sigma


# 0.3, 0.05: grid of 1001 nodes; 0.0073: 1371 nodes; 0.003: 3334 nodes (even,
# where relplot's kernel taps are offset by half a cell); 0.0015: 6667 nodes;
# 0.7, 1.0: the kernel is cut off at +-1/2, far inside its bulk.
@pytest.mark.parametrize("sigma", [1.0, 0.7, 0.3, 0.05, 0.0073, 0.003, 0.0015])
@pytest.mark.parametrize("seed", [0, 1, 3, 4])
def test_smooth_matches_relplot_fixed_bandwidth(seed, sigma):
    relplot = pytest.importorskip("relplot")
    scores, outcomes = _dataset(seed)
    expected = float(relplot.smECE_sigma(scores, outcomes, sigma))
    value = smooth_calibration_error(scores, outcomes, bandwidth=sigma)
    assert abs(value - expected) <= REFERENCE_ATOL


@pytest.mark.parametrize(
    "scores, outcomes",
    [
        ([0.3], [1.0]),
        ([0.0, 1.0], [0.0, 1.0]),
        ([1.0] * 5, [0.0, 1.0, 1.0, 1.0, 1.0]),
        ([0.0] * 3, [0.0, 0.0, 1.0]),
        ([0.25, 0.5, 0.75], [0.0, 1.0, 1.0]),  # exactly on grid nodes
    ],
)
def test_smooth_matches_relplot_edge_cases(scores, outcomes):
    relplot = pytest.importorskip("relplot")
    expected, expected_sigma = relplot.smECE(
        np.array(scores), np.array(outcomes), return_width=True
    )
    value, sigma = smooth_calibration_error(
        scores, outcomes, return_bandwidth=True
    )
    assert abs(value - float(expected)) <= REFERENCE_ATOL
    assert sigma == expected_sigma


# --------------------------------------------------------------------------
# Behaviour that does not need the reference.
# --------------------------------------------------------------------------


def test_smooth_automatic_bandwidth_is_fixed_point_bracket():
    scores, outcomes = _dataset(1)
    value, sigma = smooth_calibration_error(
        scores, outcomes, return_bandwidth=True
    )
    # sigma is the upper end of a bracket of width 2^-10 around the fixed
    # point: smECE(sigma) <= sigma, and one step down smECE exceeds sigma.
    assert value <= sigma
    below = sigma - SEARCH_RESOLUTION
    assert below > 1e-3
    assert smooth_calibration_error(scores, outcomes, bandwidth=below) > below
    assert value == smooth_calibration_error(scores, outcomes, bandwidth=sigma)


def test_smooth_perfectly_calibrated_is_small():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=50_000)
    outcomes = rng.uniform(size=50_000) < scores
    value = smooth_calibration_error(scores, outcomes)
    # Calibrated data still has sampling noise: at bandwidth sigma the
    # smoothed residual averages ~N * sigma examples, so its mean absolute
    # value is ~c / sqrt(N * sigma), and the fixed point sigma* = smECE then
    # scales like N^(-1/3). For N = 50k that floor is ~0.008 (over 40 seeds:
    # mean 0.0080, sd 0.0006, max 0.0097), under the 0.01 bound.
    assert 0.0 < value < 0.01
    # A miscalibrated predictor on the same scores is an order of magnitude
    # worse, so the bound above is not vacuous.
    miscalibrated = rng.uniform(size=50_000) < scores**2
    assert smooth_calibration_error(scores, miscalibrated) > 0.1


def test_smooth_large_input_uses_bounded_memory():
    # An N x N kernel matrix would need 8 TB here; the grid needs ~10^3 nodes.
    rng = np.random.default_rng(1)
    scores = rng.uniform(size=1_000_000)
    outcomes = rng.uniform(size=1_000_000) < scores
    value, sigma = smooth_calibration_error(
        scores, outcomes, return_bandwidth=True
    )
    # The noise floor keeps shrinking like N^(-1/3): ~0.0026 at N = 10^6.
    assert 0.0 < value < 0.004
    assert value <= sigma


def test_smooth_constant_overconfident_predictor():
    # Every score is 0.9 and exactly 60% of outcomes are 1. All examples sit at
    # the same point, so for any bandwidth the smoothed residual is the mean
    # residual times the smoothed mass, R(t) = 0.3 * D(t), and
    # smECE = 0.3 * sum D / (sum D + n_eval * 1e-4): 0.3 up to the density
    # floor (relative size < 1e-6 here). Since smECE_sigma ~ 0.3 for every
    # sigma, the fixed point is 0.3, found to within the 2^-10 bracket.
    scores = np.full(1000, 0.9)
    outcomes = np.arange(1000) < 600
    value, sigma = smooth_calibration_error(
        scores, outcomes, return_bandwidth=True
    )
    assert value <= 0.3 + 1e-12
    assert 0.3 - value < 1e-6
    assert 0.3 <= sigma < 0.3 + SEARCH_RESOLUTION
    for bandwidth in [0.002, 0.05, 1.0]:
        fixed = smooth_calibration_error(scores, outcomes, bandwidth=bandwidth)
        assert fixed == pytest.approx(0.3, abs=1e-6)


def test_smooth_constant_predictor_with_sampled_outcomes():
    # Same argument with Bernoulli(0.6) outcomes: the value is the gap between
    # the constant score and the observed accuracy.
    rng = np.random.default_rng(2)
    outcomes = rng.uniform(size=20_000) < 0.6
    value = smooth_calibration_error(np.full(20_000, 0.9), outcomes)
    assert value == pytest.approx(0.9 - outcomes.mean(), abs=1e-6)
    assert value == pytest.approx(0.3, abs=0.02)


def test_smooth_returns_python_floats_and_accepts_lists():
    value = smooth_calibration_error([0.2, 0.8, 0.6], [0, 1, 1])
    assert type(value) is float
    pair = smooth_calibration_error(
        [0.2, 0.8, 0.6], [0, 1, 1], bandwidth=0.1, return_bandwidth=True
    )
    assert isinstance(pair, tuple) and len(pair) == 2
    assert type(pair[0]) is float and pair[1] == 0.1
    assert 0.0 <= value <= 1.0


def test_smooth_outcome_dtypes_are_equivalent():
    scores, outcomes = _dataset(2)
    as_float = smooth_calibration_error(scores, outcomes)
    assert smooth_calibration_error(scores, outcomes.astype(bool)) == as_float
    assert smooth_calibration_error(scores, outcomes.astype(int)) == as_float
    assert (
        smooth_calibration_error(scores.astype(np.float32), outcomes)
        == pytest.approx(as_float, abs=1e-6)
    )


def test_smooth_bandwidth_changes_value():
    scores, outcomes = _dataset(1)
    narrow = smooth_calibration_error(scores, outcomes, bandwidth=0.01)
    wide = smooth_calibration_error(scores, outcomes, bandwidth=0.5)
    assert narrow != wide


# --------------------------------------------------------------------------
# Sample weights.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bandwidth", [None, 0.003, 0.05])
def test_smooth_integer_weights_equal_repetition(bandwidth):
    rng = np.random.default_rng(5)
    scores, outcomes = _dataset(4)
    weights = rng.integers(0, 4, size=scores.shape)
    weights[0] = 3
    weighted = smooth_calibration_error(
        scores,
        outcomes,
        bandwidth=bandwidth,
        sample_weight=weights,
        return_bandwidth=True,
    )
    repeated = smooth_calibration_error(
        np.repeat(scores, weights),
        np.repeat(outcomes, weights),
        bandwidth=bandwidth,
        return_bandwidth=True,
    )
    assert weighted[0] == pytest.approx(repeated[0], rel=1e-12, abs=1e-15)
    assert weighted[1] == repeated[1]


def test_smooth_unit_weights_equal_unweighted():
    scores, outcomes = _dataset(3)
    assert smooth_calibration_error(
        scores, outcomes, sample_weight=np.ones_like(scores)
    ) == pytest.approx(smooth_calibration_error(scores, outcomes), abs=1e-15)


def test_smooth_zero_weights_drop_examples():
    scores, outcomes = _dataset(0)
    weights = np.ones_like(scores)
    weights[::3] = 0.0
    kept = weights > 0
    assert smooth_calibration_error(
        scores, outcomes, sample_weight=weights
    ) == pytest.approx(
        smooth_calibration_error(scores[kept], outcomes[kept]), abs=1e-15
    )


def test_smooth_fractional_weights_matter():
    scores, outcomes = _dataset(1)
    rng = np.random.default_rng(6)
    weights = rng.uniform(0.1, 2.0, size=scores.shape)
    weighted = smooth_calibration_error(
        scores, outcomes, sample_weight=weights, bandwidth=0.05
    )
    unweighted = smooth_calibration_error(scores, outcomes, bandwidth=0.05)
    assert abs(weighted - unweighted) > 1e-4
    # Weights are example counts: doubling every weight is duplicating the
    # data, which only moves the tiny 1e-4 density floor.
    doubled = smooth_calibration_error(
        scores, outcomes, sample_weight=2 * weights, bandwidth=0.05
    )
    assert doubled == pytest.approx(weighted, abs=1e-6)


# --------------------------------------------------------------------------
# Input validation.
# --------------------------------------------------------------------------

GOOD_SCORES = [0.2, 0.7, 0.9]
GOOD_OUTCOMES = [0, 1, 1]


@pytest.mark.parametrize(
    "scores, outcomes, pattern",
    [
        ([0.2, -0.2, 0.5], GOOD_OUTCOMES, r"`scores` must lie in \[0, 1\]; received min=-0\.2"),
        ([0.2, 1.5, 0.5], GOOD_OUTCOMES, r"`scores` must lie in \[0, 1\].*max=1\.5"),
        ([0.2, math.nan, 0.5], GOOD_OUTCOMES, r"`scores` must be finite; received nan"),
        ([0.2, math.inf, 0.5], GOOD_OUTCOMES, r"`scores` must be finite; received inf"),
        (GOOD_SCORES, [0, 0.5, 1], r"`outcomes` must contain only 0 and 1.*received 0\.5 at index 1"),
        (GOOD_SCORES, [0, 1, 2], r"`outcomes` must contain only 0 and 1.*received 2\.0 at index 2"),
        (GOOD_SCORES, [0, 1, math.nan], r"`outcomes` must contain only 0 and 1.*received nan"),
        (GOOD_SCORES, [0, 1], r"`scores` and `outcomes` must have the same length.*\(3,\) and \(2,\)"),
        ([], [], r"`scores` is empty; received shape \(0,\)"),
        ([[0.2], [0.7]], [[0], [1]], r"`scores` must be 1-D.*\(2, 1\)"),
        (0.5, 1, r"`scores` must be 1-D.*received shape \(\)"),
        (None, GOOD_OUTCOMES, r"`scores` is required; received None"),
        (["a", "b", "c"], GOOD_OUTCOMES, r"`scores` must be real numbers; received dtype <U1"),
        (GOOD_SCORES, [1j, 0, 1], r"`outcomes` must be real numbers; received dtype complex128"),
    ],
)
def test_smooth_rejects_bad_scores_and_outcomes(scores, outcomes, pattern):
    with pytest.raises(ValueError, match=pattern):
        smooth_calibration_error(scores, outcomes)


@pytest.mark.parametrize(
    "bandwidth, pattern",
    [
        (0.0, r"`bandwidth` must be a finite number > 0; received 0\.0"),
        (-0.1, r"`bandwidth` must be a finite number > 0; received -0\.1"),
        (math.nan, r"`bandwidth` must be a finite number > 0; received nan"),
        (math.inf, r"`bandwidth` must be a finite number > 0; received inf"),
        (1e-7, r"`bandwidth` must be >= 1e-05.*received 1e-07"),
        (True, r"`bandwidth` must be None or a positive number; received True"),
        ("0.1", r"`bandwidth` must be None or a positive number; received '0\.1'"),
    ],
)
def test_smooth_rejects_bad_bandwidth(bandwidth, pattern):
    with pytest.raises(ValueError, match=pattern):
        smooth_calibration_error(GOOD_SCORES, GOOD_OUTCOMES, bandwidth=bandwidth)


def test_smooth_accepts_numpy_scalar_bandwidth():
    value = smooth_calibration_error(
        GOOD_SCORES, GOOD_OUTCOMES, bandwidth=np.float32(0.25)
    )
    assert value == pytest.approx(
        smooth_calibration_error(
            GOOD_SCORES, GOOD_OUTCOMES, bandwidth=float(np.float32(0.25))
        )
    )


@pytest.mark.parametrize(
    "weights, pattern",
    [
        ([1.0, -1.0, 2.0], r"`sample_weight` must be non-negative; received min=-1\.0"),
        ([0.0, 0.0, 0.0], r"`sample_weight` must have a positive sum; received sum=0\.0"),
        ([1.0, math.nan, 1.0], r"`sample_weight` must be finite; received nan"),
        ([1.0, 2.0], r"`sample_weight` must have the same length as `scores`.*\(2,\) and \(3,\)"),
        ([[1.0, 1.0, 1.0]], r"`sample_weight` must be 1-D.*\(1, 3\)"),
    ],
)
def test_smooth_rejects_bad_sample_weight(weights, pattern):
    with pytest.raises(ValueError, match=pattern):
        smooth_calibration_error(
            GOOD_SCORES, GOOD_OUTCOMES, sample_weight=weights
        )
