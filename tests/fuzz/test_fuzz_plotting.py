"""Fuzz of the plotting functions' argument checks.

Valid arguments must give a matplotlib figure whose drawn data are the
reference numbers (bar heights of a reliability diagram = per-bin accuracy,
ROC line = `ood_roc_curve`, robustness line = the accuracies given);
invalid ones a ValueError or TypeError naming the argument (IndexError for
an out-of-range `index`, as documented), before anything is drawn.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

pytest.importorskip("matplotlib")

from keras_reliability import (
    metrics,
    plotting,
)
from keras_reliability.uncertainty import PredictiveUncertainty

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


def check_every(
    fuzz,
    entry,
    argument,
    variants,
    make_call,
    failures,
    allowed=(ValueError, TypeError),
):
    """Appends to `failures` each invalid variant that gives no clear error."""
    for kind, bad in variants.items():
        try:
            fuzz.clear_error(
                entry, argument, lambda bad=bad: make_call(bad), allowed=allowed
            )
        except AssertionError as error:
            failures.append(f"[{argument}: {kind}] {error}")


RNG = np.random.default_rng(5)
Y_PRED = RNG.dirichlet(np.ones(3), 20).astype(np.float32)
Y_TRUE = RNG.integers(0, 3, 20)
SCORES_IN, SCORES_OUT = RNG.normal(size=10), RNG.normal(size=8) + 1
RESULT = PredictiveUncertainty(RNG.dirichlet(np.ones(3), (5, 4)))


# Valid arguments draw the reference numbers ----------------------------------------


def reference_accuracy_per_filled_bin(num_bins):
    """Accuracy of each non-empty bin `(lo, hi]` (edges k / num_bins in float32)."""
    confidence = Y_PRED.max(axis=1).astype(np.float64)
    correct = Y_PRED.argmax(axis=1) == Y_TRUE
    edges = np.linspace(0, 1, num_bins + 1).astype(np.float32).astype(np.float64)
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    return [correct[index == b].mean() for b in range(num_bins) if np.any(index == b)]


@budget(6)
@given(num_bins=st.sampled_from([1, 5, 15]), show_histogram=st.booleans())
def test_reliability_diagram_draws_the_bins(fuzz, num_bins, show_histogram):
    figure = plotting.reliability_diagram(
        Y_TRUE, Y_PRED, num_bins=num_bins, show_histogram=show_histogram
    )
    bars = [patch for patch in figure.axes[0].patches if patch.get_gid() == "accuracy"]
    fuzz.reference(
        "reliability_diagram",
        [bar.get_height() for bar in bars],
        reference_accuracy_per_filled_bin(num_bins),
        atol=1e-12,
    )
    fuzz.invariant(
        "reliability_diagram",
        len(figure.axes) == (2 if show_histogram else 1),
        f"{len(figure.axes)} axes with show_histogram={show_histogram}",
    )


@budget(6)
@given(
    scores_in=hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(-5, 5)),
    scores_out=hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(-5, 5)),
)
def test_ood_roc_curves_draw_the_curve(fuzz, scores_in, scores_out):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constant scores
        figure = plotting.ood_roc_curves({"score": (scores_in, scores_out)})
        fpr, tpr, _ = metrics.ood_roc_curve(scores_in, scores_out)
    line = next(line for line in figure.axes[0].lines if line.get_gid() == "score")
    fuzz.reference(
        "ood_roc_curves",
        {"fpr": line.get_xdata(), "tpr": line.get_ydata()},
        {"fpr": fpr, "tpr": tpr},
        atol=0.0,
    )


@budget(6)
@given(curve=st.dictionaries(st.floats(0, 1), st.floats(0, 1), min_size=1, max_size=5))
def test_robustness_curve_draws_the_accuracies(fuzz, curve):
    figure = plotting.robustness_curve(curve)
    line = figure.axes[0].lines[0]
    epsilons = sorted(curve)
    fuzz.reference(
        "robustness_curve",
        {"x": line.get_xdata(), "y": line.get_ydata()},
        {"x": epsilons, "y": [curve[e] for e in epsilons]},
        atol=0.0,
    )


# Invalid arguments -----------------------------------------------------------------

FIGSIZES = {
    "str": "ab",
    "one number": (1,),
    "negative": (-1, 2),
    "zero": (0, 1),
    "NaN": (np.nan, 2),
    "int": 3,
    "str pair": ("a", "b"),
}
BAD_AXES = {"str": "a", "int": 3, "list": [1], "object": object()}


def test_figure_arguments_raise_clear_error(fuzz):
    failures = []
    calls = {
        "reliability_diagram": lambda **kw: plotting.reliability_diagram(
            Y_TRUE, Y_PRED, **kw
        ),
        "ood_score_histogram": lambda **kw: plotting.ood_score_histogram(
            SCORES_IN, SCORES_OUT, **kw
        ),
        "ood_roc_curves": lambda **kw: plotting.ood_roc_curves(
            {"a": (SCORES_IN, SCORES_OUT)}, **kw
        ),
        "robustness_curve": lambda **kw: plotting.robustness_curve(
            {0: 1.0, 0.1: 0.5}, **kw
        ),
        "uncertainty_bands": lambda **kw: plotting.uncertainty_bands(RESULT, 0, **kw),
        "calibration_history": lambda **kw: plotting.calibration_history(
            {"val_ece": [0.1, 0.2]}, **kw
        ),
    }
    for name, call in calls.items():
        check_every(
            fuzz,
            name,
            "figsize",
            FIGSIZES,
            lambda bad, call=call: call(figsize=bad),
            failures,
        )
        if name not in ("reliability_diagram", "calibration_history"):
            check_every(
                fuzz,
                name,
                "ax",
                BAD_AXES,
                lambda bad, call=call: call(ax=bad),
                failures,
            )
    for name in ("reliability_diagram", "ood_score_histogram"):
        check_every(
            fuzz,
            name,
            "num_bins",
            {
                "0": 0,
                "negative": -1,
                "str": "a",
                "float": 2.5,
                "None": None,
                "bool": True,
            },
            lambda bad, name=name: calls[name](num_bins=bad),
            failures,
        )
    assert not failures, "\n".join(failures)


def test_data_arguments_raise_clear_error(fuzz):
    failures = []
    bins = metrics.reliability_bins(Y_TRUE, Y_PRED)
    check_every(
        fuzz,
        "reliability_diagram",
        "bins",
        {
            "str": "a",
            "int": 3,
            "empty": dataclasses.replace(bins, count=np.zeros(15)),
            "short edges": dataclasses.replace(bins, edges=np.zeros(3)),
        },
        lambda bad: plotting.reliability_diagram(bins=bad),
        failures,
    )
    check_every(
        fuzz,
        "reliability_diagram",
        "y_true",
        {"missing": None},
        lambda bad: plotting.reliability_diagram(bad, Y_PRED),
        failures,
    )
    check_every(
        fuzz,
        "reliability_diagram",
        "y_pred",
        {"NaN": np.full_like(Y_PRED, np.nan)},
        lambda bad: plotting.reliability_diagram(Y_TRUE, bad),
        failures,
    )
    check_every(
        fuzz,
        "reliability_diagram",
        "binning",
        {"unknown": "x"},
        lambda bad: plotting.reliability_diagram(Y_TRUE, Y_PRED, binning=bad),
        failures,
    )
    check_every(
        fuzz,
        "robustness_curve",
        "accuracies",
        {
            "str": "a",
            "None": None,
            "int": 3,
            "empty": {},
            "above 1": {0: 2.0},
            "negative epsilon": {-1: 0.5},
            "NaN": {0: np.nan},
            "str epsilon": {"a": 0.5},
            "empty curve": {"m": {}},
            "list": [0.5],
            "str accuracy": {0: "high"},
        },
        plotting.robustness_curve,
        failures,
    )
    check_every(
        fuzz,
        "ood_roc_curves",
        "curves",
        {
            "str": "a",
            "None": None,
            "int": 3,
            "empty": {},
            "not a pair": {"a": 3},
            "one array": {"a": (SCORES_IN,)},
            "None scores": {"a": (SCORES_IN, None)},
            "str scores": {"a": (SCORES_IN, "x")},
        },
        plotting.ood_roc_curves,
        failures,
    )
    check_every(
        fuzz,
        "ood_score_histogram",
        "scores_in",
        {"None": None, "empty": np.zeros(0)},
        lambda bad: plotting.ood_score_histogram(bad, SCORES_OUT),
        failures,
    )
    assert not failures, "\n".join(failures)


def test_uncertainty_plot_arguments_raise_clear_error(fuzz):
    failures = []
    check_every(
        fuzz,
        "uncertainty_bands",
        "result",
        {"None": None, "str": "a", "int": 3, "array": Y_PRED},
        lambda bad: plotting.uncertainty_bands(bad, 0),
        failures,
    )
    check_every(
        fuzz,
        "uncertainty_bands",
        "index",
        {
            "too large": 5,
            "too small": -6,
            "str": "a",
            "float": 1.5,
            "None": None,
            "bool": True,
        },
        lambda bad: plotting.uncertainty_bands(RESULT, bad),
        failures,
        allowed=(ValueError, TypeError, IndexError),
    )
    check_every(
        fuzz,
        "uncertainty_bands",
        "level",
        {"0": 0, "1": 1, "above 1": 1.5, "str": "a", "None": None, "NaN": np.nan},
        lambda bad: plotting.uncertainty_bands(RESULT, 0, level=bad),
        failures,
    )
    check_every(
        fuzz,
        "uncertainty_bands",
        "class_names",
        {"too short": ["a"], "too long": ["a", "b", "c", "d"], "int": 3},
        lambda bad: plotting.uncertainty_bands(RESULT, 0, class_names=bad),
        failures,
    )
    check_every(
        fuzz,
        "uncertainty_examples",
        "indices",
        {
            "None": None,
            "str": "a",
            "empty": [],
            "too large": [5],
            "too small": [-9],
            "float": [1.5],
            "str list": ["a"],
        },
        lambda bad: plotting.uncertainty_examples(RESULT, bad),
        failures,
        allowed=(ValueError, TypeError, IndexError),
    )
    check_every(
        fuzz,
        "uncertainty_examples",
        "inputs",
        {"str": "a", "wrong count": np.zeros((3, 4)), "nested": [[1]]},
        lambda bad: plotting.uncertainty_examples(RESULT, [0], inputs=bad),
        failures,
    )
    check_every(
        fuzz,
        "uncertainty_examples",
        "image_shape",
        {
            "wrong size": (3,),
            "str": "a",
            "too many pixels": (2, 3),
            "negative": (-1, 4),
            "float": (2.5, 2),
        },
        lambda bad: plotting.uncertainty_examples(
            RESULT, [0], inputs=np.zeros((5, 4)), image_shape=bad
        ),
        failures,
    )
    check_every(
        fuzz,
        "uncertainty_examples",
        "row_height",
        {"0": 0, "negative": -1, "str": "a", "None": None, "NaN": np.nan},
        lambda bad: plotting.uncertainty_examples(RESULT, [0], row_height=bad),
        failures,
    )
    assert not failures, "\n".join(failures)


def test_history_plot_arguments_raise_clear_error(fuzz):
    failures = []
    for name, plot in (
        ("calibration_history", plotting.calibration_history),
        ("metric_history", plotting.metric_history),
    ):
        check_every(
            fuzz,
            name,
            "history",
            {
                "None": None,
                "str": "a",
                "int": 3,
                "list": [1, 2],
                "str values": {"val_ece": "a"},
                "nested values": {"val_ece": [[1, 2]]},
            },
            plot,
            failures,
        )
        check_every(
            fuzz,
            name,
            "keys",
            {
                "unknown": "nope",
                "unknown in list": ["nope"],
                "int": 3,
                "int list": [3],
                "empty": [],
            },
            lambda bad, plot=plot: plot({"val_ece": [0.1]}, keys=bad),
            failures,
        )
    check_every(
        fuzz,
        "metric_history",
        "columns",
        {"0": 0, "negative": -1, "str": "a", "None": None, "float": 2.5},
        lambda bad: plotting.metric_history({"loss": [0.1]}, columns=bad),
        failures,
    )
    check_every(
        fuzz,
        "metric_history",
        "panel_size",
        {"str": "ab", "zero": (0, 1), "None": None, "one": (1,)},
        lambda bad: plotting.metric_history({"loss": [0.1]}, panel_size=bad),
        failures,
    )
    assert not failures, "\n".join(failures)


def test_figure_output_arguments_raise_clear_error(fuzz, tmp_path):
    failures = []
    figure = plotting.robustness_curve({0: 1.0})
    check_every(
        fuzz,
        "figure_to_png",
        "dpi",
        {"0": 0, "negative": -1, "str": "a", "None": None, "NaN": np.nan, "bool": True},
        lambda bad: plotting.figure_to_png(figure, dpi=bad),
        failures,
    )
    check_every(
        fuzz,
        "figure_to_png",
        "figure",
        {"None": None, "str": "a", "int": 3},
        plotting.figure_to_png,
        failures,
    )
    check_every(
        fuzz,
        "save_figure",
        "figure",
        {"None": None, "str": "a", "int": 3},
        lambda bad: plotting.save_figure(bad, str(tmp_path / "x.png")),
        failures,
    )
    check_every(
        fuzz,
        "save_figure",
        "filepath",
        {
            "None": None,
            "int": 3,
            "missing folder": str(tmp_path / "nope" / "x.png"),
            "unknown format": str(tmp_path / "x.unknownext"),
            "empty": "",
        },
        lambda bad: plotting.save_figure(figure, bad),
        failures,
        allowed=(ValueError, TypeError, OSError),
    )
    assert not failures, "\n".join(failures)
