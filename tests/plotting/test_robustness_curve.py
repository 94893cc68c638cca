"""Tests of `keras_reliability.plotting.robustness_curve`."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure

from keras_reliability.plotting import figure_to_png
from keras_reliability.plotting import robustness_curve


def test_single_curve_plots_accuracy_against_sorted_epsilons():
    figure = robustness_curve({0.3: 0.5, 0.0: 0.99, 0.1: 0.9}, title="PGD")
    assert isinstance(figure, Figure)
    (line,) = figure.axes[0].lines
    assert line.get_gid() == "accuracy"
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.1, 0.3])
    np.testing.assert_allclose(line.get_ydata(), [0.99, 0.9, 0.5])
    assert figure.axes[0].get_title() == "PGD"
    assert figure.axes[0].get_legend() is None
    assert figure_to_png(figure).startswith(b"\x89PNG\r\n\x1a\n")


def test_several_curves_get_one_line_and_a_legend_entry_each():
    figure = robustness_curve(
        {"standard": {0: 0.99, 0.3: 0.0}, "adversarial": {0: 0.98, 0.1: 0.95, 0.3: 0.9}}
    )
    ax = figure.axes[0]
    assert [line.get_gid() for line in ax.lines] == ["standard", "adversarial"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "standard",
        "adversarial",
    ]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.98, 0.95, 0.9])


def test_draws_into_a_given_axes():
    from matplotlib.figure import Figure as NewFigure

    figure = NewFigure()
    ax = figure.subplots()
    assert robustness_curve({0: 1.0, 0.1: 0.5}, ax=ax) is figure
    assert len(ax.lines) == 1


@pytest.mark.parametrize(
    "accuracies, message",
    [
        ({}, "non-empty"),
        ([0.9, 0.8], "non-empty dict"),
        ({0: 1.2}, r"outside \[0, 1\]"),
        ({-0.1: 0.5}, "invalid epsilon"),
        ({"a": {}}, r"accuracies\['a'\].*empty"),
    ],
)
def test_bad_input_raises_naming_the_argument(accuracies, message):
    with pytest.raises(ValueError, match=message):
        robustness_curve(accuracies)
