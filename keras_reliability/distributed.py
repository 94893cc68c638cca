"""Forward passes that keep every example under a Keras data-parallel distribution.

Under `keras.distribution.DataParallel` (JAX) each batch is split evenly over
the devices, and Keras refuses a batch whose size the device count does not
divide; it has no padding (keras-team/keras#21167). A diagnostic must see
every held-out example, not drop the remainder, so the library's passes run
the rows the devices split evenly as they are and the last few padded with
copies of the last example, dropping the padded outputs. Without a distribution (and under
`tf.distribute` strategies, which split uneven batches themselves) they are
plain `model.predict` calls.
"""

import keras
import numpy as np

from keras_reliability.backend import keep_variables


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


def _holds_arrays(x):
    """Whether `x` is arrays (or a structure of them), not a dataset or generator."""
    leaves = keras.tree.flatten(x)
    return bool(leaves) and all(hasattr(leaf, "shape") for leaf in leaves)


def _rows(x, start, stop):
    return keras.tree.map_structure(lambda leaf: leaf[start:stop], x)


def _pad(x, count):
    """`x` with its last example repeated `count` more times (arrays, lists or dicts)."""

    def pad(leaf):
        leaf = np.asarray(keras.ops.convert_to_numpy(leaf))
        return np.concatenate([leaf, np.repeat(leaf[-1:], count, axis=0)], axis=0)

    return keras.tree.map_structure(pad, x)


def predict(model, x, batch_size=None, verbose=0):
    """`model.predict(x)` with every example of `x`, on one device or many.

    Args:
        model: a Keras model.
        x: input arrays (or a list/dict of them), as `model.predict` takes;
            datasets and generators go to `model.predict` as they are.
        batch_size: batch size of the pass (Keras' default 32 if None); under
            a data-parallel distribution it must be a multiple of the number
            of devices the batch is split over.
        verbose: `model.predict`'s verbosity.

    Returns:
        The model's outputs, one row per example of `x`.
    """
    # On JAX a predict that fails in its first step (a dataset of the wrong
    # shape, an interrupt) would leave the model's variables empty.
    with keep_variables(model):
        return _predict(model, x, batch_size, verbose)


def _predict(model, x, batch_size, verbose):
    shards = batch_shards()
    if shards == 1 or not _holds_arrays(x):
        return model.predict(x, batch_size=batch_size, verbose=verbose)
    size = check_batch_size(32 if batch_size is None else batch_size)
    count = _num_examples(x)
    # The rows the devices split evenly go through predict as a view (no
    # copy of the inputs); the last few, padded, through one small batch.
    whole = count - count % shards
    parts = []
    if whole:
        parts.append(model.predict(_rows(x, 0, whole), batch_size=size, verbose=verbose))
    if whole < count:
        parts.append(predict_on_batch(model, _rows(x, whole, count)))
    if len(parts) == 1:
        return parts[0]
    return keras.tree.map_structure(lambda *leaves: np.concatenate(leaves), *parts)


def predict_on_batch(model, x):
    """`model.predict_on_batch(x)` for a batch of any size, on one device or many."""
    shards = batch_shards()
    count = _num_examples(x)
    with keep_variables(model):
        if shards == 1 or count % shards == 0:
            return model.predict_on_batch(x)
        padded = model.predict_on_batch(_pad(x, -count % shards))
    return keras.tree.map_structure(lambda leaf: leaf[:count], padded)
