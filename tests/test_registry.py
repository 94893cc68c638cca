import doctest
import functools
import re
import sys
import textwrap
import threading
import warnings

import keras
import pytest

from keras_reliability import registry


@pytest.fixture
def isolated_registry(monkeypatch):
    """Gives each test a private copy of the registry state.

    Registrations made by the test are dropped and the plugin-loading state
    is restored afterwards, so other tests are unaffected.
    """
    monkeypatch.setattr(
        registry,
        "_registry",
        {kind: dict(entries) for kind, entries in registry._registry.items()},
    )
    monkeypatch.setattr(registry, "_failed_plugins", {})
    # Pretend plugins are already loaded: these tests don't need them.
    monkeypatch.setattr(registry, "_plugins_loaded", True)
    monkeypatch.setattr(registry, "_plugins_loading", False)
    return registry


# Objects that meet the contract of their kind, without the library's base
# classes (the registry checks by duck typing).


class KrTestScorerPlain:
    """An `ood_scorer` without `from_config`: built with `cls(**config)`."""

    shares_forward_pass = False

    def __init__(self, num_bins=15):
        self.num_bins = num_bins

    def fit(self, model, x, y=None, batch_size=None):
        return self

    def score(self, model, x, batch_size=None):
        return x


class KrTestScorerWithConfig(KrTestScorerPlain):
    def __init__(self, num_bins=15, from_config_used=False):
        super().__init__(num_bins)
        self.from_config_used = from_config_used

    @classmethod
    def from_config(cls, config):
        return cls(from_config_used=True, **config)


class KrTestAttack:
    def __init__(self, epsilon=0.1):
        self.epsilon = epsilon

    def generate(self, model, x, y=None, verbose=0):
        return x

    def get_config(self):
        return {"epsilon": self.epsilon}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def with_epsilon(self, epsilon):
        return type(self)(epsilon)


class KrTestRecipe:
    concatenates = False

    def transform(self, data, gradient, logits, seed):
        return data


class KrTestCalibrator(keras.layers.Layer):
    def fit(self, y_pred, y_true, *, sample_weight=None):
        return self

    @classmethod
    def calibrate(cls, model, x, y, **kwargs):
        return model


def kr_test_metric_fn(y_true, y_pred, *, from_logits=False, sample_weight=None):
    return 0.25


def test_registry_register_returns_object_and_get_by_name(isolated_registry):
    decorated = registry.register("ood_scorer", "kr_test_Scorer")(KrTestScorerPlain)
    assert decorated is KrTestScorerPlain

    for name in ("kr_test_scorer", "KR_TEST_SCORER", "kr_test_Scorer"):
        scorer = registry.get("ood_scorer", name)
        assert isinstance(scorer, KrTestScorerPlain)
        assert scorer.num_bins == 15
    assert "kr_test_scorer" in registry.available("ood_scorer")


def test_registry_default_name_is_dunder_name(isolated_registry):
    registry.register("calibration_metric")(kr_test_metric_fn)
    assert "kr_test_metric_fn" in registry.available("calibration_metric")
    # Functions are returned as is, not called.
    assert registry.get("calibration_metric", "KR_TEST_METRIC_FN") is kr_test_metric_fn


def test_registry_get_object_does_not_instantiate(isolated_registry):
    registry.register("ood_scorer", "kr_test_plain")(KrTestScorerPlain)
    assert registry.get_object("ood_scorer", "Kr_Test_Plain") is KrTestScorerPlain


def test_registry_get_config_dict_uses_from_config(isolated_registry):
    registry.register("ood_scorer", "kr_test_cfg")(KrTestScorerWithConfig)
    scorer = registry.get(
        "ood_scorer",
        {"class_name": "KR_TEST_CFG", "config": {"num_bins": 7}},
    )
    assert isinstance(scorer, KrTestScorerWithConfig)
    assert scorer.num_bins == 7
    assert scorer.from_config_used


def test_registry_get_config_dict_without_from_config(isolated_registry):
    registry.register("ood_scorer", "kr_test_plain")(KrTestScorerPlain)
    scorer = registry.get(
        "ood_scorer",
        {"class_name": "kr_test_plain", "config": {"num_bins": 3}},
    )
    assert isinstance(scorer, KrTestScorerPlain)
    assert scorer.num_bins == 3
    # A missing or None config builds the class with no arguments.
    assert registry.get("ood_scorer", {"class_name": "kr_test_plain"}).num_bins == 15
    assert (
        registry.get("ood_scorer", {"class_name": "kr_test_plain", "config": None}).num_bins
        == 15
    )


def test_registry_get_config_dict_for_function(isolated_registry):
    registry.register("calibration_metric")(kr_test_metric_fn)
    assert (
        registry.get("calibration_metric", {"class_name": "kr_test_metric_fn"})
        is kr_test_metric_fn
    )
    with pytest.raises(ValueError, match="kr_test_metric_fn.*takes no config"):
        registry.get(
            "calibration_metric",
            {"class_name": "kr_test_metric_fn", "config": {"a": 1}},
        )


def test_registry_get_config_dict_missing_class_name(isolated_registry):
    with pytest.raises(ValueError, match="`identifier`.*class_name"):
        registry.get("calibration_metric", {"config": {}})


def test_registry_get_class_instance_and_callable_passthrough(
    isolated_registry,
):
    # A class (registered or not) is instantiated.
    scorer = registry.get("ood_scorer", KrTestScorerPlain)
    assert isinstance(scorer, KrTestScorerPlain)
    # An instance is returned unchanged, even if not callable.
    instance = KrTestScorerPlain(num_bins=4)
    assert registry.get("calibrator", instance) is instance
    # Any callable is returned unchanged.
    assert registry.get("ood_scorer", kr_test_metric_fn) is kr_test_metric_fn

    def kr_test_lambda(x):
        return x

    assert registry.get("attack", kr_test_lambda) is kr_test_lambda


def test_registry_duplicate_name_raises_unless_override(isolated_registry):
    class KrTestOtherAttack(KrTestAttack):
        pass

    registry.register("attack", "kr_test_dup")(KrTestAttack)
    # Re-registering the same object is a no-op.
    registry.register("attack", "kr_test_dup")(KrTestAttack)
    # Names are case-insensitive, so this clashes too.
    with pytest.raises(ValueError, match="kr_test_dup.*override=True"):
        registry.register("attack", "KR_TEST_DUP")(KrTestOtherAttack)
    assert registry.get_object("attack", "kr_test_dup") is KrTestAttack

    # Replacing an entry that is not a built-in is silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register("attack", "kr_test_dup", override=True)(KrTestOtherAttack)
    assert registry.get_object("attack", "kr_test_dup") is KrTestOtherAttack


def test_registry_reregistering_reloaded_definition_is_allowed(
    isolated_registry,
):
    # Simulates `importlib.reload`: a new object with the same qualname.
    def make():
        class KrTestReloaded(KrTestAttack):
            pass

        return KrTestReloaded

    first, second = make(), make()
    assert first is not second
    registry.register("attack")(first)
    registry.register("attack")(second)
    assert registry.get_object("attack", "KrTestReloaded") is second


def test_registry_same_name_in_different_kinds_is_independent(
    isolated_registry,
):
    registry.register("attack", "kr_test_shared")(KrTestAttack)
    registry.register("ood_scorer", "kr_test_shared")(KrTestScorerPlain)
    assert registry.get_object("attack", "kr_test_shared") is KrTestAttack
    assert registry.get_object("ood_scorer", "kr_test_shared") is KrTestScorerPlain
    assert "kr_test_shared" not in registry.available("calibrator")


@pytest.mark.parametrize(
    "call",
    [
        lambda: registry.register("kr_test_bogus_kind"),
        lambda: registry.get("kr_test_bogus_kind", "x"),
        lambda: registry.get_object("kr_test_bogus_kind", "x"),
        lambda: registry.available("kr_test_bogus_kind"),
    ],
)
def test_registry_unknown_kind_error(isolated_registry, call):
    with pytest.raises(ValueError) as excinfo:
        call()
    message = str(excinfo.value)
    assert "argument `kind`" in message
    assert "kr_test_bogus_kind" in message
    for kind in registry.KINDS:
        assert kind in message


def test_registry_unknown_name_lists_available(isolated_registry):
    registry.register("ood_scorer", "kr_test_zeta")(KrTestScorerPlain)
    registry.register("ood_scorer", "kr_test_alpha")(KrTestScorerWithConfig)
    with pytest.raises(ValueError) as excinfo:
        registry.get("ood_scorer", "kr_test_alphaa")
    message = str(excinfo.value)
    assert "Unknown ood_scorer 'kr_test_alphaa'" in message
    names = registry.available("ood_scorer")
    assert "Available: " + ", ".join(repr(n) for n in names) in message
    assert message.index("'kr_test_alpha'") < message.index("'kr_test_zeta'")

    with pytest.raises(ValueError, match="Unknown ood_scorer"):
        registry.get_object("ood_scorer", "kr_test_alphaa")
    with pytest.raises(ValueError, match="Unknown ood_scorer 'KR_TEST_NONE'"):
        registry.get("ood_scorer", {"class_name": "KR_TEST_NONE"})


def test_registry_unknown_name_mentions_failed_plugins(
    isolated_registry, monkeypatch
):
    monkeypatch.setitem(
        registry._failed_plugins, "kr_test_broken", "ImportError: boom"
    )
    with pytest.raises(ValueError, match="kr_test_broken.*ImportError: boom"):
        registry.get("attack", "kr_test_missing")


def test_registry_available_is_sorted(isolated_registry):
    for name in ("kr_test_c", "KR_TEST_A", "kr_test_b"):
        registry.register("ood_scorer", name)(
            type(name, (KrTestScorerPlain,), {})  # distinct objects, one per name
        )
    names = registry.available("ood_scorer")
    assert names == sorted(names)
    ours = [n for n in names if n.startswith("kr_test_")]
    assert ours == ["kr_test_a", "kr_test_b", "kr_test_c"]


@pytest.mark.parametrize("bad", [None, 3, 2.5, ["kr_test"], b"kr_test", True])
def test_registry_get_rejects_unsupported_identifiers(isolated_registry, bad):
    with pytest.raises(ValueError) as excinfo:
        registry.get("calibration_metric", bad)
    message = str(excinfo.value)
    assert "argument `identifier`" in message
    assert repr(bad) in message
    assert "registered name" in message and "config dict" in message


# --- Argument checks --------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, expected",
    [
        (lambda: registry.get("attack", None), ValueError, ["`identifier`", "None"]),
        (lambda: registry.get("attack", 42), ValueError, ["`identifier`", "42"]),
        (lambda: registry.get("attack", ""), ValueError, ["`identifier`", "''"]),
        (lambda: registry.get(None, "fgsm"), ValueError, ["`kind`", "None"]),
        (lambda: registry.get("attacks", "fgsm"), ValueError, ["`kind`", "'attacks'"]),
        (lambda: registry.get(["attack"], "fgsm"), ValueError, ["`kind`", "['attack']"]),
        (
            lambda: registry.get("attack", {"class_name": 42}),
            TypeError,
            ["`identifier['class_name']`", "42", "int"],
        ),
        (
            lambda: registry.get("attack", {"class_name": "fgsm", "config": [1]}),
            TypeError,
            ["`identifier['config']`", "[1]", "list"],
        ),
        (lambda: registry.get_object("attack", 42), TypeError, ["`name`", "42", "int"]),
        (lambda: registry.get_object("attack", None), TypeError, ["`name`", "None"]),
        (lambda: registry.get_object("attack", ""), ValueError, ["`name`", "''"]),
        (lambda: registry.get_object(None, "fgsm"), ValueError, ["`kind`", "None"]),
        (lambda: registry.available(None), ValueError, ["`kind`", "None"]),
        (lambda: registry.available(42), ValueError, ["`kind`", "42"]),
        (lambda: registry.register("attack", 42), TypeError, ["`name`", "42"]),
        (lambda: registry.register("attack", ""), ValueError, ["`name`", "''"]),
        (
            lambda: registry.register("attack", override="yes"),
            TypeError,
            ["`override`", "'yes'"],
        ),
        (
            # A bare `@register` passes the class as the kind.
            lambda: registry.register(KrTestAttack),
            ValueError,
            ["`kind`", "KrTestAttack", "@register(kind, name)"],
        ),
        (
            lambda: registry.register("calibration_metric")(
                functools.partial(kr_test_metric_fn)
            ),
            TypeError,
            ["calibration_metric", "functools.partial", "`__name__`", "Pass `name`"],
        ),
    ],
    ids=[
        "get-none-identifier",
        "get-int-identifier",
        "get-empty-identifier",
        "get-none-kind",
        "get-unknown-kind",
        "get-list-kind",
        "get-int-class-name",
        "get-list-config",
        "get_object-int-name",
        "get_object-none-name",
        "get_object-empty-name",
        "get_object-none-kind",
        "available-none-kind",
        "available-int-kind",
        "register-int-name",
        "register-empty-name",
        "register-str-override",
        "register-bare-decorator",
        "register-nameless-object",
    ],
)
def test_registry_bad_arguments_name_argument_and_value(
    fresh_plugin_state, count_entry_point_scans, call, error, expected
):
    with pytest.raises(error) as excinfo:
        call()
    message = str(excinfo.value)
    for part in expected:
        assert part in message
    # Arguments are checked before plugins are looked for.
    assert count_entry_point_scans == []


# --- Contracts of the kinds ---------------------------------------------------


class KrTestScorerNoScore:
    shares_forward_pass = False

    def fit(self, model, x, y=None, batch_size=None):
        return self


class KrTestSharedScorerNoScoreOutputs(KrTestScorerPlain):
    shares_forward_pass = True

    def feature_layers(self):
        return ()

    def logits(self, outputs):
        return outputs


class KrTestAttackNoWithEpsilon:
    def generate(self, model, x, y=None, verbose=0):
        return x

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


class KrTestRecipeNoTransform:
    concatenates = False


class KrTestRecipeNoConcatenates:
    def transform(self, data, gradient, logits, seed):
        return data


class KrTestConcatenatingRecipeNoCombine(KrTestRecipe):
    concatenates = True


class KrTestCalibratorNotALayer:
    def fit(self, y_pred, y_true, *, sample_weight=None):
        return self

    @classmethod
    def calibrate(cls, model, x, y, **kwargs):
        return model


class KrTestCalibratorNoCalibrate(keras.layers.Layer):
    def fit(self, y_pred, y_true, *, sample_weight=None):
        return self


class KrTestMetricClassNotAMetric:
    def update_state(self, y_true, y_pred, sample_weight=None):
        pass


def kr_test_metric_one_argument(y_true):
    return 0.0


def kr_test_metric_without_from_logits(y_true, y_pred, *, sample_weight=None):
    return 0.0


def kr_test_metric_extra_argument(
    y_true, y_pred, num_classes, *, from_logits=False, sample_weight=None
):
    return 0.0


@pytest.mark.parametrize(
    "kind, obj, problem",
    [
        ("ood_scorer", KrTestScorerNoScore, "no callable `score`"),
        ("ood_scorer", KrTestSharedScorerNoScoreOutputs, "no callable `score_outputs`"),
        # A function (this module's docstring example used to register one).
        ("ood_scorer", kr_test_metric_fn, "not a class (it is a function)"),
        ("ood_scorer", KrTestScorerPlain(), "not a class"),
        ("attack", KrTestAttackNoWithEpsilon, "no callable `with_epsilon`"),
        ("attack", KrTestScorerPlain, "`generate`, `get_config`, `from_config`"),
        ("training_recipe", KrTestRecipeNoTransform, "no callable `transform`"),
        ("training_recipe", KrTestRecipeNoConcatenates, "no `concatenates` attribute"),
        (
            "training_recipe",
            KrTestConcatenatingRecipeNoCombine,
            "no callable `combine_losses`",
        ),
        ("calibrator", KrTestCalibratorNotALayer, "not a keras.layers.Layer subclass"),
        ("calibrator", KrTestCalibratorNoCalibrate, "no callable `calibrate`"),
        (
            "calibration_metric",
            kr_test_metric_one_argument,
            "does not take `y_true` and `y_pred` as positional arguments",
        ),
        (
            "calibration_metric",
            kr_test_metric_without_from_logits,
            "does not take the keyword argument `from_logits`",
        ),
        (
            "calibration_metric",
            kr_test_metric_extra_argument,
            "missing a required argument: 'num_classes'",
        ),
        (
            "calibration_metric",
            KrTestMetricClassNotAMetric,
            "not a keras.metrics.Metric subclass",
        ),
        ("calibration_metric", 42, "not callable (it is a int)"),
    ],
)
def test_registry_register_checks_the_contract_of_the_kind(
    isolated_registry, kind, obj, problem
):
    before = registry.available(kind)
    with pytest.raises(TypeError) as excinfo:
        registry.register(kind, "kr_test_bad")(obj)
    message = str(excinfo.value)
    assert f"as the {kind} 'kr_test_bad'" in message
    assert problem in message
    # The message states the whole contract.
    assert f"Each {kind} must be" in message
    assert registry.available(kind) == before


class KrTestMetricWithKwargs:
    def __call__(self, y_true, y_pred, **kwargs):
        return 0.0


def kr_test_metric_with_kwargs(y_true, y_pred, **kwargs):
    return 0.5


class KrTestConcatenatingRecipe(KrTestRecipe):
    concatenates = True

    def combine_losses(self, clean_loss, adversarial_loss, clean_pred, adversarial_pred):
        return clean_loss


@pytest.mark.parametrize(
    "kind, obj",
    [
        ("ood_scorer", KrTestScorerPlain),
        # Not sharing the forward pass: `score` alone is enough.
        ("ood_scorer", KrTestScorerWithConfig),
        ("attack", KrTestAttack),
        ("training_recipe", KrTestRecipe),
        ("training_recipe", KrTestConcatenatingRecipe),
        ("calibrator", KrTestCalibrator),
        ("calibration_metric", kr_test_metric_fn),
        ("calibration_metric", kr_test_metric_with_kwargs),
        ("calibration_metric", functools.partial(kr_test_metric_fn)),
        ("calibration_metric", KrTestMetricWithKwargs()),
        ("calibration_metric", keras.metrics.AUC),
    ],
)
def test_registry_register_accepts_objects_meeting_the_contract(
    isolated_registry, kind, obj
):
    assert registry.register(kind, "kr_test_good")(obj) is obj
    assert registry.get_object(kind, "kr_test_good") is obj


def test_registry_every_registered_entry_meets_its_contract():
    # The library's own entries went through `register` too; installed
    # plugins are checked along with them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", registry.PluginLoadWarning)
        registry.load_plugins()
    expected_builtins = {
        "calibration_metric": {"ece", "mce", "brier", "nll"},
        "calibrator": {"temperature_scaling", "vector_scaling", "matrix_scaling"},
        "ood_scorer": {"msp", "energy", "odin", "mahalanobis"},
        "attack": {"fgsm", "pgd", "apgd", "square"},
        "training_recipe": {"fgsm", "pgd", "trades", "free"},
    }
    for kind, entries in registry._registry.items():
        builtins = {name for name, obj in entries.items() if registry._is_builtin(obj)}
        assert expected_builtins[kind] <= builtins, kind
        for name, obj in entries.items():
            registry._check_contract(kind, name, obj)


# --- Overriding built-ins -----------------------------------------------------


def test_registry_overriding_a_builtin_warns(isolated_registry):
    original = registry.get_object("calibration_metric", "ece")
    assert registry._is_builtin(original)
    with pytest.raises(ValueError, match="override=True"):
        registry.register("calibration_metric", "ece")(kr_test_metric_fn)

    with pytest.warns(UserWarning) as record:
        registry.register("calibration_metric", "ECE", override=True)(kr_test_metric_fn)
    [warning] = [w for w in record if "built-in" in str(w.message)]
    message = str(warning.message)
    assert "built-in calibration_metric 'ece'" in message
    assert "expected_calibration_error" in message and "kr_test_metric_fn" in message
    # It points at the code that overrides.
    assert warning.filename == __file__
    assert registry.get("calibration_metric", "ece") is kr_test_metric_fn

    # Putting the built-in back replaces a non-built-in: silent.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register("calibration_metric", "ece", override=True)(original)
        # So is re-registering a built-in as itself.
        registry.register("calibration_metric", "ece", override=True)(original)
    assert registry.get_object("calibration_metric", "ece") is original


def test_registry_plugin_named_like_the_package_is_not_builtin(isolated_registry):
    # An installed plugin package such as `keras_reliability_gradnorm`
    # shares the prefix of the package but is not part of it.
    plugin_class = type(
        "KrTestPluginScorer", (KrTestScorerPlain,), {"__module__": "keras_reliability_kr_test.x"}
    )
    assert not registry._is_builtin(plugin_class)
    registry.register("ood_scorer", "kr_test_plugin_entry")(plugin_class)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register("ood_scorer", "kr_test_plugin_entry", override=True)(
            KrTestScorerWithConfig
        )
    assert registry.get_object("ood_scorer", "kr_test_plugin_entry") is KrTestScorerWithConfig


# --- Docstring examples -------------------------------------------------------


def _doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for test in finder.find(registry) if test.examples]


def _fenced_python_examples():
    docstrings = [("registry", registry.__doc__)] + [
        (name, obj.__doc__)
        for name, obj in vars(registry).items()
        if callable(obj) and getattr(obj, "__module__", None) == registry.__name__
    ]
    return [
        (f"{name}[{index}]", code)
        for name, doc in docstrings
        for index, code in enumerate(re.findall(r"```python\n(.*?)```", doc or "", re.S))
    ]


def test_registry_docstrings_have_examples():
    names = {test.name.rsplit(".", 1)[-1] for test in _doctests()}
    assert {"register", "get", "get_object", "available"} <= names
    assert [name for name, _ in _fenced_python_examples()] == ["registry[0]"]


@pytest.mark.parametrize("test", _doctests(), ids=lambda test: test.name)
def test_registry_doctest_examples_run(isolated_registry, test):
    output = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=output.append)
    assert runner.failures == 0, "".join(output)


@pytest.mark.parametrize(
    "code", [code for _, code in _fenced_python_examples()], ids=lambda code: "fenced"
)
def test_registry_fenced_examples_run(isolated_registry, code):
    namespace = {"__name__": "kr_test_docstring_example"}
    exec(compile(textwrap.dedent(code), "<registry docstring>", "exec"), namespace)


# --- Entry-point plugins ---------------------------------------------------


@pytest.fixture
def fresh_plugin_state(isolated_registry, monkeypatch):
    """Registry state where entry-point plugins have not been loaded yet."""
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    return registry


def _install_fake_plugins(path, monkeypatch, dist_name, modules):
    """Writes a fake installed distribution with one entry point per module.

    Args:
        path: folder put on `sys.path`.
        dist_name: distribution name, e.g. `"kr_test_plugin"`.
        modules: `{entry point name: (module name, source)}`, in the order
            the entry points are declared.
    """
    path.mkdir(exist_ok=True)
    for module, source in modules.values():
        (path / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = path / f"{dist_name}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name.replace('_', '-')}\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\n"
        + "".join(f"{name} = {module}\n" for name, (module, _) in modules.items())
    )
    monkeypatch.syspath_prepend(str(path))
    # Plugins installed in the environment are left out: they are not what
    # these tests are about, and a stale one would add its own warnings.
    entry_points = registry.metadata.entry_points

    def only_fake_plugins(**kwargs):
        found = entry_points(**kwargs)
        if kwargs.get("group") != registry.ENTRY_POINT_GROUP:
            return found
        return registry.metadata.EntryPoints(
            entry_point for entry_point in found if entry_point.value.startswith("kr_test_")
        )

    monkeypatch.setattr(registry.metadata, "entry_points", only_fake_plugins)


@pytest.fixture
def kr_test_plugin_dist(tmp_path, monkeypatch):
    """A fake installed distribution with one good and one broken plugin."""
    modules = {
        "kr_test_ok": (
            "kr_test_plugin_ok",
            """
            from keras_reliability import registry

            @registry.register("calibration_metric", "kr_test_plugin_metric")
            def kr_test_plugin_metric(y_true, y_pred, *, from_logits=False, sample_weight=None):
                return 0.5
            """,
        ),
        "kr_test_broken": (
            "kr_test_plugin_broken",
            'raise ImportError("kr_test deliberately broken plugin")\n',
        ),
    }
    _install_fake_plugins(tmp_path, monkeypatch, "kr_test_plugin", modules)
    yield tmp_path
    for module, _ in modules.values():
        sys.modules.pop(module, None)


@pytest.fixture
def count_entry_point_scans(monkeypatch):
    """Counts calls to `importlib.metadata.entry_points` for our group."""
    calls = []
    original = registry.metadata.entry_points

    def counting_entry_points(**kwargs):
        if kwargs.get("group") == registry.ENTRY_POINT_GROUP:
            calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(
        registry.metadata, "entry_points", counting_entry_points
    )
    return calls


def test_registry_plugins_loaded_from_entry_points(
    fresh_plugin_state, kr_test_plugin_dist, count_entry_point_scans
):
    with pytest.warns(registry.PluginLoadWarning) as record:
        names = registry.available("calibration_metric")
    assert "kr_test_plugin_metric" in names
    assert len(count_entry_point_scans) == 1

    metric = registry.get("calibration_metric", "kr_test_plugin_metric")
    assert callable(metric)
    assert metric.__module__ == "kr_test_plugin_ok"
    assert metric(None, None) == 0.5

    messages = [str(w.message) for w in record]
    assert len(messages) == 1
    assert "kr_test_broken" in messages[0]
    assert "kr_test_plugin_broken" in messages[0]
    assert "kr_test deliberately broken plugin" in messages[0]
    assert not any("kr_test_ok" in m for m in messages)

    failed = registry.failed_plugins()
    assert list(failed) == ["kr_test_broken"]
    assert failed["kr_test_broken"].startswith("ImportError: ")
    assert "kr_test deliberately broken plugin" in failed["kr_test_broken"]
    # The returned dict is a copy.
    failed.clear()
    assert "kr_test_broken" in registry.failed_plugins()

    # Second calls neither rescan entry points nor warn again.
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        registry.load_plugins()
        registry.available("calibration_metric")
        registry.get_object("calibration_metric", "kr_test_plugin_metric")
    assert not [w for w in again if w.category is registry.PluginLoadWarning]
    assert len(count_entry_point_scans) == 1

    # Unknown-name errors point at the failed plugin.
    with pytest.raises(ValueError, match="kr_test_broken"):
        registry.get("calibration_metric", "kr_test_not_there")


def test_registry_plugins_not_loaded_by_register(
    fresh_plugin_state, kr_test_plugin_dist, count_entry_point_scans
):
    registry.register("attack", "kr_test_lazy")(KrTestAttack)
    assert count_entry_point_scans == []
    assert "kr_test_plugin_ok" not in sys.modules

    with pytest.warns(registry.PluginLoadWarning, match="kr_test_broken"):
        registry.load_plugins()
    assert len(count_entry_point_scans) == 1
    assert "kr_test_plugin_metric" in registry.available("calibration_metric")
    assert len(count_entry_point_scans) == 1


def test_registry_plugins_loaded_once_across_threads(
    fresh_plugin_state, kr_test_plugin_dist, count_entry_point_scans
):
    results = []
    errors = []
    barrier = threading.Barrier(8)

    def worker():
        try:
            barrier.wait()
            results.append(registry.available("calibration_metric"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", registry.PluginLoadWarning)
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert not errors
    assert len(count_entry_point_scans) == 1
    assert len(results) == 8
    # Nobody saw a half-loaded registry.
    assert all("kr_test_plugin_metric" in names for names in results)


# --- Plugins that fail half way ------------------------------------------------

_METRIC_SOURCE = """
@registry.register("calibration_metric", {name!r}{override})
def {function}(y_true, y_pred, *, from_logits=False, sample_weight=None):
    return 0.0
"""


def _metric_source(name, function, override=False):
    return _METRIC_SOURCE.format(
        name=name, function=function, override=", override=True" if override else ""
    )


_FAULTY_PLUGINS = {
    "kr_test_exits": (
        "kr_test_plugin_exits",
        "import sys\nfrom keras_reliability import registry\n"
        + _metric_source("kr_test_exit_metric", "exit_metric")
        + "sys.exit(3)\n",
    ),
    "kr_test_raises": (
        "kr_test_plugin_raises",
        "from keras_reliability import registry\n"
        + _metric_source("kr_test_half_a", "half_a")
        + _metric_source("kr_test_half_b", "half_b")
        + 'raise RuntimeError("kr_test failed half way")\n',
    ),
    "kr_test_overrides": (
        "kr_test_plugin_overrides",
        "from keras_reliability import registry\n"
        + _metric_source("kr_test_taken", "replacement", override=True)
        + _metric_source("ece", "fake_ece", override=True)
        + 'raise ValueError("kr_test failed after overriding")\n',
    ),
    "kr_test_contract": (
        "kr_test_plugin_contract",
        "from keras_reliability import registry\n"
        + _metric_source("kr_test_before_bad_class", "fine")
        + """
@registry.register("ood_scorer", "kr_test_scorer_without_score")
class NoScore:
    shares_forward_pass = False

    def fit(self, model, x, y=None, batch_size=None):
        return self
""",
    ),
    "kr_test_survivor": (
        "kr_test_plugin_survivor",
        "from keras_reliability import registry\n"
        + _metric_source("kr_test_survivor_metric", "survivor"),
    ),
}


@pytest.fixture
def kr_test_faulty_plugins(tmp_path, monkeypatch):
    _install_fake_plugins(
        tmp_path / "faulty", monkeypatch, "kr_test_faulty", _FAULTY_PLUGINS
    )
    yield
    for module, _ in _FAULTY_PLUGINS.values():
        sys.modules.pop(module, None)


def test_registry_failing_plugins_are_isolated_and_rolled_back(
    fresh_plugin_state, kr_test_faulty_plugins
):
    registry.register("calibration_metric", "kr_test_taken")(kr_test_metric_fn)
    # Read directly: a lookup would load the plugins now.
    builtin_ece = registry._registry["calibration_metric"]["ece"]

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        registry.load_plugins()  # `sys.exit(3)` in a plugin must not end the test

    plugin_warnings = {
        name: str(w.message)
        for w in record
        if w.category is registry.PluginLoadWarning
        for name in _FAULTY_PLUGINS
        if f"plugin {name!r}" in str(w.message)
    }
    assert set(plugin_warnings) == {
        "kr_test_exits",
        "kr_test_raises",
        "kr_test_overrides",
        "kr_test_contract",
    }
    assert "SystemExit: 3" in plugin_warnings["kr_test_exits"]
    assert "calibration_metric 'kr_test_exit_metric'" in plugin_warnings["kr_test_exits"]
    assert (
        "calibration_metric 'kr_test_half_a', calibration_metric 'kr_test_half_b'"
        in plugin_warnings["kr_test_raises"]
    )

    failed = {k: v for k, v in registry.failed_plugins().items() if k.startswith("kr_test")}
    assert failed == {
        "kr_test_exits": "SystemExit: 3",
        "kr_test_raises": "RuntimeError: kr_test failed half way",
        "kr_test_overrides": "ValueError: kr_test failed after overriding",
        "kr_test_contract": failed["kr_test_contract"],
    }
    assert failed["kr_test_contract"].startswith(
        "TypeError: Cannot register <class 'kr_test_plugin_contract.NoScore'> as the "
        "ood_scorer 'kr_test_scorer_without_score': it has no callable `score`."
    )

    # Nothing of the failed plugins is left; what they replaced is back.
    metrics = registry.available("calibration_metric")
    for name in ("kr_test_exit_metric", "kr_test_half_a", "kr_test_half_b"):
        assert name not in metrics
    assert "kr_test_before_bad_class" not in metrics
    assert "kr_test_scorer_without_score" not in registry.available("ood_scorer")
    assert registry.get_object("calibration_metric", "kr_test_taken") is kr_test_metric_fn
    assert registry.get_object("calibration_metric", "ece") is builtin_ece
    # Overriding the built-in warned before the plugin failed.
    assert any(
        w.category is UserWarning and "built-in calibration_metric 'ece'" in str(w.message)
        for w in record
    )
    # A plugin declared after the failures still loads.
    assert "kr_test_survivor_metric" in metrics
    assert registry.get("calibration_metric", "kr_test_survivor_metric")(None, None) == 0.0
    assert "kr_test_survivor" not in registry.failed_plugins()


def test_registry_keyboard_interrupt_in_a_plugin_propagates(
    fresh_plugin_state, tmp_path, monkeypatch
):
    plugins = {
        "kr_test_interrupts": (
            "kr_test_plugin_interrupts",
            "from keras_reliability import registry\n"
            + _metric_source("kr_test_interrupted_metric", "interrupted")
            + "raise KeyboardInterrupt\n",
        )
    }
    _install_fake_plugins(tmp_path, monkeypatch, "kr_test_interrupting", plugins)
    try:
        with pytest.raises(KeyboardInterrupt):
            registry.load_plugins()
    finally:
        sys.modules.pop("kr_test_plugin_interrupts", None)
    # Rolled back and not marked as loaded: the next lookup tries again.
    assert "kr_test_interrupted_metric" not in registry._registry["calibration_metric"]
    assert registry._plugins_loaded is False
    assert registry._plugins_loading is False
    assert "kr_test_interrupts" not in registry.failed_plugins()
