"""Shared machinery of the property-based fuzz suite.

Every public entry point is fuzzed with hypothesis under one property:
given valid inputs it returns the number of an independent float64 numpy
reference (within a tolerance stated in the test), and given invalid inputs
it raises a `ValueError` or `TypeError` whose message names the offending
argument. Anything else (a `KeyError`, an `IndexError`, a backend error, a
message that does not say which argument is wrong, or no error at all) is a
failure.

The `fuzz` fixture records every example per entry point as tried, clear
error, equal to the reference, invariant held (for randomised outputs such
as APGD or Square Attack, which have no closed-form reference) or failed;
the table is printed at the end of the session.

Hypothesis settings are the `keras_reliability_fuzz` profile: few examples
(the machine is small and each backend runs the suite), no deadline (the
first call of a backend compiles), derandomised so that CI is reproducible.
`FUZZ_MAX_EXAMPLES` (default 30) scales every test's budget for a local,
longer run: a module asks for `budget(n)`, i.e. `n * FUZZ_MAX_EXAMPLES / 30`
examples (see `budget` in each module; test modules cannot import this file
under `--import-mode=importlib`, so they read the registered profile).
"""

import os
import re

import hypothesis
import numpy as np
import pytest

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "30"))

hypothesis.settings.register_profile(
    "keras_reliability_fuzz",
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[
        hypothesis.HealthCheck.too_slow,
        hypothesis.HealthCheck.data_too_large,
        hypothesis.HealthCheck.filter_too_much,
    ],
)


# Keras appends the call's arguments to errors raised inside `Layer.call`
# ("Arguments received by X.call(): inputs=..."): that text names every
# argument, so it is cut off before looking for the argument's name.
_KERAS_ARGUMENTS = re.compile(r"Arguments received by", re.DOTALL)
_KERAS_PREAMBLE = re.compile(
    r"Exception encountered when calling [\w.]+\(\)\.", re.DOTALL
)


def own_message(error):
    """The part of an error message written by the raiser."""
    message = str(error)
    message = _KERAS_ARGUMENTS.split(message)[0]
    message = _KERAS_PREAMBLE.sub("", message)
    return re.sub(r"\x1b\[[0-9;]*m", "", message).strip()


def names_argument(message, argument):
    """Whether `message` names `argument` (or one of several names).

    Accepted: the name in backticks (also as `` `name[...]` ``,
    `` `name.attr` `` or `` `name labels` ``), as `name=`, or in quotes
    (`'name'`) for names longer than two letters (a dict key `'x'` is not
    the argument `x`). A bare word is not enough: "Unknown attack 'f'"
    mentions an attack, not the argument.
    """
    for name in (argument,) if isinstance(argument, str) else argument:
        escaped = re.escape(name)
        if re.search(rf"`{escaped}(`|\[|\.| )", message):
            return True
        if re.search(rf"(?<![\w.]){escaped}=", message):
            return True
        if len(name) > 2 and re.search(rf"(['\"]){escaped}\1", message):
            return True
    return False


class Recorder:
    """Per-entry-point counts and the two assertions of the property.

    The counts live in the session's `config.fuzz_counts` (tests/conftest.py),
    which sums the workers' counts under pytest-xdist and prints the table.
    """

    def __init__(self, counts):
        self.counts = counts

    def _fail(self, entry, message):
        self.counts[entry]["failed"] += 1
        raise AssertionError(f"{entry}: {message}")

    def clear_error(self, entry, argument, call, *, allowed=(ValueError, TypeError)):
        """Calls `call()`, which must raise an `allowed` error naming `argument`.

        Returns the error. Fails (AssertionError) on any other exception, a
        message that does not name the argument, or no exception.
        """
        self.counts[entry]["tried"] += 1
        try:
            result = call()
        except allowed as error:
            message = own_message(error)
            if not names_argument(message, argument):
                self._fail(
                    entry,
                    f"{type(error).__name__} does not name `{argument}`: {message[:400]!r}",
                )
            self.counts[entry]["clear error"] += 1
            return error
        except Exception as error:  # noqa: BLE001 - the point of the check
            self._fail(
                entry,
                f"internal error {type(error).__module__}.{type(error).__name__} "
                f"instead of a clear error naming `{argument}`: {own_message(error)[:400]!r}",
            )
        self._fail(
            entry, f"no error for an invalid `{argument}`; returned {_short(result)}"
        )

    def reference(self, entry, actual, expected, *, atol, rtol=0.0):
        """`actual` must equal the float64 `expected` within `atol + rtol * |expected|`."""
        self.counts[entry]["tried"] += 1
        try:
            if isinstance(expected, dict):
                assert isinstance(actual, dict) and set(actual) == set(expected), (
                    f"keys {sorted(actual)} != {sorted(expected)}"
                )
                for key in expected:
                    np.testing.assert_allclose(
                        np.asarray(actual[key], np.float64),
                        np.asarray(expected[key], np.float64),
                        atol=atol,
                        rtol=rtol,
                        err_msg=f"key {key!r}",
                    )
            else:
                np.testing.assert_allclose(
                    np.asarray(actual, np.float64),
                    np.asarray(expected, np.float64),
                    atol=atol,
                    rtol=rtol,
                )
        except AssertionError as error:
            self._fail(entry, f"silently wrong number (reference differs): {error}")
        self.counts[entry]["equal to reference"] += 1

    def check_every(self, entry, argument, variants, make_call):
        """Every invalid variant must raise a clear error; reports all that do not."""
        failures = []
        for kind, bad in variants.items():
            try:
                self.clear_error(entry, argument, lambda bad=bad: make_call(bad))
            except AssertionError as error:
                failures.append(f"[{argument}: {kind}] {error}")
        assert not failures, "\n".join(failures)

    @staticmethod
    def not_models():
        """Values passed as `model` that are not Keras models."""
        import keras

        return {
            "None": None,
            "str": "model",
            "int": 3,
            "function": lambda x: x,
            "layer": keras.layers.Dense(3),
            "array": np.zeros((2, 3)),
        }

    def invariant(self, entry, holds, message):
        """A property without a closed-form reference (random attacks, plots)."""
        self.counts[entry]["tried"] += 1
        if not holds:
            self._fail(entry, message)
        self.counts[entry]["invariant held"] += 1


def _short(value):
    text = repr(value)
    return text if len(text) < 200 else text[:200] + "..."


@pytest.fixture(scope="session")
def fuzz(request):
    """The session's `Recorder`."""
    return Recorder(request.config.fuzz_counts)
