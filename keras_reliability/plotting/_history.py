"""Reading per-epoch values out of a Keras `History` or a dict."""

import math
from collections.abc import Mapping

import numpy as np


def history_dict(history):
    """Returns the `{name: values}` dict behind `history`."""
    # `keras.callbacks.History` is duck-typed so that plotting does not need
    # to import Keras.
    if not isinstance(history, Mapping):
        inner = getattr(history, "history", None)
        if not isinstance(inner, Mapping):
            raise TypeError(
                "Expected `history` to be a `keras.callbacks.History` or a "
                "dict of per-epoch values. "
                f"Received: history={history!r} "
                f"(of type {type(history).__name__})"
            )
        history = inner
    return history


def check_keys(keys):
    """`keys` as a list of names: a str or an iterable of str."""
    if isinstance(keys, str):
        return [keys]
    try:
        keys = list(keys)
    except TypeError:
        raise TypeError(
            f"`keys` must be a metric name or a list of names; received keys={keys!r}."
        ) from None
    wrong = [key for key in keys if not isinstance(key, str)]
    if wrong:
        raise TypeError(
            f"`keys` must hold metric names (str); received {wrong[0]!r} in keys={keys!r}."
        )
    return keys


def finite_points(values, key=None):
    """Returns `(epochs, values)` with 1-based epochs and non-finite dropped.

    Raises:
        ValueError: naming `history[key]` when `values` is not a sequence of
            numbers (None counts as a missing value).
    """
    where = "`history`" if key is None else f"`history[{key!r}]`"
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(
            f"{where} must be a sequence of per-epoch numbers; received {values!r}."
        )
    try:
        values = np.array(
            [math.nan if value is None else float(value) for value in values],
            dtype=float,
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where} must be a sequence of per-epoch numbers; could not read it "
            f"({type(error).__name__}: {error})."
        ) from None
    epochs = np.arange(1, len(values) + 1)
    finite = np.isfinite(values)
    return epochs[finite], values[finite]
