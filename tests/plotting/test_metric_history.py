"""Tests of `keras_reliability.plotting.metric_history`."""

import math

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_reliability.plotting import metric_history


def _line(ax):
    lines = ax.get_lines()
    assert len(lines) == 1
    return lines[0]


def test_one_panel_per_key_with_its_finite_values():
    history = {
        "val_ece": [0.12, math.nan, 0.05],
        "val_nll": [0.9, 0.7, 0.6],
        "ood_energy_auroc": [0.8, 0.85, None],
        "loss": [1.0, 0.5, 0.25],
    }
    figure = metric_history(history, columns=3)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == list(history)
    # 4 panels in a 2 x 3 grid: the last two cells are hidden.
    assert len(figure.axes) == 6 and len(visible) == 4
    line = _line(visible[0])
    assert line.get_gid() == "val_ece"
    np.testing.assert_array_equal(line.get_xdata(), [1, 3])
    np.testing.assert_allclose(line.get_ydata(), [0.12, 0.05])
    np.testing.assert_array_equal(_line(visible[2]).get_xdata(), [1, 2])
    # x labels on the bottom panel of each column.
    assert [ax.get_xlabel() for ax in visible] == ["", "epoch", "epoch", "epoch"]


def test_chosen_keys_in_order_and_a_key_never_computed():
    history = {"a": [1.0, 2.0], "b": [math.nan, math.nan], "c": [3.0, 1.0]}
    figure = metric_history(history, ["c", "b"], title="Run")
    assert [ax.get_title() for ax in figure.axes] == ["c", "b"]
    assert figure.get_suptitle() == "Run"
    assert figure.axes[1].get_lines() == []
    assert [text.get_text() for text in figure.axes[1].texts] == ["no value yet"]


def test_keras_history_object():
    class History:
        history = {"val_ece": [0.2, 0.1]}

    figure = metric_history(History())
    np.testing.assert_allclose(_line(figure.axes[0]).get_ydata(), [0.2, 0.1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"keys": []}, ValueError, r"`keys` must name at least one metric; received \[\]"),
        ({"keys": ["val_mce"]}, ValueError, r"\['val_mce'\] from `keys` not found"),
        ({"columns": 0}, ValueError, "`columns` must be a positive int; received 0"),
        ({"columns": 2.5}, ValueError, "`columns` must be a positive int; received 2.5"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        metric_history({"val_ece": [0.1]}, **kwargs)


def test_history_must_be_a_dict_or_history():
    with pytest.raises(TypeError, match="keras.callbacks.History"):
        metric_history([0.1, 0.2])
