"""Tests of `keras_reliability.plotting.uncertainty_examples` and bands drawn into an axes."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.container import BarContainer
from matplotlib.image import AxesImage

from keras_reliability.plotting import uncertainty_bands
from keras_reliability.plotting import uncertainty_examples
from keras_reliability.plotting._matplotlib import new_figure
from keras_reliability.uncertainty import PredictiveUncertainty


@pytest.fixture
def result():
    """(N=4, T=20, C=3) Dirichlet samples, example 2 the least certain."""
    rng = np.random.default_rng(0)
    concentration = np.array([[30.0, 1, 1], [1, 20.0, 1], [2.0, 2, 2], [1, 1, 25.0]])
    return PredictiveUncertainty(np.stack([rng.dirichlet(a, size=20) for a in concentration]))


def _bar_heights(ax):
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    return [bar.get_height() for bar in bars.patches]


def test_one_row_per_example_image_beside_its_bars(result):
    images = np.arange(4 * 16, dtype="float32").reshape(4, 4, 4, 1)
    figure = uncertainty_examples(result, [2, 0], inputs=images, title="Least, most")
    assert len(figure.axes) == 4
    image_ax, bars_ax = figure.axes[0], figure.axes[1]
    (drawn,) = [artist for artist in image_ax.get_children() if isinstance(artist, AxesImage)]
    # Each image on its own [0, 1] scale, the channel axis dropped.
    expected = (images[2, ..., 0] - images[2].min()) / (images[2].max() - images[2].min())
    np.testing.assert_allclose(drawn.get_array(), expected)
    np.testing.assert_allclose(_bar_heights(bars_ax), result.mean[2])
    assert bars_ax.get_title().startswith("#2: entropy")
    assert f"{result.epistemic[2]:.3f}" in bars_ax.get_title()
    assert figure.axes[3].get_title().startswith("#0: entropy")
    # One legend, on the first row.
    assert bars_ax.get_legend() is not None and figure.axes[3].get_legend() is None
    assert figure.get_suptitle() == "Least, most"


def test_flat_inputs_are_drawn_with_image_shape(result):
    flat = np.random.default_rng(1).uniform(size=(4, 6)).astype("float32")
    figure = uncertainty_examples(result, [1], inputs=flat, image_shape=(2, 3))
    (drawn,) = [a for a in figure.axes[0].get_children() if isinstance(a, AxesImage)]
    assert drawn.get_array().shape == (2, 3)


def test_without_inputs_only_the_bars(result):
    figure = uncertainty_examples(result, np.array([3, 1, 0]))
    assert len(figure.axes) == 3
    np.testing.assert_allclose(_bar_heights(figure.axes[0]), result.mean[3])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"indices": []}, ValueError, "`indices` must name at least one example"),
        ({"indices": [4]}, IndexError, r"`index` must be an int in \[0, 4\); received 4"),
        (
            {"indices": [0], "inputs": np.zeros((3, 4, 4))},
            ValueError,
            r"one input per example of `result` \(4\); received 3",
        ),
        (
            {"indices": [0], "inputs": np.zeros((4, 6))},
            ValueError,
            r"Inputs of shape \(6,\) are not images; pass `image_shape`",
        ),
        (
            {"indices": [0], "inputs": np.zeros((4, 6)), "image_shape": (4, 2)},
            ValueError,
            r"shape \(6,\) cannot be viewed as `image_shape=\(4, 2\)`",
        ),
    ],
)
def test_bad_arguments(result, kwargs, error, match):
    with pytest.raises(error, match=match):
        uncertainty_examples(result, **kwargs)


def test_bands_draw_into_a_given_axes(result):
    figure = new_figure((8, 3))
    left, right = figure.subplots(1, 2)
    assert uncertainty_bands(result, 1, ax=right) is figure
    assert not left.containers
    np.testing.assert_allclose(_bar_heights(right), result.mean[1])
    with pytest.raises(TypeError, match="`ax` must be a matplotlib `Axes`"):
        uncertainty_bands(result, 1, ax="axes")
