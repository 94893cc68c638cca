import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_reliability.metrics.reliability_bins import ReliabilityBins
from keras_reliability.plotting import calibration_history
from keras_reliability.plotting import figure_to_png
from keras_reliability.plotting import reliability_diagram
from keras_reliability.plotting._matplotlib import save_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]
NAN = float("nan")


@pytest.fixture
def bins():
    # Bins 0 and 3 are empty (NaN statistics), the others are miscalibrated
    # in both directions.
    return ReliabilityBins(
        edges=np.linspace(0.0, 1.0, 6),
        count=np.array([0.0, 10.0, 30.0, 0.0, 60.0]),
        confidence=np.array([NAN, 0.3, 0.5, NAN, 0.9]),
        accuracy=np.array([NAN, 0.4, 0.45, NAN, 0.7]),
    )


def _container(ax, label):
    matches = [c for c in ax.containers if c.get_label() == label]
    assert len(matches) == 1, [c.get_label() for c in ax.containers]
    return matches[0]


def _artist(artists, gid):
    matches = [a for a in artists if a.get_gid() == gid]
    assert len(matches) == 1
    return matches[0]


def _run_python(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# ----------------------------------------------------------------------------
# reliability_diagram
# ----------------------------------------------------------------------------


def test_accuracy_bars_one_per_filled_bin(bins):
    ax = reliability_diagram(bins=bins).axes[0]
    bars = _container(ax, "Accuracy").patches
    filled = bins.count > 0
    assert len(bars) == int(filled.sum()) == 3
    np.testing.assert_allclose(
        [bar.get_height() for bar in bars], bins.accuracy[filled]
    )
    np.testing.assert_allclose(
        [bar.get_x() for bar in bars], bins.edges[:-1][filled]
    )
    np.testing.assert_allclose([bar.get_width() for bar in bars], 0.2)
    np.testing.assert_allclose([bar.get_y() for bar in bars], 0.0)


def test_gap_bars_span_accuracy_to_confidence(bins):
    ax = reliability_diagram(bins=bins).axes[0]
    bars = _container(ax, "Gap").patches
    filled = bins.count > 0
    assert len(bars) == 3
    for bar, acc, conf in zip(
        bars, bins.accuracy[filled], bins.confidence[filled]
    ):
        bottom, top = sorted([bar.get_y(), bar.get_y() + bar.get_height()])
        assert bar.get_y() == pytest.approx(acc)
        assert bottom == pytest.approx(min(acc, conf))
        assert top == pytest.approx(max(acc, conf))
        assert bar.get_hatch()


def test_identity_line_and_axes(bins):
    ax = reliability_diagram(bins=bins).axes[0]
    diagonal = _artist(ax.get_lines(), "identity")
    np.testing.assert_allclose(diagonal.get_xdata(), [0.0, 1.0])
    np.testing.assert_allclose(diagonal.get_ydata(), [0.0, 1.0])
    assert ax.get_xlim() == (0.0, 1.0)
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_xlabel() == "Confidence"
    assert ax.get_ylabel() == "Accuracy"


def test_ece_text_matches_bins(bins):
    ax = reliability_diagram(bins=bins).axes[0]
    text = _artist(ax.texts, "ece").get_text()
    assert bins.expected_calibration_error == pytest.approx(0.145)
    expected = f"{bins.expected_calibration_error * 100:.2f}%"
    assert expected in text
    assert "14.50%" in text


def test_histogram_fractions_and_average_lines(bins):
    figure = reliability_diagram(bins=bins)
    assert len(figure.axes) == 2
    ax = figure.axes[1]
    bars = _container(ax, "Samples").patches
    np.testing.assert_allclose(
        [bar.get_height() for bar in bars], bins.count / bins.total
    )
    np.testing.assert_allclose([bar.get_x() for bar in bars], bins.edges[:-1])
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(
        lines["Avg. confidence"].get_xdata(), bins.overall_confidence
    )
    np.testing.assert_allclose(
        lines["Avg. accuracy"].get_xdata(), bins.overall_accuracy
    )
    assert bins.overall_confidence == pytest.approx(0.72)
    assert bins.overall_accuracy == pytest.approx(0.595)


def test_without_histogram_and_with_title(bins):
    figure = reliability_diagram(
        bins=bins, show_histogram=False, title="Model A", figsize=(4, 4)
    )
    assert len(figure.axes) == 1
    assert figure.axes[0].get_title() == "Model A"
    np.testing.assert_allclose(figure.get_size_inches(), [4, 4])


def test_single_filled_bin_renders():
    bins = ReliabilityBins(
        edges=np.linspace(0.0, 1.0, 11),
        count=np.array([0.0] * 9 + [5.0]),
        confidence=np.array([NAN] * 9 + [0.95]),
        accuracy=np.array([NAN] * 9 + [1.0]),
    )
    figure = reliability_diagram(bins=bins)
    assert len(_container(figure.axes[0], "Accuracy").patches) == 1
    assert figure_to_png(figure).startswith(PNG_SIGNATURE)


def test_no_examples_raises():
    bins = ReliabilityBins(
        edges=np.linspace(0.0, 1.0, 3),
        count=np.zeros(2),
        confidence=np.full(2, NAN),
        accuracy=np.full(2, NAN),
    )
    with pytest.raises(ValueError, match="bins"):
        reliability_diagram(bins=bins)


def test_inconsistent_bins_raise(bins):
    bad = ReliabilityBins(
        edges=np.linspace(0.0, 1.0, 5),
        count=bins.count,
        confidence=bins.confidence,
        accuracy=bins.accuracy,
    )
    with pytest.raises(ValueError, match=r"bins\.edges"):
        reliability_diagram(bins=bad)


def test_neither_bins_nor_data_raises():
    with pytest.raises(ValueError, match="`bins`.*`y_true`.*`y_pred`"):
        reliability_diagram()


def test_missing_y_pred_raises():
    with pytest.raises(ValueError, match="y_pred=None"):
        reliability_diagram(np.array([0, 1]))


def test_bins_and_data_raises(bins):
    with pytest.raises(ValueError, match="not both"):
        reliability_diagram(
            np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]), bins=bins
        )


def test_wrong_bins_type_raises():
    with pytest.raises(TypeError, match="bins=.*dict"):
        reliability_diagram(bins={"edges": [0, 1]})


def test_from_labels_and_predictions():
    metrics = pytest.importorskip("keras_reliability.metrics")
    compute_bins = getattr(metrics, "reliability_bins", None)
    if not callable(compute_bins):
        pytest.skip("keras_reliability.metrics.reliability_bins unavailable")
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 3
    y_pred = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y_true = rng.integers(0, 4, size=200)

    figure = reliability_diagram(y_true, y_pred, num_bins=10)
    expected = compute_bins(y_true, y_pred, num_bins=10)
    bars = _container(figure.axes[0], "Accuracy").patches
    filled = expected.count > 0
    np.testing.assert_allclose(
        [bar.get_height() for bar in bars], expected.accuracy[filled]
    )
    text = _artist(figure.axes[0].texts, "ece").get_text()
    assert f"{expected.expected_calibration_error * 100:.2f}%" in text


def test_forwards_arguments_to_reliability_bins(bins, monkeypatch):
    metrics = pytest.importorskip("keras_reliability.metrics")
    calls = []

    def fake_reliability_bins(y_true, y_pred, **kwargs):
        calls.append((y_true, y_pred, kwargs))
        return bins

    monkeypatch.setattr(metrics, "reliability_bins", fake_reliability_bins)
    figure = reliability_diagram(
        "labels",
        "predictions",
        num_bins=5,
        binning="adaptive",
        from_logits=True,
        sample_weight="weights",
    )
    assert calls == [
        (
            "labels",
            "predictions",
            {
                "num_bins": 5,
                "binning": "adaptive",
                "from_logits": True,
                "sample_weight": "weights",
            },
        )
    ]
    assert len(_container(figure.axes[0], "Accuracy").patches) == 3


# ----------------------------------------------------------------------------
# figure_to_png / save_figure
# ----------------------------------------------------------------------------


def test_figure_to_png_returns_png_bytes(bins):
    png = figure_to_png(reliability_diagram(bins=bins), dpi=50)
    assert isinstance(png, bytes)
    assert png.startswith(PNG_SIGNATURE)


def test_figure_to_png_bad_arguments(bins):
    with pytest.raises(TypeError, match="figure="):
        figure_to_png("not a figure")
    with pytest.raises(ValueError, match="dpi=0"):
        figure_to_png(reliability_diagram(bins=bins), dpi=0)


def test_save_figure(bins, tmp_path):
    path = save_figure(reliability_diagram(bins=bins), tmp_path / "d.png")
    assert Path(path).read_bytes().startswith(PNG_SIGNATURE)


# ----------------------------------------------------------------------------
# calibration_history
# ----------------------------------------------------------------------------


@pytest.fixture
def history():
    return {
        "loss": [1.0, 0.8, 0.6, 0.5],
        "ece": [0.20, 0.15, 0.10, 0.08],
        # Computed every other epoch only, as a callback with a frequency.
        "val_ece": [0.25, NAN, 0.12, None],
        "accuracy": [0.5, 0.6, 0.7, 0.75],
    }


def _lines(figure):
    return {line.get_label(): line for line in figure.axes[0].get_lines()}


def test_history_default_keys_and_data(history):
    figure = calibration_history(history, title="Calibration")
    ax = figure.axes[0]
    lines = _lines(figure)
    assert list(lines) == ["ece", "val_ece"]
    np.testing.assert_allclose(lines["ece"].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(lines["ece"].get_ydata(), history["ece"])
    # NaN and None epochs are skipped, the others keep their epoch number.
    np.testing.assert_allclose(lines["val_ece"].get_xdata(), [1, 3])
    np.testing.assert_allclose(lines["val_ece"].get_ydata(), [0.25, 0.12])
    assert ax.get_xlabel() == "Epoch"
    assert ax.get_title() == "Calibration"
    assert figure_to_png(figure).startswith(PNG_SIGNATURE)


def test_history_calibration_error_suffix():
    figure = calibration_history(
        {"expected_calibration_error": [0.3, 0.2], "loss": [1.0, 0.5]}
    )
    assert list(_lines(figure)) == ["expected_calibration_error"]


def test_history_explicit_keys(history):
    assert list(_lines(calibration_history(history, "loss"))) == ["loss"]
    figure = calibration_history(history, keys=["val_ece", "loss"])
    assert list(_lines(figure)) == ["val_ece", "loss"]


def test_history_all_nan_key():
    figure = calibration_history({"ece": [NAN, NAN]})
    assert len(_lines(figure)["ece"].get_xdata()) == 0
    figure_to_png(figure)


def test_history_keras_history_object(history):
    keras = pytest.importorskip("keras")
    keras_history = keras.callbacks.History()
    keras_history.history = history
    assert list(_lines(calibration_history(keras_history))) == [
        "ece",
        "val_ece",
    ]


def test_history_missing_key_raises(history):
    with pytest.raises(ValueError, match="'val_mce'.*Available keys.*'ece'"):
        calibration_history(history, keys=["ece", "val_mce"])


def test_history_without_calibration_keys_raises():
    with pytest.raises(ValueError, match="Available keys: \\['loss'\\]"):
        calibration_history({"loss": [1.0]})


def test_history_empty_keys_raises(history):
    with pytest.raises(ValueError, match="keys=\\[\\]"):
        calibration_history(history, keys=[])


def test_history_wrong_type_raises():
    with pytest.raises(TypeError, match="history=\\[0.1, 0.2\\]"):
        calibration_history([0.1, 0.2])


# ----------------------------------------------------------------------------
# Lazy import
# ----------------------------------------------------------------------------


def test_import_does_not_load_matplotlib():
    result = _run_python(
        "import sys\n"
        "import keras_reliability\n"
        # Keras itself imports matplotlib when it is installed; only check
        # what importing the plotting package adds on top.
        "before = 'matplotlib' in sys.modules\n"
        "import keras_reliability.plotting\n"
        "print(before, 'matplotlib' in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split()[-2:]
    if before == "True":
        pytest.skip("`import keras_reliability` already loads matplotlib.")
    assert after == "False"


def test_plotting_package_alone_does_not_load_matplotlib():
    # Stands in for the top-level package so that its other imports (Keras,
    # which loads matplotlib itself) stay out of the picture.
    package_dir = str(REPO_ROOT / "keras_reliability")
    result = _run_python(
        "import sys, types\n"
        "package = types.ModuleType('keras_reliability')\n"
        f"package.__path__ = [{package_dir!r}]\n"
        "sys.modules['keras_reliability'] = package\n"
        "import keras_reliability.plotting\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n"
        "assert 'keras' not in sys.modules, 'keras was imported'\n"
    )
    assert result.returncode == 0, result.stderr


def test_missing_matplotlib_error_message():
    result = _run_python(
        "import sys\n"
        "sys.modules['matplotlib'] = None  # As if not installed.\n"
        "import keras_reliability.plotting as plotting\n"
        "try:\n"
        "    plotting.calibration_history({'ece': [0.1]})\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "requires matplotlib" in result.stdout
    assert "pip install keras-reliability[plot]" in result.stdout

