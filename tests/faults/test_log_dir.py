"""Unwritable, full and failing log directories: refused up front, warned about mid-fit.

An unwritable `log_dir` must be refused in `on_train_begin` with a
`ValueError` naming the callback, `log_dir`, the path and the reason; a
write that fails during `fit` warns and training goes on; every file is
written atomically, so a failed write leaves the previous file intact and
no temporary or truncated file behind.

Root ignores permission bits, so unwritable directories are made with a
file in place of the folder, a path under a file, and (when the tests run as
root and may mount) tiny tmpfs file systems, read-only or filled up. Failing
writes are also simulated deterministically with an `os.replace` that
raises ENOSPC.
"""

import errno
import io
import os
import subprocess
import warnings

import keras
import numpy as np
import pytest

pytest.importorskip("matplotlib")

import keras_reliability as kr  # noqa: E402
from keras_reliability import files  # noqa: E402
from keras_reliability.callbacks import tensorboard_images  # noqa: E402
from keras_reliability.callbacks.log_files import check_log_dir  # noqa: E402
from keras_reliability.callbacks.log_files import save_png  # noqa: E402
from keras_reliability.plotting import save_figure  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENOSPC_REASON = os.strerror(errno.ENOSPC)  # "No space left on device"


# ----------------------------------------------------------------------------
# Helpers and fixtures
# ----------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a tiny tmpfs: `tmpfs(options="size=256k")` returns its path.

    Skips unless the tests run as root in a place that allows `mount`.
    """
    mounted = []

    def mount(options="size=256k"):
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        # Lazily, in case a TensorBoard writer still holds a file open there.
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory):
    """Fills the file system of `directory` with a file named `filler`."""
    handle = os.open(os.path.join(directory, "filler"), os.O_WRONLY | os.O_CREAT)
    block = b"\0" * 4096
    try:
        with pytest.raises(OSError) as error:
            while True:
                os.write(handle, block)
        assert error.value.errno == errno.ENOSPC
    finally:
        os.close(handle)


def fail_replace_into(monkeypatch, directory, after=0):
    """`os.replace` raises ENOSPC for files moved into `directory` after `after` calls.

    Replacements elsewhere go through. Returns the list of attempted targets.
    """
    real_replace = os.replace
    directory = os.path.abspath(directory)
    attempts = []

    def replace(source, target, *args, **kwargs):
        if os.path.dirname(os.path.abspath(target)) != directory:
            return real_replace(source, target, *args, **kwargs)
        attempts.append(os.fspath(target))
        if len(attempts) <= after:
            return real_replace(source, target, *args, **kwargs)
        raise OSError(errno.ENOSPC, ENOSPC_REASON, os.fspath(target))

    monkeypatch.setattr(os, "replace", replace)
    return attempts


def png_bytes(size=64, seed=0):
    """A real PNG of random pixels (incompressible, so its size is about size**2 * 3 bytes)."""
    import matplotlib.image

    pixels = np.random.default_rng(seed).uniform(size=(size, size, 3))
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, pixels, format="png")
    return buffer.getvalue()


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


def iterations(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def messages(caught, owner):
    """Messages of the `UserWarning`s in `caught` that start with `owner`."""
    return [
        str(warning.message)
        for warning in caught
        if issubclass(warning.category, UserWarning) and str(warning.message).startswith(owner)
    ]


def assert_names(message, owner, path, reason):
    assert message.startswith(f"{owner}: "), message
    assert "`log_dir`" in message, message
    assert repr(str(path)) in message, message
    assert reason.lower() in message.lower(), message


# ----------------------------------------------------------------------------
# check_log_dir
# ----------------------------------------------------------------------------


def test_check_log_dir_creates_the_directory_and_leaves_nothing_in_it(tmp_path):
    log_dir = tmp_path / "runs" / "first"
    assert check_log_dir(log_dir, "Owner") == str(log_dir)
    assert log_dir.is_dir()
    assert os.listdir(log_dir) == []
    # An existing, non-empty directory is fine, and left as it was.
    (log_dir / "kept.png").write_bytes(b"old")
    assert check_log_dir(str(log_dir), "Owner") == str(log_dir)
    assert os.listdir(log_dir) == ["kept.png"]


def test_check_log_dir_refuses_a_file_in_place_of_the_folder(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ValueError) as error:
        check_log_dir(blocker, "CalibrationCallback")
    assert_names(str(error.value), "CalibrationCallback", blocker, "not a directory")
    assert isinstance(error.value.__cause__, OSError)
    assert blocker.read_text() == "a file, not a folder"


def test_check_log_dir_refuses_a_path_under_a_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    log_dir = blocker / "sub"
    with pytest.raises(ValueError) as error:
        check_log_dir(str(log_dir), "OODMonitorCallback")
    assert_names(str(error.value), "OODMonitorCallback", log_dir, os.strerror(errno.ENOTDIR))


@pytest.mark.parametrize("log_dir", [None, "", 3])
def test_check_log_dir_refuses_what_is_not_a_path(log_dir):
    expected = f"Owner: `log_dir` must be a directory path; received log_dir={log_dir!r}."
    with pytest.raises(ValueError) as error:
        check_log_dir(log_dir, "Owner")
    assert str(error.value) == expected


def test_check_log_dir_refuses_a_read_only_file_system(tmpfs):
    log_dir = tmpfs("ro,size=64k")
    with pytest.raises(ValueError) as error:
        check_log_dir(log_dir, "ReliabilityReport")
    assert_names(str(error.value), "ReliabilityReport", log_dir, os.strerror(errno.EROFS))
    with pytest.raises(ValueError) as error:
        check_log_dir(log_dir / "missing", "ReliabilityReport")
    missing = log_dir / "missing"
    assert_names(str(error.value), "ReliabilityReport", missing, os.strerror(errno.EROFS))


def test_check_log_dir_refuses_a_full_file_system(tmpfs):
    log_dir = tmpfs("size=64k")
    fill(log_dir)
    with pytest.raises(ValueError) as error:
        check_log_dir(log_dir, "ReliabilityReport")
    assert_names(str(error.value), "ReliabilityReport", log_dir, ENOSPC_REASON)
    assert os.listdir(log_dir) == ["filler"]


# ----------------------------------------------------------------------------
# files.write_atomically
# ----------------------------------------------------------------------------


def test_write_atomically_writes_bytes_and_text(tmp_path):
    png = png_bytes()
    assert files.write_atomically(tmp_path / "a.png", png) == str(tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == png
    files.write_atomically(str(tmp_path / "page.html"), "<p>é</p>")
    assert (tmp_path / "page.html").read_bytes() == "<p>é</p>".encode("utf-8")
    # Readable by others, as a plot or a report is meant to be.
    assert (tmp_path / "page.html").stat().st_mode & 0o777 == 0o644
    assert sorted(os.listdir(tmp_path)) == ["a.png", "page.html"]
    with pytest.raises(TypeError, match="`data` must be bytes or a string"):
        files.write_atomically(tmp_path / "b.png", 42)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "page.html"]


def test_write_atomically_failure_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"old")
    fail_replace_into(monkeypatch, tmp_path)
    with pytest.raises(OSError) as error:
        files.write_atomically(tmp_path / "a.png", png_bytes())
    assert error.value.errno == errno.ENOSPC
    assert (tmp_path / "a.png").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.png"]


def test_write_atomically_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmpfs):
    directory = tmpfs("size=64k")
    (directory / "a.png").write_bytes(b"old")
    fill(directory)
    with pytest.raises(OSError) as error:
        files.write_atomically(directory / "a.png", png_bytes())
    assert error.value.errno == errno.ENOSPC
    assert (directory / "a.png").read_bytes() == b"old"
    assert sorted(os.listdir(directory)) == ["a.png", "filler"]


# ----------------------------------------------------------------------------
# save_png: warns, never raises
# ----------------------------------------------------------------------------


def test_save_png_writes_the_file(tmp_path):
    png = png_bytes()
    path = save_png(tmp_path / "plots", "a.png", png, owner="Owner")
    assert path == os.path.join(str(tmp_path / "plots"), "a.png")
    assert (tmp_path / "plots" / "a.png").read_bytes() == png
    assert os.listdir(tmp_path / "plots") == ["a.png"]


def test_save_png_warns_when_the_write_fails_and_keeps_the_old_file(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"old")
    fail_replace_into(monkeypatch, tmp_path)
    with pytest.warns(UserWarning) as caught:
        assert save_png(tmp_path, "a.png", png_bytes(), owner="CalibrationCallback") is None
    [message] = messages(caught, "CalibrationCallback")
    assert repr(str(tmp_path / "a.png")) in message
    assert ENOSPC_REASON in message
    assert (tmp_path / "a.png").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.png"]


def test_save_png_on_a_full_disk_warns_and_leaves_no_truncated_file(tmpfs):
    log_dir = tmpfs("size=64k")
    (log_dir / "old.png").write_bytes(PNG_SIGNATURE)
    fill(log_dir)
    with pytest.warns(UserWarning) as caught:
        assert save_png(log_dir, "new.png", png_bytes(), owner="OODMonitorCallback") is None
    [message] = messages(caught, "OODMonitorCallback")
    assert repr(str(log_dir / "new.png")) in message and ENOSPC_REASON in message
    assert sorted(os.listdir(log_dir)) == ["filler", "old.png"]
    assert (log_dir / "old.png").read_bytes() == PNG_SIGNATURE


def test_save_png_warns_when_log_dir_is_gone(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("x")
    with pytest.warns(UserWarning, match="Owner: could not write the plot") as caught:
        assert save_png(blocker, "a.png", png_bytes(), owner="Owner") is None
    assert repr(str(blocker / "a.png")) in str(caught[0].message)
    assert blocker.read_text() == "x"


def _needs_tensorboard(monkeypatch):
    if not tensorboard_images.tensorboard_available():
        pytest.skip("TensorBoard images need TensorFlow and TensorBoard")
    monkeypatch.setattr(tensorboard_images, "_writers", {})


def test_tensorboard_write_failure_warns_and_returns_false(tmp_path, monkeypatch):
    _needs_tensorboard(monkeypatch)
    (tmp_path / "reliability").write_text("in place of the event files' folder")
    with pytest.warns(UserWarning) as caught:
        written = tensorboard_images.write_png(
            tmp_path, "ood/roc_curves", png_bytes(), step=0, owner="OODMonitorCallback"
        )
    assert written is False
    [message] = messages(caught, "OODMonitorCallback")
    assert "'ood/roc_curves'" in message
    assert repr(str(tmp_path / "reliability")) in message
    assert "not a directory" in message.lower()
    assert "function_node" not in message and "[Op:" not in message
    assert tensorboard_images._writers == {}


def test_save_png_writes_the_file_when_only_tensorboard_fails(tmp_path, monkeypatch):
    _needs_tensorboard(monkeypatch)
    (tmp_path / "reliability").write_text("x")
    png = png_bytes()
    with pytest.warns(UserWarning, match="Owner: could not write the TensorBoard image"):
        path = save_png(tmp_path, "a.png", png, tag="calibration/diagram", step=0, owner="Owner")
    assert path is not None and (tmp_path / "a.png").read_bytes() == png


# ----------------------------------------------------------------------------
# save_figure: atomic, raises a clear error
# ----------------------------------------------------------------------------


def _figure():
    return kr.plotting.metric_history({"val_ece": [0.2, 0.1, 0.05]})


@pytest.mark.parametrize(
    "name, start", [("a.png", PNG_SIGNATURE), ("a.svg", b"<?xml"), ("a.PDF", b"%PDF")]
)
def test_save_figure_infers_the_format_and_leaves_no_temporary(tmp_path, name, start):
    path = save_figure(_figure(), tmp_path / name)
    assert path == str(tmp_path / name)
    assert (tmp_path / name).read_bytes().startswith(start)
    assert os.listdir(tmp_path) == [name]


def test_save_figure_into_a_missing_directory_names_filepath(tmp_path):
    filepath = tmp_path / "missing" / "a.png"
    with pytest.raises(FileNotFoundError) as error:
        save_figure(_figure(), filepath)
    message = str(error.value)
    assert "`filepath`" in message and f"filepath={str(filepath)!r}" in message
    assert "must exist" in message
    assert os.listdir(tmp_path) == []


def test_save_figure_failure_keeps_the_old_file(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"old")
    fail_replace_into(monkeypatch, tmp_path)
    with pytest.raises(OSError, match=rf"`filepath`: {ENOSPC_REASON}") as error:
        save_figure(_figure(), tmp_path / "a.png")
    assert error.value.errno == errno.ENOSPC
    assert (tmp_path / "a.png").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.png"]


def test_save_figure_on_a_full_disk_raises_and_leaves_no_truncated_file(tmpfs):
    directory = tmpfs("size=64k")
    fill(directory)
    with pytest.raises(OSError, match="filepath=") as error:
        save_figure(_figure(), directory / "a.png")
    assert error.value.errno == errno.ENOSPC
    assert os.listdir(directory) == ["filler"]


# ----------------------------------------------------------------------------
# ReliabilityReport and write_report
# ----------------------------------------------------------------------------


def test_report_refuses_a_file_as_log_dir_before_the_first_step(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("x")
    x, y = tiny_data()
    model = tiny_model()
    report = kr.report.ReliabilityReport(str(blocker))
    with pytest.raises(ValueError) as error:
        model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[report])
    assert_names(str(error.value), "ReliabilityReport", blocker, "not a directory")
    assert iterations(model) == 0
    assert blocker.read_text() == "x"


def test_report_refuses_a_full_log_dir_before_the_first_step(tmpfs):
    log_dir = tmpfs("size=64k")
    fill(log_dir)
    x, y = tiny_data()
    model = tiny_model()
    with pytest.raises(ValueError) as error:
        model.fit(
            x, y, epochs=2, verbose=0, callbacks=[kr.report.ReliabilityReport(str(log_dir))]
        )
    assert_names(str(error.value), "ReliabilityReport", log_dir, ENOSPC_REASON)
    assert iterations(model) == 0


def _fit_with_warnings(model, callbacks, epochs=3):
    x, y = tiny_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, callbacks=callbacks)
    return history, caught


def test_report_write_failures_during_fit_warn_and_training_goes_on(tmp_path, monkeypatch):
    log_dir = tmp_path / "logs"
    report = kr.report.ReliabilityReport(str(log_dir))
    # The directory passes the check; the page of epoch 1 is written, then the disk is "full".
    attempts = fail_replace_into(monkeypatch, log_dir, after=1)
    model = tiny_model()
    history, caught = _fit_with_warnings(model, [report])

    assert len(history.history["loss"]) == 3 and len(history.history["accuracy"]) == 3
    assert all(np.isfinite(history.history["loss"]))
    assert iterations(model) == 3 * 4
    assert len(attempts) == 4  # three epoch ends and the end of training
    found = messages(caught, "ReliabilityReport")
    assert len(found) == 3, found
    for message in found:
        assert_names(message, "ReliabilityReport", log_dir, ENOSPC_REASON)
        assert "Training goes on" in message
    # The page of epoch 1 is intact; nothing half-written beside it.
    assert os.listdir(log_dir) == ["reliability_report.html"]
    page = (log_dir / "reliability_report.html").read_text(encoding="utf-8")
    assert "Training: results of epoch 1 of 3" in page and page.endswith("</html>")
    # The report's own history is intact too.
    np.testing.assert_allclose(report.history["loss"], history.history["loss"])


def test_report_on_a_disk_that_fills_up_during_fit(tmpfs):
    log_dir = tmpfs("size=2m")
    report = kr.report.ReliabilityReport(str(log_dir))

    class FillTheDisk(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                fill(log_dir)

    model = tiny_model()
    history, caught = _fit_with_warnings(model, [FillTheDisk(), report])
    assert len(history.history["loss"]) == 3
    assert iterations(model) == 3 * 4
    found = messages(caught, "ReliabilityReport")
    assert len(found) == 3, found  # epochs 2 and 3, and the end of training
    assert all(ENOSPC_REASON in message for message in found)
    assert sorted(os.listdir(log_dir)) == ["filler", "reliability_report.html"]
    page = (log_dir / "reliability_report.html").read_text(encoding="utf-8")
    assert "Training: results of epoch 1 of 3" in page and page.endswith("</html>")


def test_report_tensorboard_failure_warns_and_the_page_is_written(tmp_path, monkeypatch):
    _needs_tensorboard(monkeypatch)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    (log_dir / "reliability").write_text("in place of the event files' folder")
    x, y = tiny_data()
    calibration = kr.callbacks.CalibrationCallback((x, y), metrics=("ece",))
    report = kr.report.ReliabilityReport(str(log_dir), callbacks=[calibration])
    history, caught = _fit_with_warnings(tiny_model(), [calibration, report], epochs=2)
    assert len(history.history["loss"]) == 2
    found = messages(caught, "ReliabilityReport")
    assert found and all("could not write the TensorBoard image 'report/" in m for m in found)
    page = (log_dir / "reliability_report.html").read_text(encoding="utf-8")
    assert "Finished after epoch 2" in page


def test_write_report_refuses_an_unwritable_log_dir(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("x")
    with pytest.raises(ValueError) as error:
        kr.report.write_report(str(blocker), {"loss": [1.0, 0.5]})
    assert_names(str(error.value), "write_report", blocker, "not a directory")
    under = blocker / "sub"
    with pytest.raises(ValueError) as error:
        kr.report.write_report(str(under), {"loss": [1.0, 0.5]})
    assert_names(str(error.value), "write_report", under, os.strerror(errno.ENOTDIR))


def test_write_report_raises_when_the_write_fails(tmp_path, monkeypatch):
    log_dir = tmp_path / "logs"
    (log_dir).mkdir()
    (log_dir / "reliability_report.html").write_text("old page")
    fail_replace_into(monkeypatch, log_dir)
    with pytest.raises(OSError) as error:
        kr.report.write_report(str(log_dir), {"loss": [1.0, 0.5]})
    assert error.value.errno == errno.ENOSPC
    message = str(error.value)
    assert "write_report: could not write the report" in message
    assert f"log_dir={str(log_dir)!r}" in message and ENOSPC_REASON in message
    assert (log_dir / "reliability_report.html").read_text() == "old page"
    assert os.listdir(log_dir) == ["reliability_report.html"]


def test_report_write_after_fit_raises_when_log_dir_became_a_file(tmp_path):
    log_dir = tmp_path / "logs"
    report = kr.report.ReliabilityReport(str(log_dir))
    history, _ = _fit_with_warnings(tiny_model(), [report], epochs=1)
    assert (log_dir / "reliability_report.html").is_file()
    (log_dir / "reliability_report.html").unlink()
    log_dir.rmdir()
    log_dir.write_text("x")
    with pytest.raises(ValueError) as error:
        report.write()
    assert_names(str(error.value), "ReliabilityReport", log_dir, "not a directory")
