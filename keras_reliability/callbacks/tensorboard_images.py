"""Writes plots into TensorBoard event files when TensorBoard is installed.

Images are written through `tf.summary`, which needs both TensorFlow and
the `tensorboard` package (TensorFlow no longer installs it). Without them
the plots are still saved as PNG files and this module does nothing.

A failure to write an image (an unwritable directory, a full disk) warns
and never stops training.
"""

import importlib.util
import os
import re
import warnings

import keras

_writers = {}


def tensorboard_available():
    """Whether `tf.summary` can write images (TensorFlow and TensorBoard)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def write_png(log_dir, tag, png_bytes, step, owner=None):
    """Logs a PNG image under `log_dir/reliability`.

    Args:
        log_dir: the log directory; the event files go to its `reliability`
            subdirectory.
        tag: TensorBoard tag of the image.
        png_bytes: the PNG-encoded image.
        step: TensorBoard step of the image (the epoch).
        owner: name of the callback, for the warning.

    Returns:
        True if the image was written; False without TensorFlow and
        TensorBoard, or if writing failed (which warns).
    """
    if not tensorboard_available():
        return False
    import tensorflow as tf

    directory = os.path.join(os.fspath(log_dir), "reliability")
    try:
        writer = _writers.get(directory)
        if writer is None:
            _keep_tensorflow_off_the_gpu(tf)
            writer = _writers[directory] = tf.summary.create_file_writer(directory)
        image = tf.expand_dims(tf.io.decode_png(png_bytes, channels=4), 0)
        with writer.as_default():
            tf.summary.image(tag, image, step=step)
        writer.flush()
    except (OSError, tf.errors.OpError) as error:
        # A writer that failed may hold a broken event file: the next image
        # makes a new one.
        _writers.pop(directory, None)
        prefix = f"{owner}: " if owner else ""
        warnings.warn(
            f"{prefix}could not write the TensorBoard image {tag!r} into {directory!r}: "
            f"{_reason(error)}. Training goes on without it.",
            UserWarning,
            stacklevel=2,
        )
        return False
    return True


def _reason(error):
    """The message of an error, without TensorFlow's op decorations."""
    message = getattr(error, "message", None) or getattr(error, "strerror", None) or str(error)
    message = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", message)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", message, flags=re.DOTALL).strip()


def _keep_tensorflow_off_the_gpu(tf):
    """Hides the GPUs from TensorFlow when another backend trains the model.

    TensorFlow only writes event files then, on the CPU; left alone, its
    runtime would reserve most of the GPU memory that JAX or PyTorch needs.
    """
    if keras.backend.backend() == "tensorflow":
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # Its runtime already started (the user's own TensorFlow code).
