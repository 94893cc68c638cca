"""Writes plots into TensorBoard event files when TensorBoard is installed.

Images are written through `tf.summary`, which needs both TensorFlow and
the `tensorboard` package (TensorFlow no longer installs it). Without them
the plots are still saved as PNG files and this module does nothing.
"""

import importlib.util
import os

import keras

_writers = {}


def tensorboard_available():
    """Whether `tf.summary` can write images (TensorFlow and TensorBoard)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def write_png(log_dir, tag, png_bytes, step):
    """Logs a PNG image under `log_dir/reliability`; False if not possible."""
    if not tensorboard_available():
        return False
    import tensorflow as tf

    directory = os.path.join(log_dir, "reliability")
    writer = _writers.get(directory)
    if writer is None:
        _keep_tensorflow_off_the_gpu(tf)
        writer = _writers[directory] = tf.summary.create_file_writer(directory)
    image = tf.expand_dims(tf.io.decode_png(png_bytes, channels=4), 0)
    with writer.as_default():
        tf.summary.image(tag, image, step=step)
    writer.flush()
    return True


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
