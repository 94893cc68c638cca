"""Tests for the L-BFGS solver behind vector and matrix scaling (pure numpy).

The calibration fits are convex but can be badly conditioned: unregularised
matrix scaling on Kull et al.'s DenseNet-40 CIFAR-10 validation logits has a
Hessian whose non-zero eigenvalues span 3e-5 to 17 (condition number 5.5e5),
with a handful of small eigenvalues (barely determined off-diagonal kernel
entries) below a well-conditioned bulk. The quadratics here have the same
shape of spectrum, so they run in milliseconds without the data.
"""

import warnings

import numpy as np
import pytest

from keras_reliability.calibration import lbfgs


def _quadratic(seed, n=60, num_small=6):
    """`0.5 x'Ax - b'x + 1` with `num_small` eigenvalues in [1e-5, 1e-4]
    and the rest in [0.1, 10]."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigenvalues = np.concatenate(
        [np.logspace(-5, -4, num_small), np.logspace(-1, 1, n - num_small)]
    )
    a = (rotation * eigenvalues) @ rotation.T
    b = 1e-3 * rng.standard_normal(n)

    def loss_and_gradient(x):
        return 0.5 * x @ a @ x - b @ x + 1.0, a @ x - b

    return loss_and_gradient, np.linalg.solve(a, b)


# Regression: with 10 curvature pairs L-BFGS crawled on this spectrum (it
# stopped after 2000 iterations with max |gradient| ~1e-5 and a relative
# error ~3e-3, and warned); the unregularised DenseNet-40 matrix-scaling fit
# behaved the same way (2000 iterations, max |gradient| 3.7e-6).
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lbfgs_ill_conditioned_quadratic_converges(seed):
    loss_and_gradient, expected = _quadratic(seed)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x, loss, gradient, iterations = lbfgs.minimize(
            loss_and_gradient, np.zeros(expected.size)
        )
    assert not record, [str(w.message) for w in record]
    assert iterations < 1000  # ~200 measured: far from the 2000 cap
    assert np.abs(x - expected).max() < 1e-5 * np.abs(expected).max()
    # The loss is summed from terms ~1e3, so it resolves ~1e-11.
    assert loss <= loss_and_gradient(expected)[0] + 1e-10
    np.testing.assert_allclose(gradient, loss_and_gradient(x)[1], atol=1e-15)


def test_lbfgs_curvature_pair_test_is_relative():
    rng = np.random.default_rng(0)
    step = rng.standard_normal(20)
    curvature = np.diag(np.logspace(-2, 0, 20))
    gradient = -curvature @ step  # a unit Newton step from here
    for size in (1.0, 1e-4, 1e-8):
        # s'y ~ 1e-16 * |s|^2 at the smallest size: an absolute threshold
        # (1e-12 before) dropped every such pair near the optimum and froze
        # the curvature memory.
        s, g = size * step, size * gradient
        assert lbfgs._curvature_is_reliable(s, curvature @ s, g)
    # No curvature, negative curvature, and a step so short that rounding
    # gave it an ascent slope: all skipped.
    assert not lbfgs._curvature_is_reliable(step, np.zeros(20), gradient)
    assert not lbfgs._curvature_is_reliable(step, -curvature @ step, gradient)
    assert not lbfgs._curvature_is_reliable(step, np.zeros(20), -gradient)


def test_lbfgs_scale_maps_back_to_the_original_parameters():
    # A penalty-like diagonal from 1 to 1e9, preconditioned as the
    # calibrators do (search over x * sqrt(1 + c)).
    curvature = np.logspace(0, 9, 12)
    b = np.linspace(-1.0, 1.0, 12)

    def loss_and_gradient(x):
        return 0.5 * np.sum(curvature * x**2) - b @ x, curvature * x - b

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x, _, gradient, iterations = lbfgs.minimize(
            loss_and_gradient,
            np.ones(12),
            scale=1.0 / np.sqrt(1.0 + curvature),
        )
    assert not record
    assert iterations < 50
    # The tolerance applies to the gradient over the scaled parameters.
    scaled_gradient = gradient / np.sqrt(1.0 + curvature)
    assert np.abs(scaled_gradient).max() < 1e-8
    np.testing.assert_allclose(gradient, curvature * x - b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x, b / curvature, rtol=1e-5)
