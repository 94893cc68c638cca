"""Name-based registry for every kind of `keras_reliability` plugin.

Calibration metrics, calibrators, OOD scorers and adversarial attacks are all
looked up by name through one small registry, in the spirit of
`keras.metrics.get()`:

```python
from keras_reliability import registry

@registry.register("ood_scorer")
def my_energy(logits):
    ...

scorer = registry.get("ood_scorer", "my_energy")
```

Third-party packages can add entries without being imported explicitly by
declaring an entry point in the `"keras_reliability.plugins"` group, e.g. in
their `pyproject.toml`:

```toml
[project.entry-points."keras_reliability.plugins"]
my_plugin = "my_package.reliability_plugin"
```

Importing the target (a module or an object) must register its entries via
`register()`. Plugins are loaded lazily, once per process, the first time
`get()`, `get_object()` or `available()` is called (or explicitly through
`load_plugins()`).

This module deliberately imports nothing else from `keras_reliability`
(and not Keras), because the rest of the package imports it.
"""

import inspect
import threading
import warnings
from importlib import metadata

KINDS = ("calibration_metric", "calibrator", "ood_scorer", "attack", "training_recipe")
ENTRY_POINT_GROUP = "keras_reliability.plugins"


class PluginLoadWarning(RuntimeWarning):
    """Warning emitted when a `keras_reliability` entry-point plugin fails."""


# kind -> {lower-cased name -> registered class or function}
_registry = {kind: {} for kind in KINDS}
# entry point name -> "ErrorType: message"
_failed_plugins = {}
_plugins_loaded = False
_plugins_loading = False
# Guards the registry dicts; held briefly and never while importing.
_registry_lock = threading.Lock()
# Serialises plugin loading. Re-entrant so that a plugin whose import calls
# `get()` in the loading thread does not deadlock.
_plugin_lock = threading.RLock()


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(
            f"Invalid value for argument `kind`: {kind!r}. "
            f"Expected one of: {', '.join(repr(k) for k in KINDS)}."
        )


def _normalize_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(
            "Invalid value for argument `name`: expected a non-empty string, "
            f"received: {name!r}"
        )
    return name.lower()


def _is_redefinition(old, new):
    # `importlib.reload()` creates new objects with the same qualified name;
    # treat them as the same entry so that reloading a module works.
    return (
        getattr(old, "__module__", None) == getattr(new, "__module__", None)
        and getattr(old, "__qualname__", None)
        == getattr(new, "__qualname__", None)
        and getattr(old, "__qualname__", None) is not None
    )


def register(kind, name=None, *, override=False):
    """Decorator registering a class or a function under a name.

    Names are case-insensitive: they are stored and looked up in lower case.

    Args:
        kind: One of `KINDS`, e.g. `"calibration_metric"` or `"ood_scorer"`.
        name: Name to register under. Defaults to the object's `__name__`.
        override: Whether to replace an entry already registered under
            `name` by a different object. Re-registering the same object
            (or its redefinition after a module reload) is always allowed.

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: If `kind` is unknown, or if `name` is already taken by
            another object and `override=False`.

    Example:

    >>> @register("calibration_metric", "my_ece")
    ... class MyECE:
    ...     pass
    >>> get_object("calibration_metric", "MY_ECE") is MyECE
    True
    """
    _check_kind(kind)

    def decorator(obj):
        key = _normalize_name(name if name is not None else obj.__name__)
        with _registry_lock:
            entries = _registry[kind]
            existing = entries.get(key)
            if (
                existing is not None
                and existing is not obj
                and not override
                and not _is_redefinition(existing, obj)
            ):
                raise ValueError(
                    f"A {kind} named {key!r} is already registered "
                    f"({existing!r}). Use a different name, or pass "
                    "`override=True` to replace it."
                )
            entries[key] = obj
        return obj

    return decorator


def load_plugins():
    """Imports all entry-point plugins of the `ENTRY_POINT_GROUP` group.

    Runs at most once per process; later calls return immediately. It is
    called automatically by `get()`, `get_object()` and `available()`, and
    can be called explicitly to surface plugin errors early. A plugin whose
    loading raises is skipped with a `PluginLoadWarning` and recorded in
    `failed_plugins()`.
    """
    global _plugins_loaded, _plugins_loading
    if _plugins_loaded:
        return
    with _plugin_lock:
        # `_plugins_loading` is only seen as True here by the loading thread
        # itself (other threads wait on the lock): a plugin calling `get()`.
        if _plugins_loaded or _plugins_loading:
            return
        _plugins_loading = True
        try:
            for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    entry_point.load()
                except Exception as e:
                    error = f"{type(e).__name__}: {e}"
                    _failed_plugins[entry_point.name] = error
                    warnings.warn(
                        f"Could not load keras_reliability plugin "
                        f"{entry_point.name!r} ({entry_point.value!r}); "
                        f"skipping it. {error}",
                        PluginLoadWarning,
                        stacklevel=2,
                    )
            _plugins_loaded = True
        finally:
            _plugins_loading = False


def failed_plugins():
    """Returns the plugins that failed to load.

    Returns:
        A dict mapping entry point names to `"ErrorType: message"` strings.
    """
    return dict(_failed_plugins)


def available(kind):
    """Returns the sorted names registered for `kind` (plugins included).

    Args:
        kind: One of `KINDS`.

    Returns:
        A sorted list of lower-case names.

    Raises:
        ValueError: If `kind` is unknown.
    """
    _check_kind(kind)
    load_plugins()
    return sorted(_registry[kind])


def get_object(kind, name):
    """Returns the class or function registered as `name`, not instantiated.

    Args:
        kind: One of `KINDS`.
        name: Registered name (case-insensitive).

    Returns:
        The registered class or function.

    Raises:
        ValueError: If `kind` is unknown or `name` is not registered.

    Example:

    >>> fn = get_object("ood_scorer", "energy")  # doctest: +SKIP
    """
    _check_kind(kind)
    load_plugins()
    key = _normalize_name(name)
    try:
        return _registry[kind][key]
    except KeyError:
        pass
    names = ", ".join(repr(n) for n in sorted(_registry[kind])) or "none"
    message = f"Unknown {kind} {name!r}. Available: {names}."
    if _failed_plugins:
        failures = "; ".join(f"{n!r} ({e})" for n, e in _failed_plugins.items())
        message += f" Note: some plugins failed to load: {failures}."
    raise ValueError(message)


def get(kind, identifier):
    """Retrieves a registered object, like `keras.metrics.get()`.

    Args:
        kind: One of `KINDS`.
        identifier: One of:
            - a registered name (case-insensitive): a registered class is
              instantiated with no arguments, a function is returned as is;
            - a config dict `{"class_name": name, "config": {...}}`: the
              registered class is built with `from_config(config)` if it
              has one, else with `cls(**config)`;
            - a class: instantiated with no arguments;
            - an instance or any other callable: returned unchanged.

    Returns:
        The resolved instance or function.

    Raises:
        ValueError: If `kind` is unknown, the name is not registered, or
            `identifier` has an unsupported type (e.g. `None` or an int).

    Example:

    >>> metric = get("calibration_metric", "ece")  # doctest: +SKIP
    >>> metric = get(  # doctest: +SKIP
    ...     "calibration_metric",
    ...     {"class_name": "ece", "config": {"num_bins": 10}},
    ... )
    """
    _check_kind(kind)
    if isinstance(identifier, str):
        obj = get_object(kind, identifier)
        return obj() if inspect.isclass(obj) else obj
    if isinstance(identifier, dict):
        if "class_name" not in identifier:
            raise ValueError(
                f"Invalid {kind} config: expected a dict with keys "
                f"'class_name' and 'config'. Received: {identifier!r}"
            )
        obj = get_object(kind, identifier["class_name"])
        config = identifier.get("config") or {}
        if inspect.isclass(obj):
            if hasattr(obj, "from_config"):
                return obj.from_config(config)
            return obj(**config)
        if config:
            raise ValueError(
                f"The {kind} {identifier['class_name']!r} is a function and "
                f"takes no config. Received: {identifier!r}"
            )
        return obj
    if inspect.isclass(identifier):
        return identifier()
    # Builtin values (None, numbers, lists...) are never valid plugins, while
    # callables and instances of user-defined classes are used as is.
    if callable(identifier) or type(identifier).__module__ != "builtins":
        return identifier
    raise ValueError(
        f"Could not interpret {kind} identifier: {identifier!r}. Expected a "
        "registered name (str), a config dict with keys 'class_name' and "
        "'config', a class, an instance or a callable."
    )
