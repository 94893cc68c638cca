"""Pytest plugin to audit the suite: per-test durations and backend use.

`--duration-log=FILE` appends `seconds <TAB> phase <TAB> nodeid` for each
setup, call and teardown as soon as it ends, so a run that is cut short
still leaves its timings (`--durations` prints only at the end).

`--torch-call-audit=FILE` tells which tests never touch the Keras backend
(measured on PyTorch).

Under `KERAS_BACKEND=torch` every Keras op, layer, variable, model and
tensor conversion is a PyTorch call, and a `TorchFunctionMode` sees every
PyTorch call (functions, factories and tensor methods). This plugin counts
them for each test: in its module's import (collection), in the setup of each
fixture it uses (even when the fixture was built and cached for an earlier
test), and in its own setup, call and teardown. A test with no call at all
never reached a backend tensor, so it runs the same on every backend; this
is the evidence behind `BACKEND_INDEPENDENT` in tests/conftest.py.

    KERAS_BACKEND=torch PYTHONPATH=scripts python -m pytest -p audit_tests \
        --torch-call-audit=/tmp/torch_calls.tsv tests plugins

writes one line per test: `nodeid <TAB> calls <TAB> first torch function seen`.
The mode adds a little Python work to every PyTorch call, so do not time a
run that uses it.
"""

import collections

import pytest

_calls = collections.Counter()  # phase key -> number of torch calls
_first = {}  # phase key -> name of the first torch function called
_state = {"key": None}


def pytest_addoption(parser):
    parser.addoption("--torch-call-audit", default=None, help="TSV file to write")
    parser.addoption("--duration-log", default=None, help="TSV file to append to")


def pytest_runtest_logreport(report):
    path = getattr(pytest_runtest_logreport, "path", None)
    if path:
        with open(path, "a") as file:
            file.write(f"{report.duration:.3f}\t{report.when}\t{report.nodeid}\n")


def _mode():
    import torch

    class Counting(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            key = _state["key"]
            if key is not None:
                _calls[key] += 1
                _first.setdefault(key, getattr(func, "__qualname__", repr(func)))
            return func(*args, **(kwargs or {}))

    return Counting()


def pytest_configure(config):
    pytest_runtest_logreport.path = config.getoption("--duration-log")
    if not config.getoption("--torch-call-audit"):
        return
    import keras

    if keras.backend.backend() != "torch":
        raise pytest.UsageError("--torch-call-audit needs KERAS_BACKEND=torch")
    mode = _mode()
    mode.__enter__()
    config._torch_call_audit = (mode, {})


def _tracking(config):
    return getattr(config, "_torch_call_audit", None) is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    if not _tracking(collector.config):
        yield
        return
    # Module-level code (constants, parametrize arguments) runs here.
    previous, _state["key"] = _state["key"], ("collect", collector.nodeid)
    try:
        yield
    finally:
        _state["key"] = previous


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if not _tracking(request.config):
        yield
        return
    key = ("fixture", fixturedef.baseid, fixturedef.argname)
    previous, _state["key"] = _state["key"], key
    try:
        yield
    finally:
        _state["key"] = previous
        # The fixture's calls also count for the test that set it up.
        if previous is not None and _calls[key]:
            _calls[previous] += _calls[key]
            _first.setdefault(previous, _first[key])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not _tracking(item.config):
        yield
        return
    _state["key"] = ("test", item.nodeid)
    try:
        yield
    finally:
        _state["key"] = None
        _, tests = item.config._torch_call_audit
        tests[item.nodeid] = item


def _inherited(item):
    """Calls from the modules and cached fixtures the test depends on."""
    total, first = 0, None
    node = item
    while node is not None:
        key = ("collect", node.nodeid)
        if _calls[key]:
            total += _calls[key]
            first = first or _first[key]
        node = node.parent
    fixtures = getattr(item, "_fixtureinfo", None)
    for name in getattr(fixtures, "names_closure", ()):
        for definition in fixtures.name2fixturedefs.get(name, ()):
            key = ("fixture", definition.baseid, definition.argname)
            if _calls[key]:
                total += _calls[key]
                first = first or _first[key]
    return total, first


def pytest_unconfigure(config):
    if not _tracking(config):
        return
    mode, tests = config._torch_call_audit
    mode.__exit__(None, None, None)
    with open(config.getoption("--torch-call-audit"), "w") as file:
        for nodeid, item in tests.items():
            own = _calls[("test", nodeid)]
            inherited, first = _inherited(item)
            first = _first.get(("test", nodeid)) or first or "-"
            file.write(f"{nodeid}\t{own + inherited}\t{first}\n")
