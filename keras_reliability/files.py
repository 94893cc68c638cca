"""Writing files so that a reader never finds half of one.

The one place where this package writes files: the PNG plots of the
callbacks, the HTML report and `plotting.save_figure` all go through
`write_atomically`. It imports nothing from the package, so any module can
import it without an import cycle.
"""

import contextlib
import os
import tempfile

# Files are written through `mkstemp`, which makes them private (0o600); the
# plots and the report are meant to be read by others, as `open` would allow.
_FILE_MODE = 0o644


def write_atomically(path, data):
    """Writes `data` to `path` through a temporary file in the same directory.

    The data goes to a hidden temporary file next to `path`, is flushed to
    the disk, then the temporary file replaces `path` in one step
    (`os.replace`). A reader (a browser, TensorBoard, a file watcher) sees
    the old file or the new one, never half of one. When any step fails (a
    full disk, a read-only file system) the temporary file is removed, a
    file already at `path` is left as it was, and the error is raised.

    The directory of `path` must exist.

    Args:
        path: destination path (`str` or `os.PathLike`).
        data: `bytes` (or `bytearray`, `memoryview`), or `str`, written as
            UTF-8.

    Returns:
        `path`, as a `str`.

    Raises:
        TypeError: if `data` is neither bytes nor a string.
        OSError: if the file cannot be written; nothing is left behind.
    """
    path = os.fspath(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"`data` must be bytes or a string; received an object of type "
            f"{type(data).__name__} for path={path!r}."
        )
    directory, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            # A full disk or a network file system may only report the error
            # here; and a crash after `os.replace` must not leave an empty file.
            os.fsync(file.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return path


def os_error_reason(error):
    """The reason an `OSError` gives, without its errno and path.

    E.g. "No space left on device" or "Not a directory".
    """
    return error.strerror or str(error) or type(error).__name__


def os_error_with_message(error, message):
    """An `OSError` of the same kind as `error` (same errno) with `message`.

    Keeps `except FileNotFoundError` (and the like) working for the caller
    while the message names the argument and the path.
    """
    if error.errno is None:
        return type(error)(message)
    return OSError(error.errno, message)
