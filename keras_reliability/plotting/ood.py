"""Out-of-distribution detection plots: score histograms and ROC curves.

Scores follow the library's convention: higher means more OOD.
"""

from collections.abc import Mapping

import numpy as np

from keras_reliability.arguments import check_positive_int
from keras_reliability.plotting import _matplotlib

# Colors from matplotlib's default cycle, spelled out so that the plot does not
# depend on (global) rcParams.
_IN_COLOR = "#1f77b4"
_OUT_COLOR = "#ff7f0e"
_CHANCE_COLOR = "#7f7f7f"


def ood_score_histogram(
    scores_in,
    scores_out,
    *,
    name=None,
    num_bins=50,
    ax=None,
    title=None,
    in_label="in-distribution",
    out_label="out-of-distribution",
    figsize=(6, 4),
):
    """Overlays the score histograms of in- and out-of-distribution data.

    Both histograms share the same bin edges and are normalised to unit area
    (densities), so sets of different sizes compare directly. The AUROC of
    telling them apart (`keras_reliability.metrics.ood_auroc`) is the title
    of the legend. A good detector shows two well separated humps, the OOD
    one to the right.

    Args:
        scores_in: scores of in-distribution examples, shape `(N,)` or
            `(N, 1)`; higher means more OOD. Numpy arrays, lists or backend
            tensors.
        scores_out: scores of out-of-distribution examples, shape `(M,)` or
            `(M, 1)`.
        name: optional name of the score (e.g. `"energy"`), used in the
            x-axis label and the legend title.
        num_bins: number of bins spanning all scores, >= 1.
        ax: optional matplotlib `Axes` to draw into; by default a new figure
            with one axes is created.
        title: optional title drawn above the plot.
        in_label: legend label of the in-distribution histogram.
        out_label: legend label of the out-of-distribution histogram.
        figsize: `(width, height)` in inches of the new figure; ignored when
            `ax` is given.

    Returns:
        The `matplotlib.figure.Figure` holding the plot (the figure of `ax`
        when given). The two histograms are bar containers (`num_bins` bars
        each, gids `"in"` and `"out"`) labelled with `in_label` and
        `out_label` followed by their number of examples.

    Raises:
        ValueError: for empty, mis-shaped or non-finite scores (naming
            `scores_in` or `scores_out`), or `num_bins < 1`.
        TypeError: if `ax` is not a matplotlib `Axes`.
        ImportError: if matplotlib is not installed.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> figure = ood_score_histogram(
    ...     rng.normal(0, 1, 1000), rng.normal(2, 1, 500), name="energy"
    ... )
    >>> figure.savefig("ood_scores.png")
    """
    from keras_reliability.metrics.ood import check_scores
    from keras_reliability.metrics.ood import ood_auroc

    num_bins = check_positive_int(num_bins, "num_bins")
    scores_in = check_scores(scores_in, "scores_in")
    scores_out = check_scores(scores_out, "scores_out")
    auroc = ood_auroc(scores_in, scores_out)
    figure, ax = _matplotlib.figure_and_axes(ax, figsize, "`ood_score_histogram`")

    edges = np.histogram_bin_edges(
        np.concatenate([scores_in, scores_out]), bins=num_bins
    )
    for scores, label, color, gid in (
        (scores_in, in_label, _IN_COLOR, "in"),
        (scores_out, out_label, _OUT_COLOR, "out"),
    ):
        density, _ = np.histogram(scores, bins=edges, density=True)
        ax.bar(
            edges[:-1],
            density,
            width=np.diff(edges),
            align="edge",
            color=color,
            alpha=0.5,
            edgecolor=color,
            linewidth=0.8,
            label=f"{label} (n={scores.size})",
            gid=gid,
        )
    score_name = f"{name} score" if name else "OOD score"
    ax.set_xlabel(f"{score_name} (higher = more OOD)")
    ax.set_ylabel("Density")
    legend_title = f"AUROC = {auroc:.4f}"
    if name:
        legend_title = f"{name}: {legend_title}"
    ax.legend(title=legend_title)
    if title is not None:
        ax.set_title(title)
    return figure


def ood_roc_curves(curves, *, ax=None, title=None, figsize=(5, 5)):
    """Draws the OOD detection ROC curve of one or more scores.

    One line per entry, labelled with its name and AUROC, over the dashed
    chance diagonal. OOD is the positive class: the x axis is the fraction
    of ID examples flagged as OOD, the y axis the fraction of OOD examples
    detected, as the threshold on the score (higher = more OOD) decreases.

    Args:
        curves: a dict mapping a name (e.g. the scorer, `"msp"`,
            `"energy"`) to a pair `(scores_in, scores_out)`, each accepted
            by `keras_reliability.metrics.ood_roc_curve`.
        ax: optional matplotlib `Axes` to draw into; by default a new figure
            with one axes is created.
        title: optional title drawn above the plot.
        figsize: `(width, height)` in inches of the new figure; ignored when
            `ax` is given.

    Returns:
        The `matplotlib.figure.Figure` holding the plot (the figure of `ax`
        when given). Each ROC line has the gid of its name and the label
        `"{name} (AUROC = 0.1234)"`; the diagonal has the gid `"chance"`.

    Raises:
        TypeError: if `curves` is not a dict of pairs, or `ax` not an `Axes`.
        ValueError: if `curves` is empty, or for bad scores (the message
            names the entry).
        ImportError: if matplotlib is not installed.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> scores_in, scores_out = rng.normal(0, 1, 1000), rng.normal(1, 1, 500)
    >>> figure = ood_roc_curves(
    ...     {"score": (scores_in, scores_out), "noisy": (scores_in, -scores_out)}
    ... )
    >>> figure.savefig("ood_roc.png")
    """
    from keras_reliability.metrics.ood import ood_auroc
    from keras_reliability.metrics.ood import ood_roc_curve

    entries = _check_curves(curves)
    lines = []
    for name, (scores_in, scores_out) in entries:
        try:
            fpr, tpr, _ = ood_roc_curve(scores_in, scores_out)
            auroc = ood_auroc(scores_in, scores_out)
        except ValueError as error:
            raise ValueError(f"`curves[{name!r}]`: {error}") from None
        lines.append((name, fpr, tpr, auroc))
    figure, ax = _matplotlib.figure_and_axes(ax, figsize, "`ood_roc_curves`")

    for name, fpr, tpr, auroc in lines:
        ax.plot(fpr, tpr, label=f"{name} (AUROC = {auroc:.4f})", gid=str(name))
    ax.plot(
        [0.0, 1.0],
        [0.0, 1.0],
        linestyle="--",
        color=_CHANCE_COLOR,
        label="chance",
        gid="chance",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (ID flagged as OOD)")
    ax.set_ylabel("true positive rate (OOD detected)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title is not None:
        ax.set_title(title)
    return figure


def _check_curves(curves):
    """Returns `curves` as a list of `(name, (scores_in, scores_out))`."""
    if not isinstance(curves, Mapping):
        raise TypeError(
            "`curves` must be a dict mapping a name to (scores_in, scores_out); "
            f"received {type(curves).__name__}."
        )
    if not curves:
        raise ValueError("`curves` is empty: pass at least one entry.")
    entries = []
    for name, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"`curves[{name!r}]` must be a pair (scores_in, scores_out); "
                f"received {type(pair).__name__}"
                + (f" of length {len(pair)}." if hasattr(pair, "__len__") else ".")
            )
        entries.append((name, tuple(pair)))
    return entries
