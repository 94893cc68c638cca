"""The histogram-binning plugin, as a user gets it after `pip install plugins/histogram_binning`."""

import os
import pathlib
import pickle
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_reliability as kr

plugin = pytest.importorskip(
    "keras_reliability_histogram_binning",
    reason="install the plugin: pip install plugins/histogram_binning",
)


def test_the_registry_finds_it_without_an_import_of_the_plugin():
    script = (
        "import sys, keras_reliability as kr\n"
        "assert 'keras_reliability_histogram_binning' not in sys.modules\n"
        "assert 'histogram_binning' in kr.registry.available('calibrator')\n"
        "layer = kr.registry.get('calibrator', 'histogram_binning')\n"
        "print(type(layer).__name__, layer.num_bins)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HistogramBinning 15"


def _reference(logits_fit, labels, logits_new, num_bins):
    """A direct loop over classes and bins, in float64."""

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def bin_of(p):  # (lo, hi] bins, 0 in the first
        return np.clip(np.ceil(p * num_bins).astype(int) - 1, 0, num_bins - 1)

    p_fit, p_new = softmax(logits_fit), softmax(logits_new)
    out = np.empty_like(p_new)
    for k in range(p_fit.shape[1]):
        for b in range(num_bins):
            members = bin_of(p_fit[:, k]) == b
            value = (labels[members] == k).mean() if members.any() else (b + 0.5) / num_bins
            out[bin_of(p_new[:, k]) == b, k] = value
    out = np.maximum(out, 1e-7)
    return out / out.sum(axis=1, keepdims=True)


def test_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(600, 4)) * 2).astype("float32")
    labels = rng.integers(0, 4, 600)
    new = (rng.normal(size=(200, 4)) * 2).astype("float32")
    layer = plugin.HistogramBinning(num_bins=6).fit(logits, labels)
    calibrated = np.exp(keras.ops.convert_to_numpy(layer(new)))
    np.testing.assert_allclose(calibrated, _reference(logits, labels, new, 6), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, rtol=1e-5)


def _densenet40_logits():
    """Kull et al.'s DenseNet-40 CIFAR-10 logits from the shared reference data."""
    default = pathlib.Path(__file__).resolve().parents[3].parent / "shared" / "data"
    folder = pathlib.Path(os.environ.get("KERAS_RELIABILITY_DATA", default))
    path = folder / "markus93_densenet40_c10_logits" / "probs_densenet40_c10_logits.p"
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (set KERAS_RELIABILITY_DATA)")
    with open(path, "rb") as file:
        (val, y_val), (test, y_test) = pickle.load(file, encoding="latin1")
    return val, y_val.ravel(), test, y_test.ravel()


def test_calibrates_densenet40_on_cifar10():
    val, y_val, test, y_test = _densenet40_logits()
    before = kr.metrics.expected_calibration_error(y_test, test, from_logits=True)
    binning = kr.registry.get(
        "calibrator", {"class_name": "histogram_binning", "config": {"num_bins": 15}}
    ).fit(val, y_val)
    calibrated = keras.ops.convert_to_numpy(binning(test))
    after = kr.metrics.expected_calibration_error(y_test, calibrated, from_logits=True)
    # Guo et al. (2017) report 5.50% for this network uncalibrated; fitted on
    # the 5,000 validation logits, 15 bins per class bring the 10,000 test
    # logits to 1.95% (temperature scaling: 0.95%).
    assert before == pytest.approx(0.0550, abs=5e-5)
    assert after == pytest.approx(0.0195, abs=1e-3)
    # Binning may move the predicted class, but hardly the accuracy.
    accuracy = np.mean(np.argmax(calibrated, axis=1) == y_test)
    assert accuracy == pytest.approx(np.mean(np.argmax(test, axis=1) == y_test), abs=0.005)


def test_saved_model_keeps_the_fitted_bins(tmp_path):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(300, 3)).astype("float32")
    labels = rng.integers(0, 3, 300)
    layer = plugin.HistogramBinning(num_bins=5).fit(logits, labels)
    model = keras.Sequential([keras.Input((3,)), layer])
    path = tmp_path / "binned.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[-1], plugin.HistogramBinning)
    assert restored.layers[-1].num_bins == 5
    np.testing.assert_allclose(
        restored.predict(logits, verbose=0), model.predict(logits, verbose=0), rtol=1e-6
    )


def test_probability_inputs_give_probabilities():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(400, 3)).astype("float32")
    labels = rng.integers(0, 3, 400)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    from_logits = plugin.HistogramBinning(num_bins=4).fit(logits, labels)
    from_probabilities = plugin.HistogramBinning(num_bins=4, from_logits=False).fit(
        probabilities, labels
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(from_probabilities(probabilities)),
        np.exp(keras.ops.convert_to_numpy(from_logits(logits))),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("num_bins", [0, 2.5, "ten"])
def test_bad_num_bins_names_the_argument(num_bins):
    with pytest.raises(ValueError, match="num_bins"):
        plugin.HistogramBinning(num_bins=num_bins)
