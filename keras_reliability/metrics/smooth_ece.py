"""Smooth expected calibration error (smECE) with automatic bandwidth.

Implements the estimator of Blasiok & Nakkiran (2023). The residuals
`scores - outcomes` are smoothed over the score axis with a Gaussian kernel
reflected at 0 and 1, and smECE is the mass of the absolute smoothed residual.
The discretisation follows the reference implementation (`relplot.smECE` /
`relplot.smECE_sigma`, version 1.0.3) so that the numbers agree with it to
floating-point rounding:

1. Each example is split linearly between the two nearest nodes of a uniform
   grid on [0, 1] with `m = max(2000, round(20 / sigma)) // 2 + 1` nodes,
   depositing `w * (score - outcome)` into one array and `w` into another.
2. Both arrays are extended by mirroring at the end nodes (the end node itself
   is not repeated) and convolved with `m` samples of the Gaussian density
   `phi_sigma(x) = exp(-x^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)` taken at
   `x = j / (m - 1) - 1/2`, `j = 0..m-1`, the tap `j = m // 2` sitting on the
   output node. The kernel is therefore cut off at |x| <= 1/2. When `m` is
   even the taps are offset by half a grid cell from the nodes; this is a
   property of the reference discretisation and is kept on purpose.
3. The smoothed residual `R` and smoothed mass `D` are linearly interpolated to
   `n = max(200, round(10 / sigma))` equally spaced points `t_k` of [0, 1], and

       smECE_sigma = sum_k |R(t_k)| / sum_k (D(t_k) + 1e-4).

   The `1e-4` floor is in units of one example of weight 1.
4. The automatic bandwidth is the fixed point sigma* = smECE_{sigma*}, located
   by bisection on [0, 1]: sigma is "too small" when sigma < 1e-3 or
   sigma < smECE_sigma. If sigma = 1 is already too small it is used;
   otherwise 10 halvings are made and the upper end of the final bracket
   (width 2^-10) is returned, so sigma* >= smECE_{sigma*}.

The convolution is done with an FFT, so memory and time are O(N + m log m)
rather than O(N^2).
"""

import math
import numbers

import numpy as np

# Discretisation constants of the reference implementation.
_MIN_GRID_POINTS = 2000  # kernel grid: max(2000, round(20 / sigma)) // 2 + 1
_GRID_POINTS_PER_INVERSE_BANDWIDTH = 20
_MIN_EVAL_POINTS = 200  # evaluation grid: max(200, round(10 / sigma))
_EVAL_POINTS_PER_INVERSE_BANDWIDTH = 10
_DENSITY_FLOOR = 1e-4  # added to the smoothed mass at every evaluation point
# Bandwidth search: bisection on [0, 1] with 10 halvings; bandwidths under
# 1e-3 count as "too small" without being evaluated.
_SEARCH_HALVINGS = 10
_SEARCH_FLOOR = 1e-3
# The grids have ~20 / bandwidth nodes; below this the arrays (and the FFT)
# stop being a reasonable size for a resolution no probability needs.
_MIN_BANDWIDTH = 1e-5


def smooth_calibration_error(
    scores,
    outcomes,
    *,
    bandwidth=None,
    sample_weight=None,
    return_bandwidth=False,
):
    """Smooth expected calibration error (smECE) of binary predictions.

    Kernel-smooths the residuals `scores - outcomes` along the score axis with
    a Gaussian kernel of width `bandwidth`, reflected at 0 and 1, and returns
    the weighted mean absolute smoothed residual. Unlike binned ECE it has no
    bin edges to choose, is continuous in the predictions, and with the
    automatic bandwidth (the fixed point `bandwidth == smECE`) it is a
    consistent calibration measure in the sense of Blasiok & Nakkiran (2023).
    Values agree with `relplot.smECE` (automatic bandwidth) and
    `relplot.smECE_sigma` (fixed bandwidth) to floating-point rounding.

    For top-label calibration of a classifier pass the top-label confidence as
    `scores` and whether the top label was correct as `outcomes`.

    Args:
        scores: array-like `(N,)` of predicted probabilities in [0, 1].
        outcomes: array-like `(N,)` of binary outcomes, bool or numeric 0/1.
        bandwidth: None (default) to pick the bandwidth automatically as the
            fixed point `sigma = smECE_sigma`, found by bisection on [0, 1]
            to within 2^-10 (never below about 0.002); or a float
            `>= 1e-5` to evaluate smECE at that kernel width.
        sample_weight: optional array-like `(N,)` of non-negative weights with
            a positive sum. Weights act as example counts: an integer weight
            `k` gives the same result as repeating the example `k` times, and
            all-ones weights give the unweighted value.
        return_bandwidth: if True, also return the bandwidth used.

    Returns:
        The smooth ECE as a Python float in [0, 1], or a tuple
        `(smooth_ece, bandwidth)` of floats if `return_bandwidth=True`.

    Raises:
        ValueError: if `scores`, `outcomes` or `sample_weight` are not 1-D,
            are empty, or differ in length; if `scores` is non-finite or
            outside [0, 1]; if `outcomes` holds values other than 0 and 1; if
            `sample_weight` is non-finite, negative or sums to 0; or if
            `bandwidth` is not a finite number `>= 1e-5`.

    Example:

    >>> import numpy as np
    >>> scores = np.full(1000, 0.9)
    >>> outcomes = np.arange(1000) < 600  # 60% correct
    >>> value, sigma = smooth_calibration_error(
    ...     scores, outcomes, return_bandwidth=True)
    >>> round(value, 6), round(sigma, 3)
    (0.3, 0.301)
    >>> round(smooth_calibration_error(scores, outcomes, bandwidth=0.05), 6)
    0.3

    References:
        - Blasiok & Nakkiran, "Smooth ECE: Principled Reliability Diagrams
          via Kernel Smoothing", 2023 (https://arxiv.org/abs/2309.12236).
    """
    scores, outcomes, weights = _validated_inputs(
        scores, outcomes, sample_weight
    )
    # Per-example masses: weighted residual and weight.
    masses = np.stack([weights * (scores - outcomes), weights])
    cache = {}

    def smece_at(sigma):
        if sigma not in cache:
            cache[sigma] = _smooth_ece_at(scores, masses, sigma)
        return cache[sigma]

    if bandwidth is None:
        sigma = _fixed_point_bandwidth(smece_at)
    else:
        sigma = _validated_bandwidth(bandwidth)
    value = smece_at(sigma)
    if return_bandwidth:
        return value, sigma
    return value


def _fixed_point_bandwidth(smece_at):
    """Bisection for sigma* = smECE_{sigma*}; returns the bracket's upper end."""

    def too_small(sigma):
        return sigma < _SEARCH_FLOOR or sigma < smece_at(sigma)

    if too_small(1.0):
        return 1.0
    low, high = 0.0, 1.0  # invariant: too_small(high) is False
    for _ in range(_SEARCH_HALVINGS):
        middle = 0.5 * (low + high)
        if too_small(middle):
            low = middle
        else:
            high = middle
    return high


def _smooth_ece_at(scores, masses, sigma):
    """smECE at bandwidth `sigma`; `masses` is `(2, N)`: residual, weight."""
    grid_points = (
        max(
            _MIN_GRID_POINTS,
            round(_GRID_POINTS_PER_INVERSE_BANDWIDTH / sigma),
        )
        // 2
        + 1
    )
    eval_points = max(
        _MIN_EVAL_POINTS, round(_EVAL_POINTS_PER_INVERSE_BANDWIDTH / sigma)
    )
    on_grid = _linear_binning(scores, masses, grid_points)
    smoothed = _reflected_gaussian_smooth(on_grid, sigma)
    residual, density = _interpolate(
        smoothed, np.linspace(0.0, 1.0, eval_points)
    )
    total = np.sum(density) + eval_points * _DENSITY_FLOOR
    return float(np.sum(np.abs(residual)) / total)


def _linear_binning(points, masses, grid_points):
    """Splits each mass between the two grid nodes around its point.

    The grid is `k / (grid_points - 1)`, `k = 0..grid_points-1`; a point at
    `x` gives a fraction `1 - (x - left) * (grid_points - 1)` of its mass to
    the node on its left and the rest to the node on its right.
    """
    position = points * (grid_points - 1)
    left = np.clip(position.astype(np.int64), 0, grid_points - 2)
    to_right = position - left
    right_share = masses * to_right
    left_share = masses * (1.0 - to_right)
    return np.stack(
        [
            np.bincount(left, weights=left_share[row], minlength=grid_points)
            + np.bincount(
                left + 1, weights=right_share[row], minlength=grid_points
            )
            for row in range(masses.shape[0])
        ]
    )


def _reflected_gaussian_smooth(values, sigma):
    """Convolves each row of `values` with the cut-off Gaussian, reflected.

    `values` is `(rows, m)` on the grid `k / (m - 1)`. Output node `i` is
    `sum_j kernel[j] * v[i + m // 2 - j]`, where `v` is the row mirrored about
    its first and last nodes, and `kernel[j] = phi_sigma(j / (m - 1) - 1/2)`.
    """
    m = values.shape[-1]
    offsets = np.linspace(0.0, 1.0, m) - 0.5
    kernel = np.exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    kernel /= math.sqrt(2.0 * math.pi) * sigma
    # Mirror images about node 0 and node m-1, excluding the nodes themselves:
    # extended[e] holds the value at grid position e - (m - 1).
    extended = np.concatenate(
        [values[:, :0:-1], values, values[:, -2::-1]], axis=-1
    )
    full_length = extended.shape[-1] + m - 1
    fft_length = 1 << (full_length - 1).bit_length()
    full = np.fft.irfft(
        np.fft.rfft(extended, fft_length) * np.fft.rfft(kernel, fft_length),
        fft_length,
    )
    start = m // 2 + m - 1
    return full[:, start : start + m]


def _interpolate(grid_values, t):
    """Piecewise-linear interpolation of rows given on `k / (m - 1)` at `t`."""
    m = grid_values.shape[-1]
    position = t * (m - 1)
    left = np.clip(position.astype(np.int64), 0, m - 2)
    to_right = position - left
    return (
        grid_values[:, left] * (1.0 - to_right)
        + grid_values[:, left + 1] * to_right
    )


def _validated_inputs(scores, outcomes, sample_weight):
    scores = _as_float_vector(scores, "scores")
    outcomes = _as_float_vector(outcomes, "outcomes")
    if scores.shape != outcomes.shape:
        raise ValueError(
            "`scores` and `outcomes` must have the same length; received "
            f"shapes {scores.shape} and {outcomes.shape}."
        )
    if not np.all(np.isfinite(scores)):
        index = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ValueError(
            f"`scores` must be finite; received {float(scores[index])!r} at "
            f"index {index}."
        )
    low, high = float(np.min(scores)), float(np.max(scores))
    if low < 0.0 or high > 1.0:
        raise ValueError(
            f"`scores` must lie in [0, 1]; received min={low!r}, max={high!r}."
        )
    not_binary = (outcomes != 0.0) & (outcomes != 1.0)
    if np.any(not_binary):
        index = int(np.flatnonzero(not_binary)[0])
        raise ValueError(
            "`outcomes` must contain only 0 and 1 (or False and True); "
            f"received {float(outcomes[index])!r} at index {index}."
        )
    if sample_weight is None:
        return scores, outcomes, np.ones_like(scores)
    weights = _as_float_vector(sample_weight, "sample_weight")
    if weights.shape != scores.shape:
        raise ValueError(
            "`sample_weight` must have the same length as `scores`; received "
            f"shapes {weights.shape} and {scores.shape}."
        )
    if not np.all(np.isfinite(weights)):
        index = int(np.flatnonzero(~np.isfinite(weights))[0])
        raise ValueError(
            "`sample_weight` must be finite; received "
            f"{float(weights[index])!r} at index {index}."
        )
    if np.min(weights) < 0.0:
        raise ValueError(
            "`sample_weight` must be non-negative; received "
            f"min={float(np.min(weights))!r}."
        )
    total = float(np.sum(weights))
    if not total > 0.0:
        raise ValueError(
            f"`sample_weight` must have a positive sum; received sum={total!r}."
        )
    return scores, outcomes, weights


def _as_float_vector(values, name):
    if values is None:
        raise ValueError(f"`{name}` is required; received None.")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as error:  # ragged lists
        raise ValueError(
            f"`{name}` must be a 1-D array of numbers; could not read it "
            f"({type(error).__name__}: {error})."
        ) from None
    if array.dtype != bool and not (
        np.issubdtype(array.dtype, np.integer)
        or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(
            f"`{name}` must be real numbers; received dtype {array.dtype}."
        )
    if array.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D with shape (N,); received shape "
            f"{array.shape}."
        )
    if array.size == 0:
        raise ValueError(f"`{name}` is empty; received shape {array.shape}.")
    return array.astype(np.float64)


def _validated_bandwidth(bandwidth):
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real):
        raise ValueError(
            f"`bandwidth` must be None or a positive number; received "
            f"{bandwidth!r}."
        )
    sigma = float(bandwidth)
    if not math.isfinite(sigma) or sigma <= 0.0:
        raise ValueError(
            f"`bandwidth` must be a finite number > 0; received {bandwidth!r}."
        )
    if sigma < _MIN_BANDWIDTH:
        raise ValueError(
            f"`bandwidth` must be >= {_MIN_BANDWIDTH:g} (the discretisation "
            f"grid has about 20 / bandwidth nodes); received {bandwidth!r}."
        )
    return sigma
