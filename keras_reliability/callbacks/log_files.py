"""What reliability callbacks share: log keys, the log directory and plot files."""

import contextlib
import os
import tempfile
import warnings

from keras_reliability import files
from keras_reliability.callbacks import tensorboard_images


def warn_on_overwrite(owner, keys, logs, warned):
    """Warns once per key when `logs` already holds a key `owner` writes.

    Args:
        owner: the callback's class name.
        keys: the keys the callback writes.
        logs: the epoch's logs, before the callback writes.
        warned: set of keys already warned about; updated in place.
    """
    for key in keys:
        if key in logs and key not in warned:
            warned.add(key)
            warnings.warn(
                f"{owner} overwrites the log key {key!r} that another metric "
                "or callback wrote; pass a different `prefix` to keep both.",
                stacklevel=3,
            )


def check_log_dir(log_dir, owner):
    """Creates `log_dir` if needed and proves that files can be written in it.

    Call it from `on_train_begin`: a directory that cannot be written (a
    file in its place, a read-only or full file system, a parent that cannot
    be created) is then refused before the first epoch rather than found at
    the end of it. The proof is a small temporary file, written, flushed to
    the disk and removed.

    Args:
        log_dir: the directory (`str` or `os.PathLike`).
        owner: name of the callback or function, for the error message.

    Returns:
        `log_dir`, as a `str`.

    Raises:
        ValueError: if `log_dir` is not a path, or cannot be created or
            written; the message names `owner`, `log_dir`, the path and the
            reason the operating system gave.

    Example:

    ```python
    def on_train_begin(self, logs=None):
        if self.log_dir is not None:
            check_log_dir(self.log_dir, "MyCallback")
    ```
    """
    if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
        raise ValueError(
            f"{owner}: `log_dir` must be a directory path; received log_dir={log_dir!r}."
        )
    path = os.fspath(log_dir)
    try:
        os.makedirs(path, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path, prefix=".write_test.", suffix=".tmp")
        try:
            # Some bytes, synced: an empty file can still be made on a full disk.
            os.write(handle, b"keras_reliability")
            os.fsync(handle)
        finally:
            os.close(handle)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    except OSError as error:
        reason = files.os_error_reason(error)
        if os.path.exists(path) and not os.path.isdir(path):
            reason += " (a file, not a directory, is at that path)"
        raise ValueError(
            f"{owner}: cannot write files in `log_dir`; received log_dir={path!r}: {reason}."
        ) from error
    return path


def save_png(log_dir, filename, png, tag=None, step=None, owner=None):
    """Writes `png` bytes to `log_dir/filename`, and to TensorBoard under `tag`.

    The file is written atomically (see `keras_reliability.files`): a
    reader never sees a truncated PNG. A failure to write (a full disk, a
    directory removed during training) warns and returns None: a plot that
    cannot be saved never stops `fit`. The TensorBoard image is written (or
    warned about) independently of the file.

    Args:
        log_dir: the directory of the plots; created if missing.
        filename: name of the PNG file in `log_dir`.
        png: the PNG-encoded image, as `bytes`.
        tag: TensorBoard tag of the image; None writes no TensorBoard image.
        step: TensorBoard step of the image (the epoch).
        owner: name of the callback, for the warning.

    Returns:
        The path of the file, or None if it could not be written.
    """
    path = os.path.join(os.fspath(log_dir), filename)
    try:
        os.makedirs(os.fspath(log_dir), exist_ok=True)
        files.write_atomically(path, png)
    except OSError as error:
        _warn_write_failed(owner, f"the plot {path!r}", error)
        path = None
    if tag is not None:
        tensorboard_images.write_png(log_dir, tag, png, step=step, owner=owner)
    return path


def _warn_write_failed(owner, what, error):
    prefix = f"{owner}: " if owner else ""
    warnings.warn(
        f"{prefix}could not write {what}: {files.os_error_reason(error)}. "
        "Training goes on without it.",
        UserWarning,
        stacklevel=3,
    )
