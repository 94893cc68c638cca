import sys
import textwrap
import threading
import warnings

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


class KrTestMetricWithConfig:
    def __init__(self, num_bins=15, from_config_used=False):
        self.num_bins = num_bins
        self.from_config_used = from_config_used

    @classmethod
    def from_config(cls, config):
        return cls(from_config_used=True, **config)


class KrTestMetricPlain:
    def __init__(self, num_bins=15):
        self.num_bins = num_bins


def kr_test_score_fn(logits):
    return logits


def test_registry_register_returns_object_and_get_by_name(isolated_registry):
    decorated = registry.register("calibration_metric", "kr_test_Metric")(
        KrTestMetricPlain
    )
    assert decorated is KrTestMetricPlain

    for name in ("kr_test_metric", "KR_TEST_METRIC", "kr_test_Metric"):
        metric = registry.get("calibration_metric", name)
        assert isinstance(metric, KrTestMetricPlain)
        assert metric.num_bins == 15
    assert "kr_test_metric" in registry.available("calibration_metric")


def test_registry_default_name_is_dunder_name(isolated_registry):
    registry.register("ood_scorer")(kr_test_score_fn)
    assert "kr_test_score_fn" in registry.available("ood_scorer")
    # Functions are returned as is, not called.
    assert registry.get("ood_scorer", "KR_TEST_SCORE_FN") is kr_test_score_fn


def test_registry_get_object_does_not_instantiate(isolated_registry):
    registry.register("calibrator", "kr_test_plain")(KrTestMetricPlain)
    assert (
        registry.get_object("calibrator", "Kr_Test_Plain") is KrTestMetricPlain
    )


def test_registry_get_config_dict_uses_from_config(isolated_registry):
    registry.register("calibration_metric", "kr_test_cfg")(
        KrTestMetricWithConfig
    )
    metric = registry.get(
        "calibration_metric",
        {"class_name": "KR_TEST_CFG", "config": {"num_bins": 7}},
    )
    assert isinstance(metric, KrTestMetricWithConfig)
    assert metric.num_bins == 7
    assert metric.from_config_used


def test_registry_get_config_dict_without_from_config(isolated_registry):
    registry.register("calibration_metric", "kr_test_plain")(KrTestMetricPlain)
    metric = registry.get(
        "calibration_metric",
        {"class_name": "kr_test_plain", "config": {"num_bins": 3}},
    )
    assert isinstance(metric, KrTestMetricPlain)
    assert metric.num_bins == 3


def test_registry_get_config_dict_for_function(isolated_registry):
    registry.register("ood_scorer")(kr_test_score_fn)
    assert (
        registry.get("ood_scorer", {"class_name": "kr_test_score_fn"})
        is kr_test_score_fn
    )
    with pytest.raises(ValueError, match="kr_test_score_fn"):
        registry.get(
            "ood_scorer",
            {"class_name": "kr_test_score_fn", "config": {"a": 1}},
        )


def test_registry_get_config_dict_missing_class_name(isolated_registry):
    with pytest.raises(ValueError, match="class_name"):
        registry.get("calibration_metric", {"config": {}})


def test_registry_get_class_instance_and_callable_passthrough(
    isolated_registry,
):
    # A class (registered or not) is instantiated.
    metric = registry.get("calibration_metric", KrTestMetricPlain)
    assert isinstance(metric, KrTestMetricPlain)
    # An instance is returned unchanged, even if not callable.
    instance = KrTestMetricPlain(num_bins=4)
    assert registry.get("calibrator", instance) is instance
    # Any callable is returned unchanged.
    assert registry.get("ood_scorer", kr_test_score_fn) is kr_test_score_fn

    def kr_test_lambda(x):
        return x

    assert registry.get("attack", kr_test_lambda) is kr_test_lambda


def test_registry_duplicate_name_raises_unless_override(isolated_registry):
    registry.register("attack", "kr_test_dup")(KrTestMetricPlain)
    # Re-registering the same object is a no-op.
    registry.register("attack", "kr_test_dup")(KrTestMetricPlain)
    # Names are case-insensitive, so this clashes too.
    with pytest.raises(ValueError, match="kr_test_dup.*override=True"):
        registry.register("attack", "KR_TEST_DUP")(KrTestMetricWithConfig)
    assert registry.get_object("attack", "kr_test_dup") is KrTestMetricPlain

    registry.register("attack", "kr_test_dup", override=True)(
        KrTestMetricWithConfig
    )
    replaced = registry.get_object("attack", "kr_test_dup")
    assert replaced is KrTestMetricWithConfig


def test_registry_reregistering_reloaded_definition_is_allowed(
    isolated_registry,
):
    # Simulates `importlib.reload`: a new object with the same qualname.
    def make():
        class KrTestReloaded:
            pass

        return KrTestReloaded

    first, second = make(), make()
    assert first is not second
    registry.register("calibrator")(first)
    registry.register("calibrator")(second)
    assert registry.get_object("calibrator", "KrTestReloaded") is second


def test_registry_same_name_in_different_kinds_is_independent(
    isolated_registry,
):
    registry.register("attack", "kr_test_shared")(KrTestMetricPlain)
    registry.register("calibrator", "kr_test_shared")(KrTestMetricWithConfig)
    assert registry.get_object("attack", "kr_test_shared") is KrTestMetricPlain
    assert (
        registry.get_object("calibrator", "kr_test_shared")
        is KrTestMetricWithConfig
    )
    assert "kr_test_shared" not in registry.available("ood_scorer")


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
    assert "kind" in message
    assert "kr_test_bogus_kind" in message
    for kind in registry.KINDS:
        assert kind in message


def test_registry_unknown_name_lists_available(isolated_registry):
    registry.register("calibration_metric", "kr_test_zeta")(KrTestMetricPlain)
    registry.register("calibration_metric", "kr_test_alpha")(
        KrTestMetricWithConfig
    )
    with pytest.raises(ValueError) as excinfo:
        registry.get("calibration_metric", "kr_test_alphaa")
    message = str(excinfo.value)
    assert "Unknown calibration_metric 'kr_test_alphaa'" in message
    names = registry.available("calibration_metric")
    assert "Available: " + ", ".join(repr(n) for n in names) in message
    assert message.index("'kr_test_alpha'") < message.index("'kr_test_zeta'")

    with pytest.raises(ValueError, match="Unknown calibration_metric"):
        registry.get_object("calibration_metric", "kr_test_alphaa")


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
            type(name, (), {})  # distinct objects, one per name
        )
    names = registry.available("ood_scorer")
    assert names == sorted(names)
    ours = [n for n in names if n.startswith("kr_test_")]
    assert ours == ["kr_test_a", "kr_test_b", "kr_test_c"]


@pytest.mark.parametrize("bad", [None, 3, 2.5, ["kr_test"], b"kr_test"])
def test_registry_get_rejects_unsupported_identifiers(isolated_registry, bad):
    with pytest.raises(ValueError) as excinfo:
        registry.get("calibration_metric", bad)
    message = str(excinfo.value)
    assert repr(bad) in message
    assert "registered name" in message and "config dict" in message


# --- Entry-point plugins ---------------------------------------------------


@pytest.fixture
def fresh_plugin_state(isolated_registry, monkeypatch):
    """Registry state where entry-point plugins have not been loaded yet."""
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    return registry


@pytest.fixture
def kr_test_plugin_dist(tmp_path, monkeypatch):
    """A fake installed distribution with one good and one broken plugin."""
    (tmp_path / "kr_test_plugin_ok.py").write_text(
        textwrap.dedent(
            """
            from keras_reliability import registry

            @registry.register("ood_scorer", "kr_test_plugin_scorer")
            def kr_test_plugin_scorer(logits):
                return logits
            """
        )
    )
    (tmp_path / "kr_test_plugin_broken.py").write_text(
        'raise ImportError("kr_test deliberately broken plugin")\n'
    )
    dist_info = tmp_path / "kr_test_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kr-test-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        f"[{registry.ENTRY_POINT_GROUP}]\n"
        "kr_test_ok = kr_test_plugin_ok\n"
        "kr_test_broken = kr_test_plugin_broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for module in ("kr_test_plugin_ok", "kr_test_plugin_broken"):
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
        names = registry.available("ood_scorer")
    assert "kr_test_plugin_scorer" in names
    assert len(count_entry_point_scans) == 1

    scorer = registry.get("ood_scorer", "kr_test_plugin_scorer")
    assert callable(scorer)
    assert scorer.__module__ == "kr_test_plugin_ok"
    assert scorer(5) == 5

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
        registry.available("ood_scorer")
        registry.get_object("ood_scorer", "kr_test_plugin_scorer")
    assert not [w for w in again if w.category is registry.PluginLoadWarning]
    assert len(count_entry_point_scans) == 1

    # Unknown-name errors point at the failed plugin.
    with pytest.raises(ValueError, match="kr_test_broken"):
        registry.get("ood_scorer", "kr_test_not_there")


def test_registry_plugins_not_loaded_by_register(
    fresh_plugin_state, kr_test_plugin_dist, count_entry_point_scans
):
    registry.register("attack", "kr_test_lazy")(KrTestMetricPlain)
    assert count_entry_point_scans == []
    assert "kr_test_plugin_ok" not in sys.modules

    with pytest.warns(registry.PluginLoadWarning, match="kr_test_broken"):
        registry.load_plugins()
    assert len(count_entry_point_scans) == 1
    assert "kr_test_plugin_scorer" in registry.available("ood_scorer")
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
            results.append(registry.available("ood_scorer"))
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
    assert all("kr_test_plugin_scorer" in names for names in results)
