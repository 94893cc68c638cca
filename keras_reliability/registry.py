"""Name-based registry for every kind of `keras_reliability` plugin.

Calibration metrics, calibrators, OOD scorers, adversarial attacks and
adversarial-training recipes are all looked up by name through one small
registry, in the spirit of `keras.metrics.get()`:

```python
from keras_reliability import registry

@registry.register("calibration_metric", "my_metric")
def my_metric(y_true, y_pred, *, from_logits=False, sample_weight=None):
    ...

metric = registry.get("calibration_metric", "my_metric")
```

Each kind has a contract, checked by `register()` so that a broken class
fails when it is registered rather than inside a callback after the first
epoch:

- `"calibration_metric"`: a function (or other callable)
  `fn(y_true, y_pred, *, from_logits=False, sample_weight=None)`, or a
  `keras.metrics.Metric` subclass;
- `"calibrator"`: a `keras.layers.Layer` subclass with `fit` and `calibrate`
  (e.g. a `keras_reliability.calibration.Calibrator` subclass);
- `"ood_scorer"`: a class with `fit` and `score`, plus `score_outputs`,
  `feature_layers` and `logits` when its `shares_forward_pass` is true
  (e.g. a `keras_reliability.ood.OODScorer` subclass);
- `"attack"`: a class with `generate`, `get_config`, `from_config` and
  `with_epsilon` (e.g. a `keras_reliability.attacks.Attack` subclass);
- `"training_recipe"`: a class with `transform` and a `concatenates`
  attribute, plus `combine_losses` when `concatenates` is true (e.g. a
  `keras_reliability.training.Recipe` subclass).

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
`load_plugins()`). A plugin that fails to load, even through `sys.exit()`,
is skipped as a whole: the entries it registered before failing are removed
again. Replacing a built-in entry (`override=True`) warns.

This module deliberately imports nothing else from `keras_reliability`
(and not Keras), because the rest of the package imports it.
"""

import inspect
import sys
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
# While a plugin loads, `journal` lists its registrations as
# `(kind, key, previous, obj)`, so that they can be undone if it fails.
# Thread-local: registrations made meanwhile by other threads are not the
# plugin's.
_plugin_state = threading.local()
# Stands for "no previous entry" in the journal.
_NOTHING = object()

# Not a plugin failure: the user interrupting the process, or the generator
# that triggered the lookup being closed.
_PROPAGATED = (KeyboardInterrupt, GeneratorExit)

_PACKAGE = "keras_reliability"


def _check_kind(kind):
    if isinstance(kind, str) and kind in KINDS:
        return
    hint = ""
    if inspect.isclass(kind) or inspect.isfunction(kind):
        hint = " Write `@register(kind, name)`, not a bare `@register`."
    raise ValueError(
        f"Invalid value for argument `kind`: {kind!r}. "
        f"Expected one of: {', '.join(repr(k) for k in KINDS)}.{hint}"
    )


def _prefix(owner):
    return f"{owner}: " if owner else ""


def _normalize_name(name, argument="name", owner=None):
    if not isinstance(name, str):
        raise TypeError(
            f"{_prefix(owner)}Invalid type for argument `{argument}`: expected a "
            f"non-empty string, received {name!r} of type {type(name).__name__}."
        )
    if not name:
        raise ValueError(
            f"{_prefix(owner)}Invalid value for argument `{argument}`: expected a "
            f"non-empty string, received {name!r}."
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


def _is_builtin(obj):
    """Whether `obj` is one of the library's own entries.

    The package registers its built-ins through `register()` like any
    plugin, so they are told apart by where they are defined.
    """
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and (
        module == _PACKAGE or module.startswith(_PACKAGE + ".")
    )


# --- Contracts of the kinds -----------------------------------------------

# Per kind: the requirement shown in contract errors.
_CONTRACT_SUMMARIES = {
    "calibration_metric": (
        "a function `fn(y_true, y_pred, *, from_logits=False, "
        "sample_weight=None)` returning a float, or a keras.metrics.Metric "
        "subclass"
    ),
    "calibrator": (
        "a keras.layers.Layer subclass with callable `fit` and `calibrate`, "
        "e.g. a keras_reliability.calibration.Calibrator subclass"
    ),
    "ood_scorer": (
        "a class with callable `fit` and `score`, and `score_outputs`, "
        "`feature_layers` and `logits` when `shares_forward_pass` is true, "
        "e.g. a keras_reliability.ood.OODScorer subclass"
    ),
    "attack": (
        "a class with callable `generate`, `get_config`, `from_config` and "
        "`with_epsilon`, e.g. a keras_reliability.attacks.Attack subclass"
    ),
    "training_recipe": (
        "a class with callable `transform` and a `concatenates` attribute, "
        "and callable `combine_losses` when `concatenates` is true, e.g. a "
        "keras_reliability.training.Recipe subclass"
    ),
}


def _keras_class(submodule, name):
    # Looked up, not imported: a class deriving from a Keras class implies
    # that Keras is already imported.
    keras = sys.modules.get("keras")
    return getattr(getattr(keras, submodule, None), name, None)


def _missing_callables(obj, names):
    missing = [name for name in names if not callable(getattr(obj, name, None))]
    if missing:
        return "it has no callable " + ", ".join(f"`{name}`" for name in missing)
    return None


def _not_a_class(obj):
    if inspect.isclass(obj):
        return None
    return f"it is not a class (it is a {type(obj).__name__})"


def _calibration_metric_problem(obj):
    if inspect.isclass(obj):
        metric = _keras_class("metrics", "Metric")
        if metric is not None and issubclass(obj, metric):
            return None
        # The calibration callback calls anything but a Metric as a function.
        return "it is a class but not a keras.metrics.Metric subclass"
    if not callable(obj):
        return f"it is not callable (it is a {type(obj).__name__})"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins without a signature
        return None
    # Bound the way `CalibrationCallback` calls it, one part at a time so
    # that the message names what is missing.
    try:
        signature.bind_partial(None, None)
    except TypeError:
        return "it does not take `y_true` and `y_pred` as positional arguments"
    for keyword in ("from_logits", "sample_weight"):
        try:
            signature.bind_partial(None, None, **{keyword: None})
        except TypeError:
            return f"it does not take the keyword argument `{keyword}`"
    try:
        signature.bind(None, None, from_logits=False, sample_weight=None)
    except TypeError as error:
        return f"it cannot be called with only those arguments: {error}"
    return None


def _calibrator_problem(obj):
    problem = _not_a_class(obj)
    if problem:
        return problem
    layer = _keras_class("layers", "Layer")
    if layer is None or not issubclass(obj, layer):
        return "it is not a keras.layers.Layer subclass"
    return _missing_callables(obj, ("fit", "calibrate"))


def _ood_scorer_problem(obj):
    required = ["fit", "score"]
    if getattr(obj, "shares_forward_pass", False):
        # `OODMonitorCallback` scores these from one shared forward pass.
        required += ["score_outputs", "feature_layers", "logits"]
    return _not_a_class(obj) or _missing_callables(obj, required)


def _attack_problem(obj):
    return _not_a_class(obj) or _missing_callables(
        obj, ("generate", "get_config", "from_config", "with_epsilon")
    )


def _training_recipe_problem(obj):
    problem = _not_a_class(obj) or _missing_callables(obj, ("transform",))
    if problem:
        return problem
    if not hasattr(obj, "concatenates"):
        return "it has no `concatenates` attribute"
    if obj.concatenates:
        return _missing_callables(obj, ("combine_losses",))
    return None


_CONTRACT_CHECKS = {
    "calibration_metric": _calibration_metric_problem,
    "calibrator": _calibrator_problem,
    "ood_scorer": _ood_scorer_problem,
    "attack": _attack_problem,
    "training_recipe": _training_recipe_problem,
}


def _check_contract(kind, key, obj):
    """Raises a `TypeError` if `obj` breaks the contract of `kind`."""
    problem = _CONTRACT_CHECKS[kind](obj)
    if problem:
        raise TypeError(
            f"Cannot register {obj!r} as the {kind} {key!r}: {problem}. "
            f"Each {kind} must be {_CONTRACT_SUMMARIES[kind]}."
        )


# --- Public API -------------------------------------------------------------


def register(kind, name=None, *, override=False):
    """Decorator registering a class or a function under a name.

    Names are case-insensitive: they are stored and looked up in lower case.
    The object is checked against the contract of `kind` (see the module
    docstring) when it is registered.

    Args:
        kind: One of `KINDS`, e.g. `"calibration_metric"` or `"ood_scorer"`.
        name: Name to register under. Defaults to the object's `__name__`.
        override: Whether to replace an entry already registered under
            `name` by a different object. Re-registering the same object
            (or its redefinition after a module reload) is always allowed.
            Replacing one of the library's built-in entries warns.

    Returns:
        A decorator that registers its argument and returns it unchanged.

    Raises:
        ValueError: If `kind` is unknown, `name` is empty, or `name` is
            already taken by another object and `override=False`.
        TypeError: If `name` is not a string, `override` is not a bool, or
            the decorated object breaks the contract of `kind` (the message
            names the missing member).

    Example:

    >>> from keras_reliability import registry
    >>> @registry.register("calibration_metric", "my_ece")
    ... def my_ece(y_true, y_pred, *, from_logits=False, sample_weight=None):
    ...     return 0.0
    >>> registry.get_object("calibration_metric", "MY_ECE") is my_ece
    True
    """
    _check_kind(kind)
    if name is not None:
        _normalize_name(name)
    if not isinstance(override, bool):
        raise TypeError(
            "Invalid type for argument `override`: expected True or False, "
            f"received {override!r} of type {type(override).__name__}."
        )

    def decorator(obj):
        if name is not None:
            key = _normalize_name(name)
        else:
            default = getattr(obj, "__name__", None)
            if not isinstance(default, str) or not default:
                raise TypeError(
                    f"Cannot register {obj!r} as {kind} without a name: it "
                    "has no `__name__`. Pass `name` to `register()`."
                )
            key = default.lower()
        _check_contract(kind, key, obj)
        with _registry_lock:
            entries = _registry[kind]
            existing = entries.get(key, _NOTHING)
            replaces = (
                existing is not _NOTHING
                and existing is not obj
                and not _is_redefinition(existing, obj)
            )
            if replaces and not override:
                raise ValueError(
                    f"A {kind} named {key!r} is already registered "
                    f"({existing!r}). Use a different name, or pass "
                    "`override=True` to replace it."
                )
            entries[key] = obj
            journal = getattr(_plugin_state, "journal", None)
            if journal is not None and existing is not obj:
                journal.append((kind, key, existing, obj))
        if replaces and _is_builtin(existing):
            warnings.warn(
                f"Overriding the built-in {kind} {key!r} ({existing!r}) with "
                f"{obj!r}: every use of the name {key!r} now gets the "
                "replacement.",
                UserWarning,
                stacklevel=2,
            )
        return obj

    return decorator


def _roll_back(journal):
    """Undoes the registrations in `journal`; returns `"kind 'name'"` strings."""
    undone = []
    with _registry_lock:
        for kind, key, previous, obj in reversed(journal):
            entries = _registry[kind]
            # Leave alone an entry that someone else replaced meanwhile.
            if entries.get(key, _NOTHING) is not obj:
                continue
            if previous is _NOTHING:
                del entries[key]
            else:
                entries[key] = previous
            undone.append(f"{kind} {key!r}")
    return sorted(set(undone))


def _load_plugin(entry_point):
    """Imports one plugin; on failure undoes its registrations and reports."""
    _plugin_state.journal = []
    try:
        entry_point.load()
    except BaseException as e:
        # Any failure, `sys.exit()` included, only skips the plugin; an
        # interrupt still stops the process, without half a plugin.
        undone = _roll_back(_plugin_state.journal)
        if isinstance(e, _PROPAGATED):
            raise
        error = f"{type(e).__name__}: {e}"
        _failed_plugins[entry_point.name] = error
        removed = ""
        if undone:
            removed = f" Removed what it had registered: {', '.join(undone)}."
        warnings.warn(
            f"Could not load keras_reliability plugin "
            f"{entry_point.name!r} ({entry_point.value!r}); "
            f"skipping it. {error}{removed}",
            PluginLoadWarning,
            stacklevel=3,
        )
    finally:
        _plugin_state.journal = None


def load_plugins():
    """Imports all entry-point plugins of the `ENTRY_POINT_GROUP` group.

    Runs at most once per process; later calls return immediately. It is
    called automatically by `get()`, `get_object()` and `available()`, and
    can be called explicitly to surface plugin errors early.

    A plugin whose loading raises anything but `KeyboardInterrupt` or
    `GeneratorExit` (a `SystemExit` included) is skipped with a
    `PluginLoadWarning` and recorded in `failed_plugins()`; what it
    registered before failing is removed, and entries it replaced are
    restored. A `KeyboardInterrupt` is re-raised after the same clean-up,
    and loading runs again on the next lookup.
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
                _load_plugin(entry_point)
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

    Example:

    >>> from keras_reliability import registry
    >>> "temperature_scaling" in registry.available("calibrator")
    True
    """
    _check_kind(kind)
    load_plugins()
    return sorted(_registry[kind])


def _lookup(kind, key, shown, argument, owner):
    load_plugins()
    try:
        return _registry[kind][key]
    except KeyError:
        pass
    names = ", ".join(repr(n) for n in sorted(_registry[kind])) or "none"
    message = (
        f"{_prefix(owner)}Unknown {kind} {shown!r} for argument `{argument}`. "
        f"Available: {names}."
    )
    if _failed_plugins:
        failures = "; ".join(f"{n!r} ({e})" for n, e in _failed_plugins.items())
        message += f" Note: some plugins failed to load: {failures}."
    raise ValueError(message)


def get_object(kind, name, *, argument="name", owner=None):
    """Returns the class or function registered as `name`, not instantiated.

    Args:
        kind: One of `KINDS`.
        name: Registered name (case-insensitive).
        argument: the name of the argument that held `name`, for error
            messages: a tool that takes a plugin name as one of its own
            arguments passes that argument's name (e.g. `"recipe"`).
        owner: optional name of that tool, prefixed to error messages.

    Returns:
        The registered class or function.

    Raises:
        ValueError: If `kind` is unknown, `name` is empty or not registered.
        TypeError: If `name` is not a string.

    Example:

    >>> from keras_reliability import registry
    >>> registry.get_object("ood_scorer", "Energy").__name__
    'Energy'
    """
    _check_kind(kind)
    return _lookup(kind, _normalize_name(name, argument, owner), name, argument, owner)


def get(kind, identifier, *, argument="identifier", owner=None):
    """Retrieves a registered object, like `keras.metrics.get()`.

    Args:
        kind: One of `KINDS`.
        identifier: One of:
            - a registered name (case-insensitive): a registered class is
              instantiated with no arguments, a function is returned as is;
            - a config dict `{"class_name": name, "config": {...}}`: the
              registered class is built with `from_config(config)` if it
              has one, else with `cls(**config)`; a registered function
              takes no config;
            - a class: instantiated with no arguments;
            - an instance or any other callable: returned unchanged.
        argument: the name of the argument that held `identifier`, for
            error messages: a tool that takes plugins as one of its own
            arguments passes that argument's name (e.g. `"metrics[0]"`), so
            that its users read which of their arguments is wrong.
        owner: optional name of that tool, prefixed to error messages.

    Returns:
        The resolved instance or function.

    Raises:
        ValueError: If `kind` is unknown, the name is empty or not
            registered, `identifier` has an unsupported type (e.g. `None` or
            an int), or a config dict has no `"class_name"` or gives a
            config to a function.
        TypeError: If a config dict's `"class_name"` is not a string or its
            `"config"` is not a dict.

    Example:

    >>> from keras_reliability import registry
    >>> registry.get("calibration_metric", "ECE").__name__
    'expected_calibration_error'
    >>> scaler = registry.get(
    ...     "calibrator",
    ...     {"class_name": "temperature_scaling", "config": {"from_logits": False}},
    ... )
    >>> type(scaler).__name__, scaler.from_logits
    ('TemperatureScaling', False)
    """
    _check_kind(kind)
    if isinstance(identifier, str):
        obj = get_object(kind, identifier, argument=argument, owner=owner)
        return obj() if inspect.isclass(obj) else obj
    if isinstance(identifier, dict):
        return _from_config(kind, identifier, argument, owner)
    if inspect.isclass(identifier):
        return identifier()
    # Builtin values (None, numbers, lists...) are never valid plugins, while
    # callables and instances of user-defined classes are used as is.
    if callable(identifier) or type(identifier).__module__ != "builtins":
        return identifier
    raise ValueError(
        f"{_prefix(owner)}Invalid value for argument `{argument}`: could not "
        f"interpret {identifier!r} as a {kind}. Expected a registered name "
        "(str), a config dict with keys 'class_name' and 'config', a class, an "
        "instance or a callable."
    )


def _from_config(kind, identifier, argument, owner):
    """The object a config dict `{"class_name": name, "config": {...}}` names."""
    prefix = _prefix(owner)
    if "class_name" not in identifier:
        raise ValueError(
            f"{prefix}Invalid {kind} config for argument `{argument}`: expected a "
            "dict with keys 'class_name' and 'config'. Received: "
            f"{identifier!r}"
        )
    class_name = identifier["class_name"]
    name_argument = f"{argument}['class_name']"
    key = _normalize_name(class_name, name_argument, owner)
    config = identifier.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise TypeError(
            f"{prefix}Invalid type for argument `{argument}['config']`: expected "
            f"a dict, received {config!r} of type {type(config).__name__}."
        )
    # Looked up once the arguments are known to be valid: the lookup loads
    # the plugins.
    obj = _lookup(kind, key, class_name, name_argument, owner)
    if inspect.isclass(obj):
        if hasattr(obj, "from_config"):
            return obj.from_config(config)
        return obj(**config)
    if config:
        raise ValueError(
            f"{prefix}Invalid value for argument `{argument}`: the {kind} "
            f"{class_name!r} is a function and takes no config. Received: "
            f"{identifier!r}"
        )
    return obj
