"""Plots for model reliability, built on plain matplotlib figures.

matplotlib is optional and imported only when a plot is created, so importing
this package is cheap. Install it with `pip install keras-reliability[plot]`.
"""

from keras_reliability.plotting._matplotlib import figure_to_png
from keras_reliability.plotting._matplotlib import save_figure
from keras_reliability.plotting.calibration_history import calibration_history
from keras_reliability.plotting.metric_history import metric_history
from keras_reliability.plotting.ood import ood_roc_curves
from keras_reliability.plotting.ood import ood_score_histogram
from keras_reliability.plotting.reliability_diagram import reliability_diagram
from keras_reliability.plotting.robustness_curve import robustness_curve
from keras_reliability.plotting.uncertainty_bands import uncertainty_bands
from keras_reliability.plotting.uncertainty_examples import uncertainty_examples

__all__ = [
    "calibration_history",
    "figure_to_png",
    "metric_history",
    "ood_roc_curves",
    "ood_score_histogram",
    "reliability_diagram",
    "robustness_curve",
    "save_figure",
    "uncertainty_bands",
    "uncertainty_examples",
]
