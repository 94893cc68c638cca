"""Any logged metrics over the course of training, one small panel each."""

import math

from keras_reliability.plotting import _matplotlib
from keras_reliability.plotting._history import check_keys
from keras_reliability.plotting._history import finite_points
from keras_reliability.plotting._history import history_dict


def metric_history(history, keys=None, *, columns=3, title=None, panel_size=(3.2, 2.4)):
    """Plots each logged metric against the epoch, in a grid of small panels.

    Each key gets its own axes, so metrics of different scales (an ECE of
    0.02 beside a negative log-likelihood of 0.4 or an AUROC of 0.95) stay
    readable. Non-finite values, such as the NaN that reliability callbacks
    log on epochs they skip, are left out and the remaining points joined.

    Args:
        history: a `keras.callbacks.History` (as returned by `model.fit()`)
            or a dict mapping metric names to per-epoch values.
        keys: metric names to plot, in order; default every key of
            `history`.
        columns: positive int, the number of panels per row.
        title: optional title above the grid.
        panel_size: `(width, height)` of one panel in inches.

    Returns:
        A `matplotlib.figure.Figure` with one axes per key, titled with the
        key; the line of each has the key as gid. A key never computed shows
        "no value yet".

    Raises:
        TypeError: if `history` is neither a `History` nor a dict.
        ValueError: if `keys` is empty or names a key missing from `history`,
            or `columns` is not a positive int.
        ImportError: if matplotlib is not installed.

    Example:

    >>> history = model.fit(x, y, epochs=10, callbacks=[CalibrationCallback((x_val, y_val))])
    >>> metric_history(history, ["val_ece", "val_nll", "val_brier"]).savefig("metrics.png")
    """
    history = history_dict(history)
    keys = list(history) if keys is None else check_keys(keys)
    if not keys:
        raise ValueError(
            f"`keys` must name at least one metric; received {keys!r}. "
            f"Available keys: {sorted(history)}"
        )
    missing = [key for key in keys if key not in history]
    if missing:
        raise ValueError(
            f"Keys {missing} from `keys` not found in `history`. "
            f"Available keys: {sorted(history)}"
        )
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"`columns` must be a positive int; received {columns!r}.")

    _matplotlib.check_figsize(panel_size, "panel_size")
    if panel_size is None:
        raise ValueError("`panel_size` must be a pair (width, height) in inches; received None.")
    columns = min(columns, len(keys))
    rows = math.ceil(len(keys) / columns)
    width, height = panel_size
    figure = _matplotlib.new_figure(
        (width * columns, height * rows + (0.4 if title else 0.0)), what="`metric_history`"
    )
    from matplotlib.ticker import MaxNLocator

    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        epochs, values = finite_points(history[key], key)
        if len(values):
            ax.plot(epochs, values, marker="o", markersize=3, gid=key)
        else:
            ax.text(0.5, 0.5, "no value yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(key, fontsize=9)
        # Epochs are whole numbers; avoid ticks such as 2.5.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(True, alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    for ax in axes[len(keys) - columns : len(keys)]:
        ax.set_xlabel("epoch", fontsize=8)
    if title:
        figure.suptitle(title)
    return figure
