"""Calibration metrics over the course of training."""

from keras_reliability.plotting import _matplotlib
from keras_reliability.plotting._history import check_keys
from keras_reliability.plotting._history import finite_points
from keras_reliability.plotting._history import history_dict

_DEFAULT_SUFFIXES = ("ece", "calibration_error")


def calibration_history(history, keys=None, *, title=None, figsize=(6, 4)):
    """Plots calibration metrics against the training epoch.

    Args:
        history: A `keras.callbacks.History` (as returned by `model.fit()`)
            or a plain dict mapping metric names to per-epoch values.
        keys: A metric name or a list of metric names to plot. Defaults to
            every key in `history` ending in `"ece"` or
            `"calibration_error"` (e.g. `"ece"`, `"val_ece"`).
        title: Optional title drawn above the plot.
        figsize: `(width, height)` of the figure in inches.

    Returns:
        A `matplotlib.figure.Figure` with one line per key, labelled with the
        key. Epochs are numbered from 1. Non-finite or `None` values (e.g.
        epochs on which a metric was not computed) are skipped, and the
        remaining points are joined and marked.

    Raises:
        TypeError: If `history` is neither a `History` nor a dict.
        ValueError: If no calibration metric is found in `history`, `keys`
            is empty, or a requested key is missing.
        ImportError: If matplotlib is not installed.

    Example:

    >>> history = model.fit(x, y, epochs=10, validation_split=0.2)
    >>> figure = calibration_history(history)
    >>> figure.savefig("ece.png")

    >>> calibration_history({"val_ece": [0.12, 0.08, float("nan"), 0.05]})
    <Figure size 600x400 with 1 Axes>
    """
    history = history_dict(history)
    keys = _resolve_keys(history, keys)

    figure = _matplotlib.new_figure(figsize, what="`calibration_history`")
    from matplotlib.ticker import MaxNLocator

    ax = figure.subplots()
    for key in keys:
        epochs, values = finite_points(history[key], key)
        ax.plot(epochs, values, marker="o", markersize=4, label=key, gid=key)

    # Epochs are whole numbers; avoid ticks such as 2.5.
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Calibration error")
    ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title is not None:
        ax.set_title(title)
    return figure


def _resolve_keys(history, keys):
    available = sorted(history)
    if keys is None:
        keys = [key for key in history if key.endswith(_DEFAULT_SUFFIXES)]
        if not keys:
            raise ValueError(
                "No calibration metric found in `history`: expected a key "
                f"ending in one of {list(_DEFAULT_SUFFIXES)}. Pass `keys` "
                f"explicitly. Available keys: {available}"
            )
        return keys

    keys = check_keys(keys)
    if not keys:
        raise ValueError(
            "Expected `keys` to name at least one metric. "
            f"Received: keys={keys!r}. Available keys: {available}"
        )
    for key in keys:
        if key not in history:
            raise ValueError(
                f"Key {key!r} from `keys` not found in `history`. " f"Available keys: {available}"
            )
    return keys
