"""Reliability diagram: per-bin accuracy against confidence."""

import numpy as np

from keras_reliability.plotting import _matplotlib

# Colors from matplotlib's default cycle, spelled out so that the plot does not
# depend on (global) rcParams.
_ACCURACY_COLOR = "#1f77b4"
_GAP_COLOR = "#d62728"
_CONFIDENCE_COLOR = "#ff7f0e"
_DIAGONAL_COLOR = "#7f7f7f"


def reliability_diagram(
    y_true=None,
    y_pred=None,
    *,
    bins=None,
    num_bins=15,
    binning="uniform",
    from_logits=False,
    sample_weight=None,
    title=None,
    show_histogram=True,
    figsize=(5, 6),
):
    """Draws a reliability diagram of top-label confidence against accuracy.

    The top axes show, for each confidence bin, the accuracy of the examples
    in that bin as a bar, and the gap to the bin's mean confidence as a
    hatched red bar stacked on top of it. A perfectly calibrated model has
    bars that reach the dashed diagonal. The expected calibration error (ECE)
    is printed in the corner. The optional bottom axes show the fraction of
    examples per bin, with the overall mean confidence and accuracy marked.

    Pass either precomputed `bins` or both `y_true` and `y_pred`; in the
    latter case the bins are computed with
    `keras_reliability.metrics.reliability_bins`.

    The result is a plain `matplotlib.figure.Figure` (no pyplot): it is not
    shown on screen, holds no global state and is safe to create inside
    training loops or threads. Save it with `figure.savefig(...)` or convert
    it with `keras_reliability.plotting.figure_to_png`.

    Args:
        y_true: Labels, integer class indices or one-hot. Required unless
            `bins` is given.
        y_pred: Predicted probabilities (or logits, see `from_logits`) of
            shape `(batch_size, num_classes)`, or `(batch_size,)` /
            `(batch_size, 1)` for binary models. Required unless `bins` is
            given.
        bins: A precomputed `ReliabilityBins`. Mutually exclusive with
            `y_true`/`y_pred`.
        num_bins: Number of confidence bins. Ignored when `bins` is given.
        binning: `"uniform"` (equal-width bins) or any other strategy
            supported by `reliability_bins`. Ignored when `bins` is given.
        from_logits: Whether `y_pred` holds logits. Ignored when `bins` is
            given.
        sample_weight: Optional per-example weights. Ignored when `bins` is
            given.
        title: Optional title drawn above the diagram.
        show_histogram: Whether to add the bottom axes with the fraction of
            examples per bin. Defaults to `True`.
        figsize: `(width, height)` of the figure in inches.

    Returns:
        A `matplotlib.figure.Figure`. Its first axes is the reliability
        diagram; the second, when `show_histogram=True`, the histogram.
        Artists carry labels (`"Accuracy"`, `"Gap"`, `"Samples"`,
        `"Avg. confidence"`, `"Avg. accuracy"`) and gids (`"identity"`,
        `"ece"`) so they can be found programmatically.

    Raises:
        ValueError: If neither or both of `bins` and `y_true`/`y_pred` are
            given, or if `bins` is inconsistent or holds no examples.
        TypeError: If `bins` is not a `ReliabilityBins`.
        ImportError: If matplotlib is not installed.

    Example:

    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_pred = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    >>> figure = reliability_diagram(y_true, y_pred, num_bins=10)
    >>> figure.savefig("reliability.png")
    """
    bins = _resolve_bins(
        y_true,
        y_pred,
        bins=bins,
        num_bins=num_bins,
        binning=binning,
        from_logits=from_logits,
        sample_weight=sample_weight,
    )
    figure = _matplotlib.new_figure(figsize, what="`reliability_diagram`")
    if show_histogram:
        # Not `sharex`: that would hide the diagram's tick labels, and both
        # axes span [0, 1] anyway.
        diagram_ax, histogram_ax = figure.subplots(
            2, 1, gridspec_kw={"height_ratios": [3, 1]}
        )
    else:
        diagram_ax, histogram_ax = figure.subplots(), None

    _draw_diagram(diagram_ax, bins)
    if title is not None:
        diagram_ax.set_title(title)
    if histogram_ax is not None:
        _draw_histogram(histogram_ax, bins)
    return figure


def _resolve_bins(y_true, y_pred, *, bins, **kwargs):
    """Returns validated `ReliabilityBins` from either calling convention."""
    # Imported here rather than at module level so that importing
    # `keras_reliability.plotting` stays cheap and does not pull in the
    # metrics package (and with it the Keras backend).
    from keras_reliability.metrics.reliability_bins import ReliabilityBins

    has_data = y_true is not None or y_pred is not None
    if bins is not None and has_data:
        raise ValueError(
            "Pass either `bins` or both `y_true` and `y_pred`, not both. "
            f"Received: bins={type(bins).__name__}, "
            f"y_true={_describe(y_true)}, y_pred={_describe(y_pred)}"
        )
    if bins is None:
        if y_true is None or y_pred is None:
            raise ValueError(
                "Pass either `bins` or both `y_true` and `y_pred`. "
                f"Received: bins=None, y_true={_describe(y_true)}, "
                f"y_pred={_describe(y_pred)}"
            )
        from keras_reliability.metrics import reliability_bins

        bins = reliability_bins(y_true, y_pred, **kwargs)

    if not isinstance(bins, ReliabilityBins):
        raise TypeError(
            "Expected `bins` to be a `ReliabilityBins` instance. "
            f"Received: bins={bins!r} (of type {type(bins).__name__})"
        )
    _check_bins(bins)
    return bins


def _describe(value):
    """Short description of an array-like for error messages."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"<{type(value).__name__} of shape {tuple(shape)}>"
    return f"<{type(value).__name__}>"


def _check_bins(bins):
    num_bins = bins.num_bins
    if np.shape(bins.edges) != (num_bins + 1,):
        raise ValueError(
            "Expected `bins.edges` to have `num_bins + 1` entries "
            f"({num_bins + 1}). Received: bins.edges with shape "
            f"{np.shape(bins.edges)}"
        )
    for name in ("confidence", "accuracy"):
        shape = np.shape(getattr(bins, name))
        if shape != (num_bins,):
            raise ValueError(
                f"Expected `bins.{name}` to have shape ({num_bins},), like "
                f"`bins.count`. Received: bins.{name} with shape {shape}"
            )
    if not bins.total > 0:
        raise ValueError(
            "Cannot draw a reliability diagram for `bins` with no examples. "
            f"Received: bins.count={bins.count!r} (total={bins.total})"
        )


def _filled(bins):
    """Mask of bins that hold examples and have finite statistics."""
    return (
        (np.asarray(bins.count) > 0)
        & np.isfinite(bins.accuracy)
        & np.isfinite(bins.confidence)
    )


def _draw_diagram(ax, bins):
    edges = np.asarray(bins.edges, dtype=float)
    accuracy = np.asarray(bins.accuracy, dtype=float)
    confidence = np.asarray(bins.confidence, dtype=float)
    # Empty bins have NaN statistics; drawing them would only add invisible
    # (or, for some backends, broken) patches.
    filled = _filled(bins)
    left = edges[:-1][filled]
    width = np.diff(edges)[filled]

    ax.bar(
        left,
        accuracy[filled],
        width=width,
        align="edge",
        color=_ACCURACY_COLOR,
        edgecolor="black",
        linewidth=0.8,
        label="Accuracy",
        gid="accuracy",
    )
    # Stacked from accuracy up (or down) to confidence, so the red area is
    # the miscalibration of each bin.
    ax.bar(
        left,
        confidence[filled] - accuracy[filled],
        bottom=accuracy[filled],
        width=width,
        align="edge",
        color=_GAP_COLOR,
        alpha=0.3,
        edgecolor=_GAP_COLOR,
        hatch="//",
        linewidth=0.8,
        label="Gap",
        gid="gap",
    )
    ax.plot(
        [0.0, 1.0],
        [0.0, 1.0],
        linestyle="--",
        color=_DIAGONAL_COLOR,
        label="Perfect calibration",
        gid="identity",
    )
    ax.text(
        0.96,
        0.04,
        f"ECE = {bins.expected_calibration_error * 100:.2f}%",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize="large",
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9},
        gid="ece",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Accuracy")
    ax.legend(loc="upper left")


def _draw_histogram(ax, bins):
    edges = np.asarray(bins.edges, dtype=float)
    fraction = np.asarray(bins.count, dtype=float) / bins.total
    ax.bar(
        edges[:-1],
        fraction,
        width=np.diff(edges),
        align="edge",
        color=_ACCURACY_COLOR,
        edgecolor="black",
        linewidth=0.8,
        label="Samples",
        gid="samples",
    )
    ax.axvline(
        bins.overall_confidence,
        color=_CONFIDENCE_COLOR,
        linestyle="--",
        linewidth=2,
        label="Avg. confidence",
        gid="avg_confidence",
    )
    ax.axvline(
        bins.overall_accuracy,
        color="black",
        linestyle="-",
        linewidth=2,
        label="Avg. accuracy",
        gid="avg_accuracy",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, max(float(fraction.max()), 1e-12) * 1.1)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Fraction of samples")
    ax.legend(loc="upper left", fontsize="small")
