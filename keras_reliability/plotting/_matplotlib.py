"""Lazy access to matplotlib.

matplotlib is an optional dependency, so it is imported only when a plot is
actually requested. We never import `matplotlib.pyplot`: figures are built as
plain `matplotlib.figure.Figure` objects backed by the Agg canvas, which keeps
plotting non-interactive, free of global state and safe to call from training
loops and background threads.
"""

import io
import math
import numbers
import os

from keras_reliability import files

_INSTALL_HINT = (
    "{what} requires matplotlib. Install it with "
    "`pip install keras-reliability[plot]`."
)


def import_matplotlib(what="Plotting"):
    """Imports and returns the matplotlib classes used by this package.

    Args:
        what: Name of the feature that needs matplotlib, used in the error
            message.

    Returns:
        A tuple `(Figure, FigureCanvasAgg)`.

    Raises:
        ImportError: If matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(_INSTALL_HINT.format(what=what)) from e
    return Figure, FigureCanvasAgg


def new_figure(figsize, what="Plotting"):
    """Creates a `Figure` attached to an Agg canvas (no pyplot involved).

    Args:
        figsize: `(width, height)` of the figure in inches.
        what: Name of the feature that needs matplotlib, used in the error
            message.

    Returns:
        A `matplotlib.figure.Figure` using constrained layout.

    Raises:
        ValueError: If `figsize` is not two finite positive numbers (None
            takes matplotlib's default size).
    """
    check_figsize(figsize)
    Figure, FigureCanvasAgg = import_matplotlib(what)
    figure = Figure(figsize=figsize, layout="constrained")
    # Attaching the canvas explicitly makes `savefig` and `draw` work without
    # consulting (or mutating) the global backend selection.
    FigureCanvasAgg(figure)
    return figure


def check_figsize(figsize, name="figsize"):
    """Raises a ValueError naming `name` unless it is None or two sizes > 0."""
    if figsize is None:
        return
    valid = (
        isinstance(figsize, (tuple, list))
        and len(figsize) == 2
        and all(
            isinstance(size, numbers.Real)
            and not isinstance(size, bool)
            and math.isfinite(size)
            and size > 0
            for size in figsize
        )
    )
    if not valid:
        raise ValueError(
            f"`{name}` must be a pair (width, height) of positive, finite sizes "
            f"in inches; received {name}={figsize!r}."
        )


def _check_figure_and_dpi(figure, dpi):
    if not hasattr(figure, "savefig"):
        raise TypeError(
            "Expected `figure` to be a `matplotlib.figure.Figure`. "
            f"Received: figure={figure!r} (of type {type(figure).__name__})"
        )
    if (
        isinstance(dpi, bool)
        or not isinstance(dpi, (int, float))
        or not math.isfinite(dpi)
        or dpi <= 0
    ):
        raise ValueError(
            f"Expected `dpi` to be a positive number. Received: dpi={dpi!r}"
        )


def figure_to_png(figure, dpi=100):
    """Renders a matplotlib figure to PNG bytes.

    Handy for logging diagrams (e.g. to TensorBoard or an experiment tracker)
    without touching the file system or pyplot.

    Args:
        figure: A `matplotlib.figure.Figure`, e.g. as returned by
            `reliability_diagram`.
        dpi: Resolution in dots per inch. Defaults to `100`.

    Returns:
        The PNG-encoded image as `bytes`.

    Raises:
        TypeError: If `figure` is not a matplotlib figure.
        ValueError: If `dpi` is not a positive number.

    Example:

    >>> figure = reliability_diagram(bins=bins)
    >>> png = figure_to_png(figure)
    >>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    _check_figure_and_dpi(figure, dpi)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(figure, filepath, dpi=100):
    """Saves a matplotlib figure to `filepath`, atomically.

    The format is inferred from the file extension (`.png`, `.pdf`, `.svg`,
    ...; without one, matplotlib's `savefig.format`). Parent directories
    must already exist. The figure is rendered in memory, then written
    through a temporary file that replaces `filepath` in one step: a reader
    never sees half a file, and when the write fails (a full disk, a
    read-only directory) a file already at `filepath` is left as it was.

    Args:
        figure: A `matplotlib.figure.Figure`.
        filepath: Destination path (`str` or `os.PathLike`).
        dpi: Resolution in dots per inch for raster formats. Defaults to
            `100`.

    Returns:
        The path the figure was written to, as a `str`.

    Raises:
        TypeError: If `figure` is not a matplotlib figure.
        ValueError: If `dpi` is not a positive number, or the extension of
            `filepath` is not a format matplotlib writes.
        OSError: If the file cannot be written; the message names
            `filepath` and the reason (the error keeps its errno, e.g.
            `FileNotFoundError` for a missing directory).

    Example:

    >>> figure = reliability_diagram(bins=bins)
    >>> save_figure(figure, "reliability.png")
    'reliability.png'
    """
    _check_figure_and_dpi(figure, dpi)
    if isinstance(filepath, bytes) or not isinstance(filepath, (str, os.PathLike)):
        raise TypeError(
            "`filepath` must be a path (a str or os.PathLike); received "
            f"filepath={filepath!r} (of type {type(filepath).__name__})."
        )
    filepath = os.fspath(filepath)
    if not filepath:
        raise ValueError("`filepath` is empty; pass the path of the file to write.")
    extension = os.path.splitext(filepath)[1][1:].lower()
    supported = figure.canvas.get_supported_filetypes()
    if extension and extension not in supported:
        raise ValueError(
            f"`filepath` has the extension {extension!r}, which is not a format "
            f"matplotlib writes ({', '.join(sorted(supported))}). Received: "
            f"filepath={filepath!r}"
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format=extension or None, dpi=dpi)
    try:
        files.write_atomically(filepath, buffer.getvalue())
    except OSError as error:
        reason = files.os_error_reason(error)
        directory = os.path.dirname(os.path.abspath(filepath))
        if not os.path.isdir(directory):
            reason += f" (the directory {directory!r} must exist)"
        raise files.os_error_with_message(
            error,
            f"Could not save the figure to `filepath`: {reason}. Received: filepath={filepath!r}",
        ) from error
    return filepath


def figure_and_axes(ax, figsize, what):
    """A new figure with one axes, or the given `ax` and its figure."""
    if ax is None:
        figure = new_figure(figsize, what=what)
        return figure, figure.subplots()
    import_matplotlib(what)
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(
            "`ax` must be a matplotlib `Axes` or None; "
            f"received {ax!r} (of type {type(ax).__name__})."
        )
    try:
        figure = ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10 has no `root`.
        figure = ax.figure
    return figure, ax
