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


def finite_points(values):
    """Returns `(epochs, values)` with 1-based epochs and non-finite dropped."""
    values = np.array(
        [math.nan if value is None else float(value) for value in values],
        dtype=float,
    )
    epochs = np.arange(1, len(values) + 1)
    finite = np.isfinite(values)
    return epochs[finite], values[finite]
