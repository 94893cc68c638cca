"""Synthetic out-of-distribution sets built from in-distribution inputs.

When no real OOD data is at hand, a detector can still be checked against
inputs that a classifier should not trust: pure noise that shares only the
scale of the data, and corrupted copies of the data itself (blur, reduced
contrast, additive noise), the dataset-shift families of CIFAR-10-C.

Everything here is numpy on the host, deterministic given `seed` (a private
`np.random.Generator`, never numpy's global RNG). Each kind draws from its
own stream derived from `seed`, so a kind's array does not depend on which
other kinds were requested.

Severity tables (index `severity - 1`, severities 1..5):

- `"blur"`: Gaussian sigma in pixels `BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0,
  3.0)`, wider than CIFAR-10-C's (0.4..1.0) so that small images (8x8 to
  32x32) lose visible detail from severity 2 on.
- `"contrast"`: factor `CONTRAST_FACTORS = (0.4, 0.3, 0.2, 0.1, 0.05)`
  (CIFAR-10-C's table).
- `"noise"`: standard deviation as a fraction of the width of
  `value_range`, `NOISE_STDS = (0.08, 0.12, 0.18, 0.26, 0.38)` (CIFAR-10-C's
  Gaussian-noise table, for inputs in [0, 1]).
"""

import numbers
import warnings

import keras
import numpy as np

from keras_reliability.arguments import check_int_in_range
from keras_reliability.arguments import check_seed

SYNTHETIC_KINDS = ("gaussian_noise", "uniform_noise", "blur", "contrast", "noise")

BLUR_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)
CONTRAST_FACTORS = (0.4, 0.3, 0.2, 0.1, 0.05)
NOISE_STDS = (0.08, 0.12, 0.18, 0.26, 0.38)

# The blur kernel is cut off at this many sigmas (as scipy.ndimage does).
_BLUR_TRUNCATE = 4.0

# Kinds that need image-shaped data, (N, H, W) or (N, H, W, C).
_IMAGE_KINDS = ("blur",)


def synthetic_ood_sets(x, kinds=None, severity=3, seed=None, value_range=None):
    """Builds synthetic out-of-distribution sets from in-distribution inputs.

    Each set has as many examples as `x` and the same shape, so it can be
    scored next to `x` without resampling. Two kinds are unrelated inputs that
    share only the scale of `x`; three are corruptions of `x` itself:

    - `"gaussian_noise"`: pure noise, i.i.d. Normal with the per-feature mean
      of `x` (the mean over examples of each pixel/feature) and the global
      standard deviation of `x`, clipped to `value_range`.
    - `"uniform_noise"`: pure noise, i.i.d. uniform over `value_range`.
    - `"blur"`: each example blurred with a Gaussian of sigma
      `BLUR_SIGMAS[severity - 1]` pixels over its spatial axes (axes 1 and 2
      of `(N, H, W)` or channels-last `(N, H, W, C)` data). The kernel is
      separable, cut off at 4 sigma, and the borders are mirrored
      (`d c b a | a b c d`), which matches
      `scipy.ndimage.gaussian_filter(mode="reflect")`.
    - `"contrast"`: `(x - m) * c + m` with `m` the mean of each example over
      all its features and `c = CONTRAST_FACTORS[severity - 1]`.
    - `"noise"`: `x` plus Gaussian noise of standard deviation
      `NOISE_STDS[severity - 1] * (hi - lo)`, clipped to `value_range`.

    Every output is clipped to `value_range`.

    Args:
        x: in-distribution inputs, an array `(N, ...)` with `N >= 1` examples
            and at least one feature axis; any real dtype (integers, e.g.
            uint8 images, are converted to float32). A tensor or variable of
            the active Keras backend is accepted on any device: it is copied
            to the host with `keras.ops.convert_to_numpy`.
        kinds: the kinds to build, a name or a sequence of names from
            `SYNTHETIC_KINDS`. `None` (the default) means every kind that
            applies to `x`: `"blur"` is skipped silently when `x` is not
            image-shaped (`x.ndim` not 3 or 4). Naming `"blur"` explicitly
            for such data is an error.
        severity: integer in 1..5 that indexes the severity tables above.
        seed: `None` (fresh randomness) or an integer >= 0; the same seed
            gives identical arrays.
        value_range: `(lo, hi)`, the range of valid inputs, with `lo < hi`
            and `x` inside it. `None` infers `(x.min(), x.max())`; pass it
            explicitly when `x` does not reach the ends of the valid range
            (for example `(0, 255)` for uint8 images, `(0, 1)` for scaled
            ones), since it sets the noise scale and the clipping.

    Returns:
        A dict mapping each built kind, in the order requested, to a float32
        array with the shape of `x`.

    Raises:
        ValueError: if `x` is empty, has no feature axis, is not real-valued
            or holds NaN/inf; if `kinds` is empty, names an unknown kind, or
            names `"blur"` for data that is not image-shaped; if `severity`
            is not an integer in 1..5; if `seed` is not None or an integer
            >= 0; if `value_range` is not two finite numbers with `lo < hi`,
            does not contain `x`, or cannot be inferred because `x` is
            constant.

    Example:

    >>> x = np.random.default_rng(0).uniform(size=(16, 8, 8, 1))
    >>> sets = synthetic_ood_sets(x, severity=2, seed=0, value_range=(0, 1))
    >>> sorted(sets)
    ['blur', 'contrast', 'gaussian_noise', 'noise', 'uniform_noise']
    >>> sets["blur"].shape, sets["blur"].dtype
    ((16, 8, 8, 1), dtype('float32'))

    References:
        - Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
          Common Corruptions and Perturbations", ICLR 2019.
        - Ovadia et al., "Can You Trust Your Model's Uncertainty? Evaluating
          Predictive Uncertainty Under Dataset Shift", NeurIPS 2019.
        - Hendrycks & Gimpel, "A Baseline for Detecting Misclassified and
          Out-of-Distribution Examples in Neural Networks", ICLR 2017
          (Gaussian and uniform noise as OOD sets).
    """
    x = _check_x(x)
    kinds = _resolve_kinds(kinds, x.shape)
    severity = check_int_in_range(severity, "severity", 1, len(BLUR_SIGMAS))
    seed = check_seed(seed, bounded=False)  # numpy's generator
    lo, hi = _resolve_value_range(value_range, x)
    _warn_if_channels_first(x.shape, kinds)

    builders = {
        "gaussian_noise": _gaussian_noise,
        "uniform_noise": _uniform_noise,
        "blur": _blur,
        "contrast": _contrast,
        "noise": _additive_noise,
    }
    entropy = np.random.SeedSequence(seed).entropy
    sets = {}
    for kind in kinds:
        # One independent stream per kind, keyed by its place in
        # SYNTHETIC_KINDS, so that a kind's array does not depend on which
        # other kinds were requested.
        stream = np.random.SeedSequence(entropy, spawn_key=(SYNTHETIC_KINDS.index(kind),))
        rng = np.random.default_rng(stream)
        out = builders[kind](x, severity, rng, lo, hi)
        sets[kind] = np.clip(out, lo, hi).astype(np.float32, copy=False)
    return sets


def describe_synthetic_sets(kinds=None, severity=3):
    """One line that says what `synthetic_ood_sets` builds.

    Args:
        kinds: kind names (a sequence, a dict such as the one
            `synthetic_ood_sets` returns, or a single name); `None` means
            every kind in `SYNTHETIC_KINDS`.
        severity: integer in 1..5.

    Returns:
        A string such as `"gaussian_noise, uniform_noise, blur (sigma 1.5),
        contrast (factor 0.2), noise (std 0.18 of the range), severity 3"`.

    Raises:
        ValueError: for an empty `kinds`, an unknown kind, or a `severity`
            that is not an integer in 1..5.

    Example:

    >>> describe_synthetic_sets(["blur", "contrast"], severity=1)
    'blur (sigma 0.5), contrast (factor 0.4), severity 1'
    """
    kinds = _check_kinds(SYNTHETIC_KINDS if kinds is None else kinds)
    severity = check_int_in_range(severity, "severity", 1, len(BLUR_SIGMAS))
    index = severity - 1
    details = {
        "blur": f" (sigma {BLUR_SIGMAS[index]:g})",
        "contrast": f" (factor {CONTRAST_FACTORS[index]:g})",
        "noise": f" (std {NOISE_STDS[index]:g} of the range)",
    }
    parts = [kind + details.get(kind, "") for kind in kinds]
    return ", ".join(parts) + f", severity {severity}"


# ---------------------------------------------------------------- builders


def _gaussian_noise(x, severity, rng, lo, hi):
    del severity, lo, hi
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.float32(x.std(dtype=np.float64))
    noise = rng.standard_normal(size=x.shape, dtype=np.float32)
    noise *= std
    noise += mean
    return noise


def _uniform_noise(x, severity, rng, lo, hi):
    del severity
    noise = rng.random(size=x.shape, dtype=np.float32)
    noise *= np.float32(hi - lo)
    noise += np.float32(lo)
    return noise


def _blur(x, severity, rng, lo, hi):
    del rng, lo, hi
    weights = _gaussian_kernel(BLUR_SIGMAS[severity - 1])
    return _convolve_axis(_convolve_axis(x, weights, axis=1), weights, axis=2)


def _contrast(x, severity, rng, lo, hi):
    del rng, lo, hi
    factor = np.float32(CONTRAST_FACTORS[severity - 1])
    axes = tuple(range(1, x.ndim))
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(np.float32)
    return (x - mean) * factor + mean


def _additive_noise(x, severity, rng, lo, hi):
    std = np.float32(NOISE_STDS[severity - 1] * (hi - lo))
    noise = rng.standard_normal(size=x.shape, dtype=np.float32)
    noise *= std
    noise += x
    return noise


def _gaussian_kernel(sigma):
    """Normalised 1-D Gaussian taps, radius `int(4 * sigma + 0.5)`."""
    radius = int(_BLUR_TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).astype(np.float32)


def _convolve_axis(x, weights, axis):
    """Convolves every example along `axis` with mirrored borders.

    One vectorised multiply-add per tap over the whole batch: `2r + 1` passes
    over the data instead of a Python loop over rows.
    """
    radius = (len(weights) - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius, radius)
    # "symmetric" repeats the edge sample (d c b a | a b c d), like
    # scipy.ndimage's "reflect"; it keeps mirroring when the kernel is wider
    # than the image.
    padded = np.pad(x, pad, mode="symmetric")
    length = x.shape[axis]
    out = np.zeros_like(x)
    window = [slice(None)] * x.ndim
    for tap, weight in enumerate(weights):
        window[axis] = slice(tap, tap + length)
        out += weight * padded[tuple(window)]
    return out


# ---------------------------------------------------------------- checks


def _check_x(x):
    try:
        if keras.ops.is_tensor(x) or isinstance(x, keras.Variable):
            # numpy cannot read a tensor that lives on an accelerator (a CUDA
            # torch tensor raises); Keras copies it to the host first.
            x = keras.ops.convert_to_numpy(x)
        else:
            x = np.asarray(x)
    except Exception as error:  # e.g. an object numpy cannot read
        raise ValueError(
            f"`x` must be an array of inputs that numpy can read; received an "
            f"object of type {type(x).__name__} ({error})."
        ) from error
    if x.dtype == bool or not (
        np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
    ):
        raise ValueError(
            f"`x` must hold real numbers (integer or float); received dtype " f"{x.dtype}."
        )
    if x.size == 0:
        raise ValueError(f"`x` must not be empty; received shape {x.shape}.")
    if x.ndim < 2:
        raise ValueError(
            "`x` must have a batch axis and at least one feature axis, "
            f"(N, ...); received shape {x.shape}."
        )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        count = int(x.size - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"`x` must be finite; received {count} NaN/inf value(s) among " f"{x.size}."
        )
    return x


def _is_image_shaped(shape):
    return len(shape) in (3, 4)


def _check_kinds(kinds):
    """Returns the requested kinds as a tuple, in order, without repeats."""
    if isinstance(kinds, str):
        kinds = (kinds,)
    try:
        kinds = tuple(kinds)
    except TypeError:
        raise ValueError(
            f"`kinds` must be a sequence of names from {SYNTHETIC_KINDS}; " f"received {kinds!r}."
        ) from None
    if not kinds:
        raise ValueError(
            f"`kinds` must name at least one of {SYNTHETIC_KINDS}; received " "an empty sequence."
        )
    unknown = [kind for kind in kinds if kind not in SYNTHETIC_KINDS]
    if unknown:
        raise ValueError(
            f"`kinds` must be names from {SYNTHETIC_KINDS}; received unknown "
            f"kind(s) {unknown!r}."
        )
    return tuple(dict.fromkeys(kinds))


def _resolve_kinds(kinds, shape):
    if kinds is None:
        # The default: every kind that applies to this data.
        return tuple(
            kind for kind in SYNTHETIC_KINDS if kind not in _IMAGE_KINDS or _is_image_shaped(shape)
        )
    kinds = _check_kinds(kinds)
    if not _is_image_shaped(shape):
        inapplicable = [kind for kind in kinds if kind in _IMAGE_KINDS]
        if inapplicable:
            raise ValueError(
                f"`kinds` includes {inapplicable!r}, which needs image-shaped "
                f"`x` (N, H, W) or (N, H, W, C); received `x` of shape {shape}. "
                "Leave `kinds=None` to skip the kinds that do not apply."
            )
    return kinds


def _resolve_value_range(value_range, x):
    x_min, x_max = float(x.min()), float(x.max())
    if value_range is None:
        if not x_min < x_max:
            raise ValueError(
                "`value_range` is None, so it is inferred as (x.min(), "
                f"x.max()), but every value of `x` is {x_min!r}; pass "
                "`value_range=(lo, hi)`, the range of valid inputs."
            )
        return x_min, x_max
    try:
        lo, hi = value_range
    except (TypeError, ValueError):
        raise ValueError(
            f"`value_range` must be a pair (lo, hi); received {value_range!r}."
        ) from None
    valid = all(
        not isinstance(v, bool) and isinstance(v, numbers.Real) and np.isfinite(v) for v in (lo, hi)
    )
    if not valid or not lo < hi:
        raise ValueError(
            "`value_range` must be two finite numbers (lo, hi) with lo < hi; "
            f"received {value_range!r}."
        )
    lo, hi = float(lo), float(hi)
    # float32 rounding of `x` may step just outside a float64 bound.
    slack = 1e-6 * (hi - lo)
    if x_min < lo - slack or x_max > hi + slack:
        raise ValueError(
            f"`x` must lie within `value_range`; received value_range="
            f"{value_range!r} but `x` spans [{x_min:g}, {x_max:g}]. Pass the "
            "range the inputs are scaled to (e.g. (0, 255) for raw pixels)."
        )
    return lo, hi


def _warn_if_channels_first(shape, kinds):
    """Warns when 4-D data looks like (N, C, H, W): blur needs channels last."""
    if "blur" in kinds and len(shape) == 4 and shape[1] <= 4 < shape[3]:
        warnings.warn(
            f"`x` has shape {shape}, which looks channels-first (N, C, H, W); "
            "'blur' treats axes 1 and 2 as height and width (channels last), "
            "so it would blur across channels. Transpose `x` to (N, H, W, C).",
            stacklevel=3,
        )
