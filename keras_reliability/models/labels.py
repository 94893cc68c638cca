"""Class labels, normalised once for every tool.

Accepted: integer (or integer-valued float, or bool) labels of shape `(N,)`
or `(N, 1)` (what `keras.datasets.cifar10` returns), and one-hot rows of
shape `(N, num_classes)`. Everything else (soft labels, one-hot rows of the
wrong width, labels outside `[0, num_classes)`) is refused with a message
that names the argument and the value.
"""

import numpy as np
from keras import ops

from keras_reliability.arrays import is_real_dtype


def class_labels(y, num_examples, num_classes, *, name="y", owner=None):
    """Checks labels against the number of examples and classes.

    Args:
        y: labels, an array or backend tensor.
        num_examples: how many labels are expected; None accepts any count.
        num_classes: the number of classes (2 for a single sigmoid or logit
            column).
        name: the argument's name, for messages.
        owner: optional name of the caller, prefixed to messages.

    Returns:
        A numpy int32 array of shape `(N,)`.

    Raises:
        ValueError: for a missing, mis-shaped, non-integer, soft or
            out-of-range label array.
    """
    prefix = f"{owner}: " if owner else ""
    if y is None:
        raise ValueError(f"{prefix}`{name}` is required; received None.")
    try:
        labels = np.asarray(ops.convert_to_numpy(y))
    except Exception as error:  # strings, ragged lists, objects
        raise ValueError(
            f"{prefix}`{name}` must be an array of class labels; could not read it "
            f"({type(error).__name__}: {error})."
        ) from None
    if labels.dtype == bool:
        labels = labels.astype(np.int64)
    if not is_real_dtype(labels.dtype):
        raise ValueError(
            f"{prefix}`{name}` must hold integer class labels; received dtype {labels.dtype}."
        )
    expected = "" if num_examples is None else f"{num_examples}"
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif labels.ndim == 2 and labels.shape[1] > 1:
        if labels.shape[1] != num_classes:
            raise ValueError(
                f"{prefix}`{name}` has shape {labels.shape}: one-hot rows of width "
                f"{labels.shape[1]}, but the model has {num_classes} classes. Pass "
                f"integer labels ({expected},) or one-hot rows ({expected}, {num_classes})."
            )
        labels = _one_hot_to_sparse(labels, name, prefix)
    if labels.ndim != 1:
        raise ValueError(
            f"{prefix}`{name}` must hold one class label per example, shape "
            f"({expected},), ({expected}, 1) or one-hot ({expected}, {num_classes}); "
            f"received shape {labels.shape}."
        )
    if num_examples is not None and len(labels) != num_examples:
        raise ValueError(
            f"{prefix}`{name}` has {len(labels)} labels for {num_examples} examples."
        )
    if labels.size == 0:
        raise ValueError(f"{prefix}`{name}` is empty: received shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        bad = labels[~np.isfinite(labels) | (labels != np.round(labels))]
        if bad.size:
            raise ValueError(
                f"{prefix}`{name}` must hold integer class labels; received dtype "
                f"{labels.dtype} with the non-integer value {bad[0].item()!r}."
            )
    low, high = labels.min().item(), labels.max().item()
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(
            f"{prefix}`{name}` holds the label {bad!r}, outside [0, {num_classes - 1}] "
            f"for a model with {num_classes} classes."
        )
    return labels.astype(np.int32)


def _one_hot_to_sparse(labels, name, prefix):
    if not (np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=1) == 1)):
        raise ValueError(
            f"{prefix}`{name}` of shape {labels.shape} must be one-hot (a single 1 per "
            "row); soft labels are not class labels."
        )
    return np.argmax(labels, axis=1)
