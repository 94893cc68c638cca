"""Tests for `keras_reliability.ood.synthetic`."""

import re

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_reliability.ood.synthetic import (
    BLUR_SIGMAS,
    CONTRAST_FACTORS,
    NOISE_STDS,
    SYNTHETIC_KINDS,
    describe_synthetic_sets,
    synthetic_ood_sets,
)

SEVERITIES = (1, 2, 3, 4, 5)
RANDOM_KINDS = ("gaussian_noise", "uniform_noise", "noise")


@pytest.fixture(scope="module")
def digits():
    """The 1797 scikit-learn digits as (N, 8, 8) images with values 0..16."""
    return load_digits().images.astype(np.float32)


def _adjacent_difference(images):
    """Mean absolute difference between horizontally adjacent pixels."""
    return float(np.abs(np.diff(images, axis=2)).mean())


def _shape_pattern(shape):
    """Regex that matches `shape` as Python prints it, e.g. (50, 10)."""
    return re.escape(str(tuple(shape)))


def _clipped_normal_std(sigma, bound):
    """Std of N(0, sigma^2) clipped to [-bound, bound], by quadrature."""
    z = np.linspace(-bound / sigma, bound / sigma, 200_001)
    density = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    inside = np.trapezoid(z**2 * density, z)
    tails = 1.0 - np.trapezoid(density, z)
    return sigma * np.sqrt(inside + tails * (bound / sigma) ** 2)


# ------------------------------------------------------------ shapes, dtype


@pytest.mark.parametrize("shape", [(20, 8, 8), (20, 9, 7, 3), (20, 6, 6, 1)])
def test_every_kind_keeps_shape_and_is_float32(shape):
    x = np.random.default_rng(0).uniform(size=shape)
    sets = synthetic_ood_sets(x, seed=0)
    assert tuple(sets) == SYNTHETIC_KINDS
    for kind, out in sets.items():
        assert out.shape == shape, kind
        assert out.dtype == np.float32, kind
        assert np.isfinite(out).all(), kind


def test_integer_input_is_accepted_and_matches_float_input(digits):
    pixels = digits.astype(np.uint8)
    from_int = synthetic_ood_sets(pixels, seed=3, value_range=(0, 16))
    from_float = synthetic_ood_sets(digits, seed=3, value_range=(0, 16))
    for kind in SYNTHETIC_KINDS:
        assert from_int[kind].dtype == np.float32
        np.testing.assert_array_equal(from_int[kind], from_float[kind])


def test_backend_tensor_input_matches_numpy_input(digits):
    tensor = keras.ops.convert_to_tensor(digits[:64])
    from_tensor = synthetic_ood_sets(tensor, seed=5)
    from_numpy = synthetic_ood_sets(digits[:64], seed=5)
    for kind in SYNTHETIC_KINDS:
        np.testing.assert_array_equal(from_tensor[kind], from_numpy[kind])


def test_device_tensors_of_any_dtype_and_variables_are_copied_to_the_host(digits):
    # On a GPU numpy cannot read a backend tensor; `synthetic_ood_sets` must
    # copy it with keras.ops.convert_to_numpy. Under the PyTorch leg of
    # scripts/test.sh the simulated device (../shared/tools/simulated-device)
    # makes any direct numpy read from library code fail here as CUDA would.
    pixels = digits[:64].astype(np.uint8)
    expected = synthetic_ood_sets(pixels, seed=7, value_range=(0, 16))
    inputs = {
        "uint8 tensor": keras.ops.convert_to_tensor(pixels),
        "int32 tensor": keras.ops.convert_to_tensor(pixels.astype(np.int32)),
        "float32 variable": keras.Variable(pixels.astype(np.float32), trainable=False),
    }
    for name, x in inputs.items():
        sets = synthetic_ood_sets(x, seed=7, value_range=(0, 16))
        assert tuple(sets) == SYNTHETIC_KINDS, name
        for kind in SYNTHETIC_KINDS:
            assert isinstance(sets[kind], np.ndarray), (name, kind)
            assert sets[kind].dtype == np.float32, (name, kind)
            np.testing.assert_array_equal(sets[kind], expected[kind], err_msg=f"{name}, {kind}")
    # A bool tensor is still refused as not real-valued (after the copy).
    with pytest.raises(ValueError, match=r"`x` must hold real numbers.*bool"):
        synthetic_ood_sets(keras.ops.convert_to_tensor(pixels > 8), value_range=(0, 1))


def test_input_is_not_modified(digits):
    x = digits[:100].copy()
    synthetic_ood_sets(x, seed=0, severity=5)
    np.testing.assert_array_equal(x, digits[:100])


# ------------------------------------------------------------ value range


@pytest.mark.parametrize("severity", SEVERITIES)
def test_values_stay_within_explicit_value_range(digits, severity):
    sets = synthetic_ood_sets(digits, severity=severity, seed=1, value_range=(0, 16))
    for kind, out in sets.items():
        assert out.min() >= 0.0, kind
        assert out.max() <= 16.0, kind
    # Noise this strong must have been clipped, i.e. the clip is what holds
    # it in range (a bound that is never reached would prove nothing).
    if severity == 5:
        assert (sets["noise"] == 0.0).any() and (sets["noise"] == 16.0).any()


def test_value_range_is_inferred_from_the_data():
    x = np.random.default_rng(0).uniform(-3.0, 2.0, size=(300, 10, 10))
    lo, hi = float(x.astype(np.float32).min()), float(x.astype(np.float32).max())
    sets = synthetic_ood_sets(x, seed=0, severity=5)
    uniform = sets["uniform_noise"]
    assert uniform.min() >= lo and uniform.max() <= hi
    # Uniform over the inferred range reaches close to both ends of it.
    assert uniform.min() < lo + 0.01 and uniform.max() > hi - 0.01
    assert sets["noise"].min() == np.float32(lo)
    assert sets["noise"].max() == np.float32(hi)


# ------------------------------------------------------------ determinism


def test_same_seed_gives_identical_arrays(digits):
    first = synthetic_ood_sets(digits, seed=42)
    second = synthetic_ood_sets(digits, seed=42)
    for kind in SYNTHETIC_KINDS:
        np.testing.assert_array_equal(first[kind], second[kind])


def test_different_seeds_give_different_noise(digits):
    first = synthetic_ood_sets(digits, seed=1)
    second = synthetic_ood_sets(digits, seed=2)
    for kind in RANDOM_KINDS:
        assert not np.array_equal(first[kind], second[kind]), kind
    # Blur and contrast involve no randomness.
    for kind in ("blur", "contrast"):
        np.testing.assert_array_equal(first[kind], second[kind])


def test_no_seed_gives_fresh_noise(digits):
    first = synthetic_ood_sets(digits, kinds="noise")
    second = synthetic_ood_sets(digits, kinds="noise")
    assert not np.array_equal(first["noise"], second["noise"])


def test_a_kind_does_not_depend_on_the_other_kinds_requested(digits):
    everything = synthetic_ood_sets(digits, seed=7)
    for kind in RANDOM_KINDS:
        alone = synthetic_ood_sets(digits, kinds=[kind], seed=7)
        assert list(alone) == [kind]
        np.testing.assert_array_equal(alone[kind], everything[kind])
    # The kinds draw from different streams.
    assert not np.array_equal(
        everything["gaussian_noise"], everything["noise"] - digits
    )


def test_global_numpy_rng_is_left_alone(digits):
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    synthetic_ood_sets(digits, seed=0)
    synthetic_ood_sets(digits)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


# ------------------------------------------------------------ blur


def test_blur_smooths_real_images_more_with_severity(digits):
    roughness = [_adjacent_difference(digits)]
    for severity in SEVERITIES:
        blurred = synthetic_ood_sets(digits, kinds="blur", severity=severity)["blur"]
        roughness.append(_adjacent_difference(blurred))
    # Strictly decreasing: severity 1 already smooths, every step smooths more.
    assert all(a > b for a, b in zip(roughness, roughness[1:])), roughness
    assert roughness[3] < 0.5 * roughness[0]


def test_blur_spreads_a_bright_pixel_and_keeps_its_total():
    image = np.zeros((1, 41, 41, 1), np.float32)
    image[0, 20, 20, 0] = 1.0
    centres = []
    for severity, sigma in zip(SEVERITIES, BLUR_SIGMAS):
        out = synthetic_ood_sets(
            image, kinds="blur", severity=severity, value_range=(0, 1)
        )["blur"][0, :, :, 0]
        # Far from the borders, the kernel is normalised: the total is kept.
        assert out.sum() == pytest.approx(1.0, abs=1e-5)
        # Light moved from the pixel to its neighbours, symmetrically.
        assert out[20, 20] < 1.0
        assert out[20, 21] > 0.0 and out[21, 20] > 0.0 and out[21, 21] > 0.0
        np.testing.assert_allclose(out, out.T, atol=1e-7)
        np.testing.assert_allclose(out, out[::-1, ::-1], atol=1e-7)
        # The spread along a row is the sampled Gaussian's variance, which is
        # sigma^2 up to the discretisation (0.215 instead of 0.25 at 0.5).
        offsets = np.arange(41) - 20
        row_mass = out.sum(axis=0)
        variance = float((row_mass * offsets**2).sum())
        radius = int(4 * sigma + 0.5)
        taps = np.arange(-radius, radius + 1)
        sampled = np.exp(-0.5 * (taps / sigma) ** 2)
        sampled_variance = (sampled * taps**2).sum() / sampled.sum()
        assert variance == pytest.approx(sampled_variance, rel=1e-4)
        if sigma >= 1:
            assert variance == pytest.approx(sigma**2, rel=0.01)
        # Nothing outside the 4-sigma cut-off.
        assert row_mass[np.abs(offsets) > radius].sum() == 0.0
        centres.append(out[20, 20])
    assert all(a > b for a, b in zip(centres, centres[1:])), centres


def test_blur_keeps_channels_apart():
    image = np.zeros((2, 16, 16, 3), np.float32)
    image[:, 8, 8, 1] = 1.0
    out = synthetic_ood_sets(image, kinds="blur", value_range=(0, 1))["blur"]
    assert out[..., 0].max() == 0.0 and out[..., 2].max() == 0.0
    assert out[..., 1].sum() == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_blur_matches_scipy_gaussian_filter(digits, severity):
    ndimage = pytest.importorskip("scipy.ndimage")
    sigma = BLUR_SIGMAS[severity - 1]
    colour = np.stack([digits[:50], 16 - digits[:50], digits[50:100]], axis=-1)
    for images, sigmas in ((digits, (0, sigma, sigma)), (colour, (0, sigma, sigma, 0))):
        expected = ndimage.gaussian_filter(
            images.astype(np.float64), sigma=sigmas, mode="reflect", truncate=4.0
        )
        out = synthetic_ood_sets(images, kinds="blur", severity=severity)["blur"]
        # Includes sigma 3 on 8x8 images, where the kernel is wider than the
        # image and the mirroring has to repeat.
        np.testing.assert_allclose(out, expected, atol=2e-5)


# ------------------------------------------------------------ contrast


@pytest.mark.parametrize("severity", SEVERITIES)
def test_contrast_scales_each_example_std_by_the_factor(digits, severity):
    out = synthetic_ood_sets(
        digits, kinds="contrast", severity=severity, value_range=(0, 16)
    )["contrast"]
    factor = CONTRAST_FACTORS[severity - 1]
    np.testing.assert_allclose(
        out.std(axis=(1, 2)), factor * digits.std(axis=(1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        out.mean(axis=(1, 2)), digits.mean(axis=(1, 2)), rtol=1e-5
    )


def test_contrast_uses_each_examples_own_mean():
    x = np.stack([np.full((4, 4), 1.0), np.full((4, 4), 9.0)])
    x[:, 0, 0] += 4.0
    out = synthetic_ood_sets(x, kinds="contrast", severity=1, value_range=(0, 20))
    mean = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out["contrast"], (x - mean) * 0.4 + mean, rtol=1e-6)


# ------------------------------------------------------------ additive noise


@pytest.mark.parametrize("severity", SEVERITIES)
def test_noise_std_matches_the_table(severity):
    x = np.full((100, 32, 32), 0.5, np.float32)
    out = synthetic_ood_sets(
        x, kinds="noise", severity=severity, seed=severity, value_range=(0, 1)
    )["noise"]
    noise = out - 0.5
    # Width of the range is 1, so the std is the table value; clipping at
    # +-0.5 shrinks it at high severity, by an amount computed exactly here.
    expected = _clipped_normal_std(NOISE_STDS[severity - 1], 0.5)
    # 102400 draws: the sample std is within ~0.3% (1 sigma) of the truth.
    assert noise.std() == pytest.approx(expected, rel=0.015)
    assert abs(noise.mean()) < 0.005


def test_noise_scales_with_the_range_and_is_added_to_x(digits):
    x = digits[:400] * 10.0  # values 0..160
    wide = synthetic_ood_sets(
        x, kinds="noise", severity=2, seed=9, value_range=(-1e4, 1e4)
    )
    # No clipping this far from the bounds: out - x is the noise itself, with
    # std 0.12 * width.
    noise = wide["noise"] - x
    assert noise.std() == pytest.approx(0.12 * 2e4, rel=0.02)
    # The same seed on other inputs draws the same noise: it is additive.
    other = synthetic_ood_sets(
        x[::-1].copy(), kinds="noise", severity=2, seed=9, value_range=(-1e4, 1e4)
    )
    np.testing.assert_allclose(other["noise"] - x[::-1], noise, atol=0.01)


# ------------------------------------------------------------ pure noise


def test_gaussian_noise_has_the_data_statistics_but_not_its_content(digits):
    wide = (-100, 100)
    sets = synthetic_ood_sets(
        digits, kinds="gaussian_noise", seed=0, value_range=wide
    )
    noise = sets["gaussian_noise"]
    # Per-feature mean and global std of the data (no clipping at +-100).
    standard_error = digits.std() / np.sqrt(len(digits))
    np.testing.assert_allclose(
        noise.mean(axis=0), digits.mean(axis=0), atol=5 * standard_error
    )
    assert noise.std(axis=0).mean() == pytest.approx(digits.std(), rel=0.02)
    # Same std for every feature, though the data's per-feature stds differ.
    assert digits.std(axis=0).min() < 0.1 * digits.std()
    assert noise.std(axis=0).min() > 0.9 * digits.std()
    # Unrelated to the example it stands next to.
    centred = (digits - digits.mean(axis=0)).ravel()
    correlation = np.corrcoef(centred, (noise - digits.mean(axis=0)).ravel())[0, 1]
    assert abs(correlation) < 0.01
    # Only the statistics matter: shuffled examples give the same draw.
    shuffled = digits[np.random.default_rng(1).permutation(len(digits))]
    again = synthetic_ood_sets(
        shuffled, kinds="gaussian_noise", seed=0, value_range=wide
    )
    np.testing.assert_allclose(again["gaussian_noise"], noise, atol=1e-4)


def test_gaussian_noise_is_clipped_to_the_range(digits):
    noise = synthetic_ood_sets(digits, kinds="gaussian_noise", seed=0)["gaussian_noise"]
    # Mean-0 pixels with std ~6 go below 0: the clip holds them at 0.
    assert noise.min() == 0.0 and noise.max() == 16.0
    assert (noise == 0.0).mean() > 0.2


def test_uniform_noise_ignores_x_and_covers_the_range(digits):
    sets = synthetic_ood_sets(
        digits, kinds="uniform_noise", seed=4, value_range=(0, 16)
    )
    noise = sets["uniform_noise"]
    assert noise.mean() == pytest.approx(8.0, abs=0.05)
    assert noise.var() == pytest.approx(16.0**2 / 12, rel=0.01)
    assert np.histogram(noise, bins=8, range=(0, 16))[0].min() > 0.95 * noise.size / 8
    # Different content, same shape, range and seed: the same array.
    other = 16.0 - digits
    again = synthetic_ood_sets(
        other, kinds="uniform_noise", seed=4, value_range=(0, 16)
    )
    np.testing.assert_array_equal(again["uniform_noise"], noise)


# ------------------------------------------------------------ non-image data


@pytest.mark.parametrize("shape", [(50, 10), (50, 2, 3, 4, 5)])
def test_non_image_data_skips_blur_by_default(shape):
    x = np.random.default_rng(0).normal(size=shape)
    sets = synthetic_ood_sets(x, seed=0)
    assert tuple(sets) == ("gaussian_noise", "uniform_noise", "contrast", "noise")
    assert all(out.shape == shape for out in sets.values())


@pytest.mark.parametrize("shape", [(50, 10), (50, 2, 3, 4, 5)])
def test_non_image_data_raises_when_blur_is_named(shape):
    x = np.random.default_rng(0).normal(size=shape)
    with pytest.raises(ValueError, match=r"`kinds`.*'blur'.*" + _shape_pattern(shape)):
        synthetic_ood_sets(x, kinds=["noise", "blur"])
    with pytest.raises(ValueError, match="`kinds`"):
        synthetic_ood_sets(x, kinds=SYNTHETIC_KINDS)


def test_channels_first_images_warn_when_blurred():
    x = np.random.default_rng(0).uniform(size=(4, 3, 16, 16))
    with pytest.warns(UserWarning, match="channels-first"):
        synthetic_ood_sets(x, kinds="blur")
    with pytest.warns(UserWarning, match="channels-first"):
        synthetic_ood_sets(x)


def test_kinds_order_and_repeats(digits):
    sets = synthetic_ood_sets(digits, kinds=["noise", "blur", "noise"], seed=0)
    assert list(sets) == ["noise", "blur"]
    assert describe_synthetic_sets(["noise", "blur", "noise"], 1) == (
        "noise (std 0.08 of the range), blur (sigma 0.5), severity 1"
    )


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((0, 8, 8)), r"`x` must not be empty.*\(0, 8, 8\)"),
        (np.zeros((5, 0)), r"`x` must not be empty"),
        (np.array([]), r"`x` must not be empty"),
        (np.arange(10.0), r"`x` must have a batch axis.*\(10,\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), r"`x` must be finite.*1 NaN/inf"),
        (np.array([[1.0, np.inf], [-np.inf, 1.0]]), r"`x` must be finite.*2 NaN/inf"),
        (np.array([["a", "b"]]), r"`x` must hold real numbers.*<U1"),
        (np.ones((3, 4), bool), r"`x` must hold real numbers.*bool"),
        (np.ones((3, 4), complex), r"`x` must hold real numbers.*complex"),
    ],
)
def test_bad_x_raises(x, match):
    with pytest.raises(ValueError, match=match):
        synthetic_ood_sets(x, value_range=(0, 1))


@pytest.mark.parametrize("severity", [0, 6, -1, 2.5, 3.0, True, "3", None])
def test_bad_severity_raises(digits, severity):
    with pytest.raises(ValueError, match=r"`severity` must be an integer in 1\.\.5"):
        synthetic_ood_sets(digits, severity=severity)
    with pytest.raises(ValueError, match=r"received " + re.escape(repr(severity))):
        describe_synthetic_sets(severity=severity)


def test_numpy_integer_severity_is_accepted(digits):
    sets = synthetic_ood_sets(digits, kinds="contrast", severity=np.int64(5))
    np.testing.assert_allclose(
        sets["contrast"].std(axis=(1, 2)), 0.05 * digits.std(axis=(1, 2)), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kinds, match",
    [
        (["blur", "sharpen"], r"`kinds`.*'gaussian_noise'.*'noise'.*\['sharpen'\]"),
        ("fog", r"`kinds`.*\['fog'\]"),
        ([], r"`kinds` must name at least one"),
        (3, r"`kinds` must be a sequence.*received 3"),
    ],
)
def test_bad_kinds_raise(digits, kinds, match):
    with pytest.raises(ValueError, match=match):
        synthetic_ood_sets(digits, kinds=kinds)
    with pytest.raises(ValueError, match=match):
        describe_synthetic_sets(kinds)


@pytest.mark.parametrize(
    "value_range, match",
    [
        ((1, 0), r"`value_range`.*lo < hi.*\(1, 0\)"),
        ((16, 16), r"`value_range`.*lo < hi.*\(16, 16\)"),
        ((0, float("nan")), r"`value_range`.*finite.*nan"),
        ((0, float("inf")), r"`value_range`.*finite.*inf"),
        ((0,), r"`value_range` must be a pair.*\(0,\)"),
        (5, r"`value_range` must be a pair.*5"),
        (("0", "16"), r"`value_range`.*finite numbers"),
        ((0, 1), r"`value_range`.*\(0, 1\).*\[0, 16\]"),
        ((2, 16), r"`value_range`.*\[0, 16\]"),
    ],
)
def test_bad_value_range_raises(digits, value_range, match):
    with pytest.raises(ValueError, match=match):
        synthetic_ood_sets(digits, value_range=value_range)


def test_constant_x_needs_an_explicit_value_range():
    x = np.full((10, 8, 8), 0.5)
    with pytest.raises(ValueError, match=r"`value_range`.*every value of `x` is 0\.5"):
        synthetic_ood_sets(x)
    sets = synthetic_ood_sets(x, value_range=(0, 1), seed=0)
    assert sets["uniform_noise"].std() > 0.25


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed_raises(digits, seed):
    with pytest.raises(ValueError, match=r"`seed` must be None or an integer >= 0"):
        synthetic_ood_sets(digits, seed=seed)


# ------------------------------------------------------------ description


def test_description_of_the_default_sets():
    assert describe_synthetic_sets(SYNTHETIC_KINDS, 3) == (
        "gaussian_noise, uniform_noise, blur (sigma 1.5), contrast (factor 0.2), "
        "noise (std 0.18 of the range), severity 3"
    )
    assert describe_synthetic_sets() == describe_synthetic_sets(SYNTHETIC_KINDS, 3)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_description_follows_the_tables_and_the_sets_built(digits, severity):
    x = digits.reshape(len(digits), -1)  # not image-shaped: no blur
    sets = synthetic_ood_sets(x, severity=severity, seed=0)
    text = describe_synthetic_sets(sets, severity)
    assert text == (
        f"gaussian_noise, uniform_noise, contrast (factor "
        f"{CONTRAST_FACTORS[severity - 1]:g}), noise (std "
        f"{NOISE_STDS[severity - 1]:g} of the range), severity {severity}"
    )
    assert "blur" not in text
    assert f"blur (sigma {BLUR_SIGMAS[severity - 1]:g})" in describe_synthetic_sets(
        "blur", severity
    )
