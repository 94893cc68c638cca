"""Held-out data of a callback, and the model's outputs on it.

Callbacks accept the same `validation_data` forms as `model.fit`: a tuple
`(x, y)` or `(x, y, sample_weight)` of arrays (or dicts/lists of arrays for
multi-input models), or an iterable of such batches (a `tf.data.Dataset`, a
`keras.utils.PyDataset`, a generator factory's output, ...).
"""

import keras
import numpy as np
from keras import ops

from keras_reliability import distributed
from keras_reliability.arguments import check_positive_int
from keras_reliability.metrics._inputs import outputs_are_probabilities

# Examples in the forward pass that checks data and model at train begin.
_PROBE_SIZE = 32


def _num_examples(x):
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError("`validation_data` has no inputs: x is empty.")
    return len(leaves[0])


def _take(x, count):
    return keras.tree.map_structure(lambda leaf: leaf[:count], x)


class HeldOutData:
    """Validates a callback's data and collects model outputs on it.

    Args:
        data: `(x, y)` / `(x, y, sample_weight)` arrays, or an iterable of
            such batches.
        max_samples: use at most this many examples (the first ones); None
            for all.
        batch_size: batch size of the forward pass over arrays.
        owner: name of the callback, for error messages.
    """

    def __init__(self, data, *, max_samples=None, batch_size=None, owner="callback"):
        self.owner = owner
        max_samples = check_positive_int(
            max_samples, "max_samples", allow_none=True, owner=owner
        )
        batch_size = check_positive_int(
            batch_size, "batch_size", allow_none=True, owner=owner
        )
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.is_array = isinstance(data, tuple)
        if self.is_array:
            self.x, self.y, self.sample_weight = self._split_tuple(data)
        elif data is None or not hasattr(data, "__iter__"):
            raise ValueError(
                f"{owner}: `validation_data` must be a tuple (x, y) or "
                "(x, y, sample_weight), or an iterable of such batches "
                f"(e.g. a tf.data.Dataset); received {type(data).__name__}."
            )
        else:
            self.batches = data

    def _split_tuple(self, data):
        if len(data) not in (2, 3):
            raise ValueError(
                f"{self.owner}: `validation_data` must be (x, y) or "
                f"(x, y, sample_weight); received a tuple of {len(data)} items."
            )
        x, y = data[0], np.asarray(data[1])
        weights = None if len(data) == 2 else np.asarray(data[2])
        count = _num_examples(x)
        if count == 0:
            raise ValueError(f"{self.owner}: `validation_data` is empty (0 examples).")
        if len(y) != count:
            raise ValueError(
                f"{self.owner}: `validation_data` has {count} inputs but "
                f"{len(y)} labels."
            )
        if weights is not None and len(weights) != count:
            raise ValueError(
                f"{self.owner}: `validation_data` has {count} inputs but "
                f"{len(weights)} sample weights."
            )
        if self.max_samples is not None and count > self.max_samples:
            x, y = _take(x, self.max_samples), y[: self.max_samples]
            weights = None if weights is None else weights[: self.max_samples]
        return x, y, weights

    def probe(self, model):
        """Runs the model on a few examples; returns `(outputs, labels)`.

        Used at train begin so that a model/data mismatch fails before the
        first epoch.
        """
        distributed.check_batch_size(self.batch_size, self.owner)
        if self.is_array:
            x, y = _take(self.x, _PROBE_SIZE), self.y[:_PROBE_SIZE]
        else:
            batch = next(iter(self.batches), None)
            if batch is None:
                raise ValueError(f"{self.owner}: `validation_data` yields no batch.")
            x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        try:
            outputs = distributed.predict_on_batch(model, x)
        except Exception as error:
            raise ValueError(
                f"{self.owner}: the model cannot run on `validation_data` "
                f"({type(error).__name__}: {error})."
            ) from error
        if not isinstance(outputs, (np.ndarray,)) and keras.tree.is_nested(outputs):
            raise ValueError(
                f"{self.owner}: the model has several outputs; pass a model "
                "with a single classification output."
            )
        return np.asarray(outputs), np.asarray(ops.convert_to_numpy(y))

    def collect(self, model):
        """Model outputs, labels and weights on the data, as numpy arrays."""
        if self.is_array:
            outputs = distributed.predict(model, self.x, batch_size=self.batch_size)
            return np.asarray(outputs), self.y, self.sample_weight
        outputs, labels, weights = [], [], []
        seen = 0
        for batch in self.batches:
            x, y, w = keras.utils.unpack_x_y_sample_weight(batch)
            outputs.append(np.asarray(distributed.predict_on_batch(model, x)))
            labels.append(np.asarray(ops.convert_to_numpy(y)))
            if w is not None:
                weights.append(np.asarray(ops.convert_to_numpy(w)))
            seen += len(labels[-1])
            if self.max_samples is not None and seen >= self.max_samples:
                break
        if not outputs:
            raise ValueError(f"{self.owner}: `validation_data` yields no batch.")
        stop = self.max_samples
        outputs = np.concatenate(outputs)[:stop]
        labels = np.concatenate(labels)[:stop]
        weights = np.concatenate(weights)[:stop] if weights else None
        return outputs, labels, weights


def model_outputs_logits(model, outputs):
    """Whether `model` outputs logits: from its last layer, else its outputs.

    A final softmax/sigmoid activation means probabilities, a final linear
    layer means logits; otherwise the outputs themselves decide (see
    `outputs_are_probabilities`).
    """
    layers = getattr(model, "layers", None)
    if layers:
        last = layers[-1]
        if isinstance(last, keras.layers.Softmax):
            return False
        activation = getattr(last, "activation", None)
        if activation is not None:
            name = getattr(activation, "__name__", "")
            if name in ("softmax", "sigmoid"):
                return False
            if name == "linear":
                return True
    return not outputs_are_probabilities(outputs)
