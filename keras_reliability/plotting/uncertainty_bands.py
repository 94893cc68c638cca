"""Uncertainty bands: per-class predictive probability with its MC interval."""

import numpy as np

from keras_reliability.plotting import _matplotlib

_MEAN_COLOR = "#1f77b4"
_PREDICTED_COLOR = "#ff7f0e"
_INTERVAL_COLOR = "#000000"


def uncertainty_bands(
    result, index, *, level=0.95, class_names=None, title=None, ax=None, figsize=(6, 3.5)
):
    """Draws one example's predictive probabilities with their intervals.

    One bar per class shows the mean Monte-Carlo probability (the predicted
    class highlighted); a black whisker shows the central `level` percentile
    interval over the samples, the confidence band of MC dropout. The title
    reports the predictive entropy and its epistemic part.

    Args:
        result: a `keras_reliability.uncertainty.PredictiveUncertainty`.
        index: int, the example to draw.
        level: probability mass of the interval, in (0, 1).
        class_names: optional sequence of `num_classes` names for the x axis.
        title: optional title; by default the example's uncertainty figures.
        ax: optional matplotlib `Axes` to draw into; by default a new figure.
        figsize: `(width, height)` of the new figure in inches; ignored when
            `ax` is given.

    Returns:
        The `matplotlib.figure.Figure` holding the plot; the bars carry the label
        "Mean probability" and the whiskers the label "<level> interval".

    Raises:
        TypeError: if `result` is not a `PredictiveUncertainty`.
        IndexError: if `index` is out of range.
        ValueError: if `class_names` has the wrong length or `level` is not
            in (0, 1).
        ImportError: if matplotlib is not installed.

    Example:

    >>> result = predict_with_uncertainty(model, x_noise)
    >>> uncertainty_bands(result, 0, class_names=list("0123456789")).savefig("bands.png")
    """
    from keras_reliability.uncertainty import PredictiveUncertainty

    if not isinstance(result, PredictiveUncertainty):
        raise TypeError(
            "`result` must be a PredictiveUncertainty (from predict_with_uncertainty); "
            f"received {type(result).__name__}."
        )
    if (
        isinstance(index, bool)
        or not isinstance(index, (int, np.integer))
        or not -len(result) <= index < len(result)
    ):
        raise IndexError(f"`index` must be an int in [0, {len(result)}); received {index!r}.")
    num_classes = result.mean.shape[-1]
    if class_names is None:
        class_names = [str(k) for k in range(num_classes)]
    elif isinstance(class_names, (str, bytes)) or not hasattr(class_names, "__len__"):
        raise TypeError(
            f"`class_names` must be a sequence of {num_classes} names; received "
            f"class_names={class_names!r}."
        )
    elif len(class_names) != num_classes:
        raise ValueError(
            f"`class_names` must have {num_classes} entries (one per class); "
            f"received {len(class_names)}."
        )
    lower, upper = result.interval(level)
    mean = result.mean[index]
    lower, upper = lower[index], upper[index]
    predicted = int(np.argmax(mean))

    figure, ax = _matplotlib.figure_and_axes(ax, figsize, "`uncertainty_bands`")
    positions = np.arange(num_classes)
    colors = [_PREDICTED_COLOR if k == predicted else _MEAN_COLOR for k in positions]
    ax.bar(positions, mean, color=colors, label="Mean probability")
    # The mean can fall outside a percentile interval of skewed samples.
    below = np.maximum(mean - lower, 0.0)
    above = np.maximum(upper - mean, 0.0)
    ax.errorbar(
        positions,
        mean,
        yerr=np.stack([below, above]),
        fmt="none",
        ecolor=_INTERVAL_COLOR,
        capsize=3,
        label=f"{level:.0%} interval",
    )
    ax.set_xticks(positions)
    ax.set_xticklabels(class_names)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("Probability")
    if title is None:
        title = (
            f"Example {index}: entropy {result.predictive_entropy[index]:.3f}, "
            f"epistemic {result.epistemic[index]:.3f} nats (T={result.num_samples})"
        )
    ax.set_title(title)
    ax.legend(loc="best")  # Clear of the tallest bar, wherever it is.
    return figure
