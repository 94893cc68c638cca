"""What reliability callbacks share: log keys and plot files."""

import os
import warnings

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


def save_png(log_dir, filename, png, tag=None, step=None):
    """Writes `png` bytes to `log_dir/filename`, and to TensorBoard under `tag`."""
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, filename), "wb") as file:
        file.write(png)
    if tag is not None:
        tensorboard_images.write_png(log_dir, tag, png, step=step)
