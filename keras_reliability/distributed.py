"""Forward passes that keep every example under a Keras data-parallel distribution.

Under `keras.distribution.DataParallel` (JAX) each batch is split evenly over
the devices, and Keras refuses a batch whose size the device count does not
divide; it has no padding (keras-team/keras#21167). A diagnostic must see
every held-out example, not drop the remainder, so the library's passes pad
the inputs to a multiple of the device count with copies of the last
example and drop the padded outputs. Without a distribution (and under
`tf.distribute` strategies, which split uneven batches themselves) they are
plain `model.predict` calls.
"""

import keras
import numpy as np


def batch_shards():
    """How many parts the active Keras distribution splits each batch into (1 without one)."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    batch_axis = getattr(distribution, "batch_dim_name", None)
    if batch_axis not in mesh.axis_names:
        return 1
    return int(mesh.shape[mesh.axis_names.index(batch_axis)])


def check_batch_size(batch_size, owner=None):
    """`batch_size`, if the active distribution can split it evenly; else a ValueError."""
    shards = batch_shards()
    if batch_size is not None and batch_size % shards:
        prefix = f"{owner}: " if owner else ""
        raise ValueError(
            f"{prefix}`batch_size`={batch_size} is not a multiple of the {shards} devices "
            f"that the active Keras distribution splits each batch over; pass a multiple "
            f"of {shards}."
        )
    return batch_size


def _num_examples(x):
    return len(keras.tree.flatten(x)[0])


def _pad(x, count):
    """`x` with its last example repeated `count` more times (arrays, lists or dicts)."""
    if count == 0:
        return x

    def pad(leaf):
        leaf = np.asarray(keras.ops.convert_to_numpy(leaf))
        return np.concatenate([leaf, np.repeat(leaf[-1:], count, axis=0)], axis=0)

    return keras.tree.map_structure(pad, x)


def _trim(outputs, count):
    return keras.tree.map_structure(lambda leaf: leaf[:count], outputs)


def predict(model, x, batch_size=None, verbose=0):
    """`model.predict(x)` with every example of `x`, on one device or many.

    Args:
        model: a Keras model.
        x: input arrays (or a list/dict of them), as `model.predict` takes.
        batch_size: batch size of the pass (Keras' default 32 if None); under
            a data-parallel distribution it must be a multiple of the number
            of devices the batch is split over.
        verbose: `model.predict`'s verbosity.

    Returns:
        The model's outputs, one row per example of `x`.
    """
    shards = batch_shards()
    if shards == 1:
        return model.predict(x, batch_size=batch_size, verbose=verbose)
    size = check_batch_size(32 if batch_size is None else batch_size)
    count = _num_examples(x)
    padded = _pad(x, -count % shards)
    return _trim(model.predict(padded, batch_size=size, verbose=verbose), count)


def predict_on_batch(model, x):
    """`model.predict_on_batch(x)` for a batch of any size, on one device or many."""
    shards = batch_shards()
    if shards == 1:
        return model.predict_on_batch(x)
    count = _num_examples(x)
    return _trim(model.predict_on_batch(_pad(x, -count % shards)), count)
