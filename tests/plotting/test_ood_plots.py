"""OOD score histograms and ROC curves."""

import keras
import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from keras_reliability.metrics import ood_auroc
from keras_reliability.metrics import ood_roc_curve
from keras_reliability.plotting import figure_to_png
from keras_reliability.plotting import ood_roc_curves
from keras_reliability.plotting import ood_score_histogram
from keras_reliability.plotting._matplotlib import new_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 1.0, 400), rng.normal(1.5, 1.0, 150)


def _container(ax, gid):
    matches = [c for c in ax.containers if c.patches and c.patches[0].get_gid() == gid]
    assert len(matches) == 1, [c.get_label() for c in ax.containers]
    return matches[0]


def _legend_texts(ax):
    legend = ax.get_legend()
    assert legend is not None
    texts = [text.get_text() for text in legend.get_texts()]
    return texts, legend.get_title().get_text()


# ----------------------------------------------------------------------------
# ood_score_histogram
# ----------------------------------------------------------------------------


def test_histogram_two_sets_of_bars_with_shared_edges(scores):
    figure = ood_score_histogram(*scores, num_bins=20)
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    bars_in, bars_out = _container(ax, "in"), _container(ax, "out")
    assert len(bars_in.patches) == len(bars_out.patches) == 20
    x_in = [bar.get_x() for bar in bars_in.patches]
    x_out = [bar.get_x() for bar in bars_out.patches]
    np.testing.assert_allclose(x_in, x_out)
    all_scores = np.concatenate(scores)
    assert x_in[0] == pytest.approx(all_scores.min())
    last = bars_in.patches[-1]
    assert last.get_x() + last.get_width() == pytest.approx(all_scores.max())


def test_histogram_is_density_normalised(scores):
    ax = ood_score_histogram(*scores, num_bins=30).axes[0]
    for gid, data in zip(("in", "out"), scores):
        bars = _container(ax, gid).patches
        area = sum(bar.get_height() * bar.get_width() for bar in bars)
        assert area == pytest.approx(1.0)
        # The two sets differ in size, so unnormalised counts would not be 1.
        assert max(bar.get_height() for bar in bars) < data.size


def test_histogram_legend_holds_labels_and_auroc(scores):
    figure = ood_score_histogram(
        *scores, name="energy", in_label="CIFAR-10", out_label="SVHN"
    )
    ax = figure.axes[0]
    texts, legend_title = _legend_texts(ax)
    assert texts == ["CIFAR-10 (n=400)", "SVHN (n=150)"]
    auroc = ood_auroc(*scores)
    assert 0.8 < auroc < 1.0
    assert f"{auroc:.4f}" in legend_title
    assert legend_title.startswith("energy")
    assert "energy score" in ax.get_xlabel()


def test_histogram_title_and_default_labels(scores):
    ax = ood_score_histogram(*scores, title="Energy on SVHN").axes[0]
    assert ax.get_title() == "Energy on SVHN"
    texts, _ = _legend_texts(ax)
    assert texts[0].startswith("in-distribution")
    assert texts[1].startswith("out-of-distribution")


def test_histogram_draws_into_given_axes(scores):
    figure = new_figure((8, 3))
    left, right = figure.subplots(1, 2)
    returned = ood_score_histogram(*scores, ax=right, num_bins=7)
    assert returned is figure
    assert len(right.containers) == 2
    assert len(right.containers[0].patches) == 7
    assert not left.containers


def test_histogram_accepts_backend_tensors(scores):
    tensor_in = keras.ops.convert_to_tensor(scores[0], dtype="float32")
    ax = ood_score_histogram(tensor_in, list(scores[1]), num_bins=5).axes[0]
    assert len(_container(ax, "in").patches) == 5


def test_histogram_to_png(scores):
    png = figure_to_png(ood_score_histogram(*scores))
    assert png[:8] == PNG_SIGNATURE
    assert len(png) > 1000


def test_histogram_bad_arguments(scores):
    with pytest.raises(ValueError, match="`num_bins`"):
        ood_score_histogram(*scores, num_bins=0)
    with pytest.raises(ValueError, match="`scores_out` is empty"):
        ood_score_histogram(scores[0], [])
    with pytest.raises(ValueError, match="`scores_in` must be finite"):
        ood_score_histogram([0.0, np.nan], scores[1])
    with pytest.raises(TypeError, match="`ax`"):
        ood_score_histogram(*scores, ax="left")


def test_histogram_constant_scores_warn():
    with pytest.warns(UserWarning, match="constant"):
        figure = ood_score_histogram([1.0, 1.0], [1.0], num_bins=3)
    _, legend_title = _legend_texts(figure.axes[0])
    assert "nan" in legend_title


# ----------------------------------------------------------------------------
# ood_roc_curves
# ----------------------------------------------------------------------------


@pytest.fixture
def curves(scores):
    scores_in, scores_out = scores
    rng = np.random.default_rng(1)
    return {
        "good": (scores_in, scores_out),
        "noisy": (scores_in + rng.normal(0, 2, scores_in.size), scores_out),
        "inverted": (-scores_in, -scores_out),
    }


def test_roc_one_line_per_entry_plus_diagonal(curves):
    figure = ood_roc_curves(curves)
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    assert len(ax.lines) == len(curves) + 1
    chance = [line for line in ax.lines if line.get_gid() == "chance"]
    assert len(chance) == 1
    np.testing.assert_array_equal(chance[0].get_xdata(), [0.0, 1.0])
    np.testing.assert_array_equal(chance[0].get_ydata(), [0.0, 1.0])


def test_roc_lines_are_the_curves_and_labels_hold_auroc(curves):
    ax = ood_roc_curves(curves).axes[0]
    texts, _ = _legend_texts(ax)
    lines = {line.get_gid(): line for line in ax.lines}
    aurocs = []
    for name, (scores_in, scores_out) in curves.items():
        fpr, tpr, _ = ood_roc_curve(scores_in, scores_out)
        np.testing.assert_array_equal(lines[name].get_xdata(), fpr)
        np.testing.assert_array_equal(lines[name].get_ydata(), tpr)
        auroc = ood_auroc(scores_in, scores_out)
        aurocs.append(auroc)
        label = f"{name} (AUROC = {auroc:.4f})"
        assert lines[name].get_label() == label
        assert label in texts
    # The three entries really differ, so a label mix-up would be caught.
    assert len({round(value, 4) for value in aurocs}) == 3
    assert aurocs[2] < 0.5 < aurocs[1] < aurocs[0]


def test_roc_axes_labels_limits_and_title(curves):
    ax = ood_roc_curves(curves, title="CIFAR-10 vs SVHN").axes[0]
    assert ax.get_xlabel() == "false positive rate (ID flagged as OOD)"
    assert ax.get_ylabel() == "true positive rate (OOD detected)"
    assert ax.get_xlim() == (0.0, 1.0)
    assert ax.get_ylim() == (0.0, 1.0)
    assert ax.get_title() == "CIFAR-10 vs SVHN"


def test_roc_draws_into_given_axes(curves):
    figure = new_figure((8, 4))
    left, right = figure.subplots(1, 2)
    assert ood_roc_curves(curves, ax=left) is figure
    assert len(left.lines) == 4
    assert not right.lines


def test_roc_to_png(curves):
    png = figure_to_png(ood_roc_curves(curves))
    assert png[:8] == PNG_SIGNATURE


def test_roc_bad_arguments(scores):
    with pytest.raises(TypeError, match="`curves` must be a dict"):
        ood_roc_curves([scores])
    with pytest.raises(ValueError, match="`curves` is empty"):
        ood_roc_curves({})
    with pytest.raises(TypeError, match=r"`curves\['a'\]` must be a pair"):
        ood_roc_curves({"a": scores[0]})
    with pytest.raises(ValueError, match=r"`curves\['b'\]`.*`scores_in` is empty"):
        ood_roc_curves({"a": scores, "b": ([], scores[1])})
    with pytest.raises(TypeError, match="`ax`"):
        ood_roc_curves({"a": scores}, ax=object())
