"""Tests of `keras_reliability.plotting.uncertainty_bands`."""

import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from keras_reliability.plotting import figure_to_png
from keras_reliability.plotting import uncertainty_bands
from keras_reliability.uncertainty import PredictiveUncertainty

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def result():
    """(N=4, T=41, C=5) Dirichlet samples; T = 41 puts the 5% / 95% (and
    2.5% / 97.5%) quantiles exactly on sorted samples."""
    rng = np.random.default_rng(0)
    concentration = np.array(
        [
            [20.0, 5.0, 3.0, 1.0, 1.0],
            [1.0, 1.0, 10.0, 2.0, 2.0],
            [3.0, 3.0, 3.0, 3.0, 3.0],
            [1.0, 1.0, 1.0, 1.0, 30.0],
        ]
    )
    samples = np.stack([rng.dirichlet(a, size=41) for a in concentration])
    return PredictiveUncertainty(samples)


def _bars(ax):
    matches = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(matches) == 1
    return matches[0]


def _errorbar(ax):
    matches = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(matches) == 1
    return matches[0]


def _whiskers(container):
    """(x, bottom, top) of each whisker, from the drawn vertical segments."""
    _, _, bar_lines = container.lines
    assert len(bar_lines) == 1
    segments = bar_lines[0].get_segments()
    x = np.array([segment[0][0] for segment in segments])
    bottom = np.array([min(segment[0][1], segment[1][1]) for segment in segments])
    top = np.array([max(segment[0][1], segment[1][1]) for segment in segments])
    return x, bottom, top


@pytest.mark.parametrize("index", [0, 1, 3])
def test_bars_are_mean_probabilities(result, index):
    figure = uncertainty_bands(result, index)
    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    ax = figure.axes[0]
    bars = _bars(ax)
    assert bars.get_label() == "Mean probability"
    assert len(bars.patches) == 5
    mean = result.samples[index].mean(axis=0)
    np.testing.assert_allclose([bar.get_height() for bar in bars.patches], mean, rtol=1e-12)
    np.testing.assert_allclose([bar.get_y() for bar in bars.patches], 0.0)
    centers = [bar.get_x() + bar.get_width() / 2 for bar in bars.patches]
    np.testing.assert_allclose(centers, np.arange(5))
    assert ax.get_ylim() == (0.0, 1.0)


@pytest.mark.parametrize("level, low_rank", [(0.9, 2), (0.95, 1)])
def test_whiskers_span_the_interval(result, level, low_rank):
    index = 1
    ax = uncertainty_bands(result, index, level=level).axes[0]
    container = _errorbar(ax)
    assert container.get_label() == f"{level:.0%} interval"
    x, bottom, top = _whiskers(container)
    np.testing.assert_allclose(x, np.arange(5))
    # Independent of interval(): with T = 41 the (1 - level) / 2 quantile is
    # the sorted sample of rank (41 - 1) * (1 - level) / 2 = low_rank.
    ordered = np.sort(result.samples[index], axis=0)
    lower, upper = ordered[low_rank], ordered[-1 - low_rank]
    mean = result.samples[index].mean(axis=0)
    assert np.all((lower <= mean) & (mean <= upper))  # so the whiskers are the interval
    np.testing.assert_allclose(bottom, lower, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(top, upper, rtol=1e-9, atol=1e-12)
    # Caps sit at both ends of each whisker.
    _, caplines, _ = container.lines
    assert len(caplines) == 2
    cap_y = sorted((np.asarray(line.get_ydata(), float) for line in caplines), key=np.sum)
    np.testing.assert_allclose(cap_y[0], lower, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cap_y[1], upper, rtol=1e-9, atol=1e-12)


def test_whisker_reaches_mean_outside_interval():
    # Class 1 has probability 1 in 2 of 40 samples: its mean, 0.05, lies
    # above the 50% interval [0, 0]; the whisker is drawn from 0 to the mean
    # rather than with a negative length.
    samples = np.zeros((1, 40, 2))
    samples[0, :, 0] = 1.0
    samples[0, :2] = [0.0, 1.0]
    result = PredictiveUncertainty(samples)
    ax = uncertainty_bands(result, 0, level=0.5).axes[0]
    _, bottom, top = _whiskers(_errorbar(ax))
    np.testing.assert_allclose(bottom, [0.95, 0.0])
    np.testing.assert_allclose(top, [1.0, 0.05])


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_predicted_class_bar_is_highlighted(result, index):
    bars = _bars(uncertainty_bands(result, index).axes[0]).patches
    predicted = int(np.argmax(result.samples[index].mean(axis=0)))
    colors = [to_rgba(bar.get_facecolor()) for bar in bars]
    others = {c for k, c in enumerate(colors) if k != predicted}
    assert len(others) == 1
    assert colors[predicted] not in others


def test_class_names_are_tick_labels(result):
    names = ["cat", "dog", "bird", "fish", "frog"]
    ax = uncertainty_bands(result, 2, class_names=names).axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == names
    np.testing.assert_allclose(ax.get_xticks(), np.arange(5))


def test_default_tick_labels_are_class_indices(result):
    ax = uncertainty_bands(result, 0).axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == ["0", "1", "2", "3", "4"]


def test_default_title_reports_entropies(result):
    index = 3
    title = uncertainty_bands(result, index).axes[0].get_title()
    mean = result.samples[index].mean(axis=0)
    entropy = -sum(p * math.log(p) for p in mean if p > 0)
    assert "entropy" in title
    assert f"{entropy:.3f}" in title
    assert f"{result.epistemic[index]:.3f}" in title
    assert "T=41" in title


def test_custom_title(result):
    ax = uncertainty_bands(result, 0, title="Noise input").axes[0]
    assert ax.get_title() == "Noise input"


def test_negative_index_counts_from_the_end(result):
    ax = uncertainty_bands(result, -1).axes[0]
    heights = [bar.get_height() for bar in _bars(ax).patches]
    np.testing.assert_allclose(heights, result.samples[-1].mean(axis=0))


def test_figsize(result):
    figure = uncertainty_bands(result, 0, figsize=(4, 2))
    np.testing.assert_allclose(figure.get_size_inches(), [4, 2])


def test_figure_to_png(result):
    png = figure_to_png(uncertainty_bands(result, 0), dpi=40)
    assert isinstance(png, bytes)
    assert png.startswith(PNG_SIGNATURE)


# ----------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.full((2, 3, 4), 0.25), None, {"mean": [0.5, 0.5]}])
def test_result_must_be_predictive_uncertainty(bad):
    with pytest.raises(TypeError, match="PredictiveUncertainty"):
        uncertainty_bands(bad, 0)


@pytest.mark.parametrize("index", [4, 100, -5])
def test_index_out_of_range(result, index):
    with pytest.raises(IndexError, match=str(index)):
        uncertainty_bands(result, index)


@pytest.mark.parametrize("index", [1.0, "0", True])
def test_index_must_be_int(result, index):
    with pytest.raises(IndexError, match="index"):
        uncertainty_bands(result, index)


@pytest.mark.parametrize("names", [["a", "b"], list("abcdef")])
def test_wrong_number_of_class_names(result, names):
    with pytest.raises(ValueError, match=f"5 entries.*received {len(names)}"):
        uncertainty_bands(result, 0, class_names=names)


@pytest.mark.parametrize("level", [1.2, 0.0, 1.0, -0.5])
def test_bad_level(result, level):
    with pytest.raises(ValueError, match="level"):
        uncertainty_bands(result, 0, level=level)
