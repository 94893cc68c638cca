"""Argument checks shared across keras_reliability, with messages that name the argument."""

import numbers

import numpy as np


def check_positive_int(value, name, *, allow_none=False, owner=None):
    """Returns `value` as an int, or raises a `ValueError` naming it.

    Args:
        value: the received argument.
        name: the argument's name, for the message.
        allow_none: whether None is accepted (and returned).
        owner: optional name of the class, prefixed to the message.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        prefix = f"{owner}: " if owner else ""
        accepted = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{prefix}`{name}` must be {accepted}; received {value!r}.")
    return int(value)


def check_number(value, name, *, positive, owner=None):
    """Returns `value` as a float if it is a finite number > 0 (or >= 0)."""
    valid = (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and np.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not valid:
        prefix = f"{owner}: " if owner else ""
        accepted = "a positive number" if positive else "a number >= 0"
        raise ValueError(f"{prefix}`{name}` must be {accepted}; received {value!r}.")
    return float(value)
