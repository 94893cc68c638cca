"""Argument checks shared across keras_reliability, with messages that name the argument.

Each check returns the value in a normalised form (e.g. a Python `int` for
a numpy integer) or raises an error whose message names the argument and
the received value, prefixed with the caller's name when `owner` is given,
e.g. "FGSM: `seed` must be None or an integer in 0..4294967295; received -1.".
"""

import inspect
import numbers

import numpy as np

# Keras' `SeedGenerator` stores seeds as uint32.
MAX_SEED = 2**32 - 1


def _prefix(owner):
    return f"{owner}: " if owner else ""


def _is_int(value):
    # `bool` is an `int` subclass, but True is never meant as a count.
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _is_number(value, positive):
    """Whether `value` is a finite real number > 0 (`positive`) or >= 0."""
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and bool(np.isfinite(value))
        and (value > 0 if positive else value >= 0)
    )


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
    if not _is_int(value) or value < 1:
        accepted = "a positive integer or None" if allow_none else "a positive integer"
        raise ValueError(f"{_prefix(owner)}`{name}` must be {accepted}; received {value!r}.")
    return int(value)


def check_int_in_range(value, name, low, high, *, allow_none=False, owner=None):
    """Returns `value` as an int if it is an integer in `low..high` (inclusive).

    Args:
        value: the received argument.
        name: the argument's name, for the message.
        low: the smallest accepted value.
        high: the largest accepted value.
        allow_none: whether None is accepted (and returned).
        owner: optional name of the class, prefixed to the message.
    """
    if value is None and allow_none:
        return None
    if not _is_int(value) or not low <= value <= high:
        accepted = f"an integer in {low}..{high}"
        if allow_none:
            accepted = "None or " + accepted
        raise ValueError(f"{_prefix(owner)}`{name}` must be {accepted}; received {value!r}.")
    return int(value)


def check_seed(seed, name="seed", *, bounded=True, owner=None):
    """Returns a random seed as a Python int (or None), or raises a `ValueError`.

    Checked up front because `keras.random.SeedGenerator` reports a negative
    or too large seed as an `OverflowError` and refuses numpy integers.
    `bounded=False` is for seeds of numpy's generators, which take any
    integer >= 0.
    """
    if bounded:
        return check_int_in_range(seed, name, 0, MAX_SEED, allow_none=True, owner=owner)
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ValueError(
            f"{_prefix(owner)}`{name}` must be None or an integer >= 0; received {seed!r}."
        )
    return None if seed is None else int(seed)


def check_number(value, name, *, positive, owner=None):
    """Returns `value` as a float if it is a finite number > 0 (or >= 0)."""
    if not _is_number(value, positive):
        accepted = "a positive number" if positive else "a number >= 0"
        raise ValueError(f"{_prefix(owner)}`{name}` must be {accepted}; received {value!r}.")
    return float(value)


def check_numbers(values, name, *, positive, owner=None):
    """Returns `values` as a list of floats: finite numbers > 0 (or >= 0).

    Args:
        values: a non-empty list, tuple or 1-D numpy array. A string is not
            accepted, though it is a sequence (of letters, not numbers).
        name: the argument's name, for the message.
        positive: whether 0 is refused.
        owner: optional name of the class, prefixed to the message.
    """
    valid = (
        (isinstance(values, (list, tuple)) or (isinstance(values, np.ndarray) and values.ndim == 1))
        and len(values) > 0
        and all(_is_number(value, positive) for value in values)
    )
    if not valid:
        accepted = "positive numbers" if positive else "numbers >= 0"
        raise ValueError(
            f"{_prefix(owner)}`{name}` must be a non-empty list of finite {accepted}; "
            f"received {values!r}."
        )
    return [float(value) for value in values]


def check_str(value, name, *, owner=None):
    """Returns `value` if it is a string (e.g. a prefix of log keys); raises a `TypeError`.

    Checked in constructors: a log-key prefix that is not a string would
    only fail later, when the keys are built, with an error about `+`.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"{_prefix(owner)}`{name}` must be a string; received {value!r} of type "
            f"{type(value).__name__}."
        )
    return value


def check_keyword_options(options, name, function, *, supplied=(), owner=None):
    """Returns `options` as a dict of keyword arguments that `function` takes.

    Checked before `function` is called, so that a misspelled option is
    reported under the argument that holds it, with the accepted names,
    rather than as a `TypeError` from deep inside the call.

    Args:
        options: None (no options) or a dict from keyword names to values.
        name: the argument's name, for the message.
        function: the callable the options go to, e.g. a class.
        supplied: keywords that the caller passes itself, which `options`
            may not repeat.
        owner: optional name of the class, prefixed to the message.

    Raises:
        TypeError: if `options` is not a dict or None, or holds a key that
            `function` does not take (as Python reports an unexpected
            keyword argument).
    """
    prefix = _prefix(owner)
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(
            f"{prefix}`{name}` must be a dict of keyword arguments or None; received "
            f"{options!r} of type {type(options).__name__}."
        )
    accepted = _keyword_names(function)
    if accepted is not None:
        accepted = [keyword for keyword in accepted if keyword not in supplied]
    unexpected = [
        key
        for key in options
        if key in supplied or (accepted is not None and key not in accepted)
    ]
    if unexpected:
        target = getattr(function, "__name__", repr(function))
        takes = ", ".join(repr(keyword) for keyword in accepted) if accepted else "none"
        raise TypeError(
            f"{prefix}`{name}` holds keys that {target} does not take: "
            f"{', '.join(repr(key) for key in unexpected)}; it takes: {takes}."
        )
    return dict(options)


def _keyword_names(function):
    """The names `function` takes as keywords; None when it takes any (`**kwargs`)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in keywords]
