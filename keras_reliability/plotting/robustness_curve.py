"""Accuracy against the attack budget: the robustness curve."""

from collections.abc import Mapping

import numpy as np

from keras_reliability.plotting import _matplotlib


def robustness_curve(accuracies, *, ax=None, title=None, xlabel="epsilon", figsize=(5, 4)):
    """Draws accuracy against the attack budget epsilon.

    Args:
        accuracies: the dict `{epsilon: accuracy}` returned by
            `keras_reliability.attacks.robust_accuracy`, or a dict
            `{name: {epsilon: accuracy}}` to compare several models or
            attacks (one line each).
        ax: optional matplotlib `Axes` to draw into; by default a new figure.
        title: optional title.
        xlabel: label of the x axis (e.g. `"epsilon (L-inf)"`).
        figsize: size of the new figure; ignored when `ax` is given.

    Returns:
        The `matplotlib.figure.Figure`. Each line has its name as gid
        (`"accuracy"` for a single curve), with markers at the budgets.

    Raises:
        ValueError: if `accuracies` is empty, an accuracy lies outside [0, 1]
            or an epsilon is negative.
        ImportError: if matplotlib is not installed.

    Example:

    >>> curve = robust_accuracy(model, x, y, PGD(0.1, input_range=(0, 1)), [0, 0.1, 0.2, 0.3])
    >>> figure = robustness_curve({"standard": curve})
    """
    curves = _check_curves(accuracies)
    figure, ax = _matplotlib.figure_and_axes(ax, figsize, "`robustness_curve`")
    for name, (epsilons, values) in curves.items():
        ax.plot(epsilons, values, marker="o", label=name, gid=name)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy under attack")
    ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return figure


def _check_curves(accuracies):
    if not isinstance(accuracies, Mapping) or not accuracies:
        raise ValueError(
            "`accuracies` must be a non-empty dict {epsilon: accuracy} or "
            f"{{name: {{epsilon: accuracy}}}}; received {accuracies!r}."
        )
    if not all(isinstance(value, Mapping) for value in accuracies.values()):
        accuracies = {"accuracy": accuracies}
    curves = {}
    for name, curve in accuracies.items():
        if not curve:
            raise ValueError(f"`accuracies[{name!r}]` is empty.")
        try:
            order = sorted(curve)
            epsilons = np.asarray(order, dtype=np.float64)
            values = np.asarray([curve[e] for e in order], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`accuracies[{name!r}]` must map numeric budgets to numeric accuracies; "
                f"received {dict(curve)!r} ({type(error).__name__}: {error})."
            ) from None
        if np.any(epsilons < 0) or np.any(~np.isfinite(epsilons)):
            raise ValueError(f"`accuracies[{name!r}]` has an invalid epsilon: {sorted(curve)}.")
        if np.any((values < 0) | (values > 1)) or np.any(~np.isfinite(values)):
            raise ValueError(
                f"`accuracies[{name!r}]` has accuracies outside [0, 1]: {values.tolist()}."
            )
        curves[str(name)] = (epsilons, values)
    return curves
