"""`log_dir` faults of CalibrationCallback and OODMonitorCallback.

Their `on_train_begin` refuses an unwritable `log_dir` when `plot_every` is
set; a plot that cannot be written mid-fit warns and the fit goes on.

The save/refuse machinery itself (`check_log_dir`, `save_png`, the
TensorBoard images, the report) is tested in `test_log_dir.py`.
"""

import errno
import os
import warnings

import keras
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import keras_reliability as kr  # noqa: E402

ENOSPC_REASON = os.strerror(errno.ENOSPC)
OWNERS = ("CalibrationCallback", "OODMonitorCallback")


def tiny_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, size=n).astype("int32")


def tiny_model(seed=0):
    """Dense logits on 4 features, 3 classes."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def make_callback(owner, log_dir, plot_every=1):
    x, y = tiny_data()
    if owner == "CalibrationCallback":
        return kr.callbacks.CalibrationCallback(
            (x, y), metrics=("ece",), plot_every=plot_every, log_dir=log_dir
        )
    ood = np.random.default_rng(1).uniform(-4, 4, size=(16, 4)).astype("float32")
    return kr.callbacks.OODMonitorCallback(
        x, ood_data=ood, scorers=("msp", "energy"), plot_every=plot_every, log_dir=log_dir
    )


def iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def fit(model, callback, epochs=2):
    x, y = tiny_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, callbacks=[callback])
    return history, caught


def fail_replace_into(monkeypatch, directory):
    """`os.replace` raises ENOSPC for files moved into `directory`; returns the targets tried."""
    real_replace = os.replace
    directory = os.path.abspath(directory)
    attempts = []

    def replace(source, target, *args, **kwargs):
        if os.path.dirname(os.path.abspath(target)) != directory:
            return real_replace(source, target, *args, **kwargs)
        attempts.append(os.fspath(target))
        raise OSError(errno.ENOSPC, ENOSPC_REASON, os.fspath(target))

    monkeypatch.setattr(os, "replace", replace)
    return attempts


def blocked_path(tmp_path, where):
    blocker = tmp_path / "logs"
    blocker.write_text("x")
    return blocker if where == "file_in_place" else blocker / "sub"


@pytest.mark.parametrize("where", ["file_in_place", "under_a_file"])
@pytest.mark.parametrize("owner", OWNERS)
def test_unwritable_log_dir_is_refused_before_the_first_step(tmp_path, owner, where):
    log_dir = blocked_path(tmp_path, where)
    model = tiny_model()
    with pytest.raises(ValueError) as error:
        model.fit(*tiny_data(), epochs=2, verbose=0, callbacks=[make_callback(owner, str(log_dir))])
    message = str(error.value)
    assert message.startswith(f"{owner}: "), message
    assert "`log_dir`" in message and repr(str(log_dir)) in message, message
    assert "not a directory" in message.lower(), message
    assert iterations(model) == 0
    assert (tmp_path / "logs").read_text() == "x"


@pytest.mark.parametrize("owner", OWNERS)
def test_log_dir_is_created_in_on_train_begin(tmp_path, owner):
    log_dir = tmp_path / "runs" / "first"
    callback = make_callback(owner, str(log_dir))
    callback.set_model(tiny_model())
    callback.on_train_begin()
    assert log_dir.is_dir() and os.listdir(log_dir) == []


@pytest.mark.parametrize("owner", OWNERS)
def test_log_dir_without_plots_is_not_checked(tmp_path, owner):
    """Without `plot_every` nothing is written, so `log_dir` is not touched."""
    log_dir = blocked_path(tmp_path, "file_in_place")
    model = tiny_model()
    history, _ = fit(model, make_callback(owner, str(log_dir), plot_every=None))
    assert len(history.history["loss"]) == 2
    assert log_dir.read_text() == "x"


@pytest.mark.parametrize("owner", OWNERS)
def test_plot_write_failures_during_fit_warn_and_training_goes_on(tmp_path, monkeypatch, owner):
    log_dir = tmp_path / "logs"
    attempts = fail_replace_into(monkeypatch, log_dir)
    model = tiny_model()
    callback = make_callback(owner, str(log_dir))
    history, caught = fit(model, callback, epochs=3)

    assert len(history.history["loss"]) == 3
    assert iterations(model) == 3 * 4
    assert attempts, "no plot was written"
    found = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning)
        and str(w.message).startswith(f"{owner}: could not write the plot")
    ]
    assert len(found) == len(attempts), found
    assert all(ENOSPC_REASON in message for message in found)
    # Every diagnostic was still logged each epoch.
    for key in callback.log_keys:
        assert len(history.history[key]) == 3
    # No temporary or truncated file is left.
    assert [name for name in os.listdir(log_dir) if name != "reliability"] == []
