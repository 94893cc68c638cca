"""The only place that reads held-out data.

Tools accept the data forms of `model.fit`: a tuple `(x, y)` or
`(x, y, sample_weight)` of arrays (or dicts/lists of arrays for multi-input
models), or an iterable of such batches (a `tf.data.Dataset`, a
`keras.utils.PyDataset`, a `torch.utils.data.DataLoader`), or a generator
factory: a callable returning a new iterable of batches on each call. A
generator object is refused: it can be read only once, and the data is read
every epoch. An infinite dataset needs `max_samples`. Arrays are sliced, not
copied, and checked (finite inputs, labels, weights) before anything runs.
"""

import inspect

import keras
import numpy as np
from keras import ops

from keras_reliability import distributed
from keras_reliability.arguments import check_positive_int
from keras_reliability.arrays import is_float_dtype
from keras_reliability.arrays import is_real_dtype
from keras_reliability.arrays import real_array
from keras_reliability.models.graph import input_names
from keras_reliability.models.labels import class_labels
from keras_reliability.models.outputs import select_output

# Examples in the forward pass that checks data and model at train begin.
PROBE_SIZE = 32


def num_examples(x, argument="x", owner=None):
    """The number of rows of inputs `x` (an array or a structure of arrays)."""
    prefix = f"{owner}: " if owner else ""
    leaves = keras.tree.flatten(x)
    if not leaves or any(not hasattr(leaf, "shape") or len(leaf.shape) == 0 for leaf in leaves):
        raise ValueError(
            f"{prefix}`{argument}` must hold arrays of inputs with a batch dimension; "
            f"received {_describe(x)}."
        )
    counts = {int(leaf.shape[0]) for leaf in leaves}
    if len(counts) != 1:
        raise ValueError(
            f"{prefix}the arrays of `{argument}` have different numbers of rows: "
            f"{sorted(counts)}."
        )
    return counts.pop()


def take(x, count):
    """The first `count` rows of `x`, as views of its arrays."""
    return keras.tree.map_structure(lambda leaf: leaf[:count], x)


def check_finite_inputs(x, argument, owner):
    """Raises a ValueError naming `argument` unless every input is real and finite."""
    for leaf in keras.tree.flatten(x):
        values = np.asarray(ops.convert_to_numpy(leaf)) if not isinstance(leaf, np.ndarray) else leaf
        if not is_real_dtype(values.dtype):
            raise ValueError(
                f"{owner}: `{argument}` must hold real numeric inputs; received dtype "
                f"{values.dtype}."
            )
        if is_float_dtype(values.dtype) and not np.all(np.isfinite(values)):
            bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
            raise ValueError(
                f"{owner}: `{argument}` holds {bad} NaN or infinite input value(s); "
                "the model's outputs on them would be meaningless."
            )


def check_model_inputs(model, x, argument, owner):
    """Refuses inputs the model cannot take, naming `argument`, before any pass.

    Arrays (and structures of arrays) must hold at least one example, real
    finite values and the model's input shapes: a JAX model called on inputs
    of the wrong shape can be left unusable, and NaN inputs give meaningless
    outputs (TensorFlow's ReLU even maps them to 0). Datasets and other
    iterables pass through: their batches are read later.
    """
    if x is None:
        raise ValueError(f"{owner}: `{argument}` is required; received None.")
    if isinstance(x, (str, bytes)):
        raise ValueError(
            f"{owner}: `{argument}` must hold arrays of inputs; received {x!r}."
        )
    leaves = keras.tree.flatten(x)
    if not all(_is_array(leaf) for leaf in leaves):
        if any(_is_array(leaf) for leaf in leaves) or isinstance(x, (list, dict)):
            raise ValueError(
                f"{owner}: `{argument}` must hold arrays of inputs; received "
                f"{_describe(x)}."
            )
        return  # a dataset, generator or loader
    if num_examples(x, argument, owner) == 0:
        raise ValueError(f"{owner}: `{argument}` holds no example: received {_describe(x)}.")
    check_finite_inputs(x, argument, owner)
    check_input_shapes(model, x, argument, owner)


def check_sample_weight(weights, count, name="sample_weight", owner=None):
    """Float64 weights `(count,)`: real, finite, non-negative and not all zero.

    Raises:
        ValueError: naming `name` and the offending value.
    """
    prefix = f"{owner}: " if owner else ""
    weights = real_array(weights, name, owner)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.shape != (count,):
        raise ValueError(
            f"{prefix}`{name}` must have shape ({count},); received shape {weights.shape}."
        )
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        bad = weights[~np.isfinite(weights) | (weights < 0)][0]
        raise ValueError(
            f"{prefix}`{name}` must be finite and non-negative; received {bad.item()!r}."
        )
    if weights.sum() <= 0:
        raise ValueError(f"{prefix}`{name}` sums to 0: no example would count.")
    return weights


def host_batch(x):
    """A batch's TensorFlow tensors (from `tf.data`) as numpy, for any backend.

    Backend tensors pass through: reading them on the host would copy them
    off the device.
    """

    def leaf_to_host(leaf):
        if type(leaf).__module__.startswith("tensorflow") and keras.backend.backend() != "tensorflow":
            return leaf.numpy()
        return leaf

    return keras.tree.map_structure(leaf_to_host, x)


def _describe(value):
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + (f" of shape {tuple(shape)}" if shape is not None else "")


def _is_one_shot(data):
    return inspect.isgenerator(data) or (
        hasattr(data, "__next__") and iter(data) is data
    )


def _is_infinite(data):
    cardinality = getattr(data, "cardinality", None)
    if callable(cardinality):
        try:
            # tf.data.INFINITE_CARDINALITY is -1.
            return int(cardinality()) == -1
        except Exception:
            return False
    if isinstance(data, keras.utils.PyDataset):
        return data.num_batches is None
    return False


class HeldOutData:
    """A tool's held-out data: validated early, read batch by batch.

    Args:
        data: `(x, y)` / `(x, y, sample_weight)` arrays, an iterable of such
            batches, or a callable returning a new iterable on each call.
        max_samples: use at most this many examples (the first ones); None
            for all. Required for an infinite dataset.
        batch_size: batch size of the forward pass over arrays.
        owner: name of the tool, for messages.
        argument: the argument's name, for messages.
    """

    def __init__(self, data, *, max_samples=None, batch_size=None, owner="callback",
                 argument="validation_data"):
        self.owner = owner
        self.argument = argument
        self.max_samples = check_positive_int(max_samples, "max_samples", allow_none=True, owner=owner)
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=True, owner=owner)
        self.is_array = isinstance(data, tuple)
        self._factory = None
        if self.is_array:
            self.x, self.y, self.sample_weight = self._split_tuple(data)
        elif isinstance(data, list) and not all(
            isinstance(batch, (tuple, dict)) for batch in data
        ):
            raise ValueError(
                f"{owner}: `{argument}` must be a tuple (x, y) or (x, y, sample_weight), "
                f"not a list; received a list of {len(data)} items. Pass "
                f"`tuple({argument})`."
            )
        elif data is None or isinstance(data, (str, bytes, dict, np.ndarray)):
            raise ValueError(
                f"{owner}: `{argument}` must be a tuple (x, y) or (x, y, sample_weight), "
                "an iterable of such batches (e.g. a batched tf.data.Dataset) or a "
                f"callable returning one; received {_describe(data)}."
            )
        elif _is_one_shot(data):
            raise ValueError(
                f"{owner}: `{argument}` is a generator ({type(data).__name__}), which can "
                "be read only once, but it is read at every evaluation. Pass a callable "
                "that returns a new generator (e.g. `lambda: make_batches()`), a "
                "tf.data.Dataset or a keras.utils.PyDataset."
            )
        elif callable(data) and not hasattr(data, "__iter__"):
            self._factory = data
        elif hasattr(data, "__iter__"):
            if _is_infinite(data) and self.max_samples is None:
                raise ValueError(
                    f"{owner}: `{argument}` is an infinite dataset (e.g. `.repeat()` without "
                    "a count); pass `max_samples` to say how many examples to read."
                )
            self.batches = data
        else:
            raise ValueError(
                f"{owner}: `{argument}` must be a tuple (x, y), an iterable of batches or "
                f"a callable returning one; received {_describe(data)}."
            )

    def _iterate(self):
        if self._factory is None:
            return iter(self.batches)
        batches = self._factory()
        if not hasattr(batches, "__iter__"):
            raise ValueError(
                f"{self.owner}: the callable `{self.argument}` must return an iterable of "
                f"batches; it returned {_describe(batches)}."
            )
        return iter(batches)

    def _split_tuple(self, data):
        if len(data) not in (2, 3):
            raise ValueError(
                f"{self.owner}: `{self.argument}` must be (x, y) or (x, y, sample_weight); "
                f"received a tuple of {len(data)} items."
            )
        x, y = data[0], data[1]
        if x is None or y is None:
            raise ValueError(
                f"{self.owner}: `{self.argument}` must hold inputs and labels; received "
                f"x={_describe(x)}, y={_describe(y)}."
            )
        weights = None if len(data) == 2 else data[2]
        count = num_examples(x, f"{self.argument}[0]", self.owner)
        if count == 0:
            raise ValueError(f"{self.owner}: `{self.argument}` is empty (0 examples).")
        y = np.asarray(ops.convert_to_numpy(y)) if not isinstance(y, np.ndarray) else y
        if len(y) != count:
            raise ValueError(
                f"{self.owner}: `{self.argument}` has {count} inputs but {len(y)} labels."
            )
        if weights is not None:
            weights = check_sample_weight(weights, count, f"{self.argument}[2]", self.owner)
        if self.max_samples is not None and count > self.max_samples:
            x, y = take(x, self.max_samples), y[: self.max_samples]
            weights = None if weights is None else weights[: self.max_samples]
        return x, y, weights

    def probe(self, model, output_index=0):
        """Runs the model on a few examples; returns `(outputs, labels)` (numpy).

        Called at train begin so that a data or model mismatch fails before
        the first epoch; array data is checked whole (finite inputs, labels
        of the right kind are checked by the caller against the model).
        """
        distributed.check_batch_size(self.batch_size, self.owner)
        if self.is_array:
            check_finite_inputs(self.x, self.argument, self.owner)
            x, y = take(self.x, PROBE_SIZE), self.y[:PROBE_SIZE]
        else:
            batch = next(self._iterate(), None)
            if batch is None:
                raise ValueError(f"{self.owner}: `{self.argument}` yields no batch.")
            x, y, weights = keras.utils.unpack_x_y_sample_weight(batch)
            x = host_batch(x)
            if y is None:
                raise ValueError(
                    f"{self.owner}: the batches of `{self.argument}` must be (x, y) or "
                    "(x, y, sample_weight); a batch holds inputs only."
                )
            check_finite_inputs(x, self.argument, self.owner)
            if weights is not None:
                check_sample_weight(
                    weights, len(ops.convert_to_numpy(y)), f"{self.argument}[2]", self.owner
                )
        check_input_shapes(model, x, self.argument, self.owner)
        try:
            outputs = distributed.predict_on_batch(model, x)
        except Exception as error:
            raise ValueError(
                f"{self.owner}: the model cannot run on `{self.argument}` "
                f"({type(error).__name__}: {error})."
            ) from error
        return select_output(outputs, output_index), np.asarray(ops.convert_to_numpy(y))

    def collect(self, model, output_index=0):
        """Model outputs, labels and weights on the data, as numpy arrays."""
        if self.is_array:
            outputs = distributed.predict(model, self.x, batch_size=self.batch_size)
            return select_output(outputs, output_index), self.y, self.sample_weight
        outputs, labels, weights = [], [], []
        seen = 0
        for batch in self._iterate():
            x, y, w = keras.utils.unpack_x_y_sample_weight(batch)
            x = host_batch(x)
            # TensorFlow's ReLU maps NaN to 0: NaN inputs must be caught here.
            check_finite_inputs(x, self.argument, self.owner)
            outputs.append(select_output(distributed.predict_on_batch(model, x), output_index))
            labels.append(np.asarray(ops.convert_to_numpy(y)))
            if w is not None:
                weights.append(np.asarray(ops.convert_to_numpy(w)))
            seen += len(labels[-1])
            if self.max_samples is not None and seen >= self.max_samples:
                break
        if not outputs:
            raise ValueError(f"{self.owner}: `{self.argument}` yields no batch.")
        stop = self.max_samples
        outputs = np.concatenate(outputs)[:stop]
        labels = np.concatenate(labels)[:stop]
        weights = np.concatenate(weights)[:stop] if weights else None
        if weights is not None and len(weights) != len(labels):
            raise ValueError(
                f"{self.owner}: some batches of `{self.argument}` have sample weights and "
                "others do not."
            )
        return outputs, labels, weights

    def check_labels(self, labels, num_classes):
        """Labels of the data (all of them for arrays) checked against the classes."""
        if self.is_array:
            labels = self.y
        return class_labels(labels, len(labels), num_classes, name=self.argument,
                            owner=self.owner)


def check_input_shapes(model, x, argument, owner):
    """Raises a ValueError when `x` cannot be the model's input (rank or size).

    Runs before any forward pass: a JAX model called on inputs of the wrong
    shape can be left unusable.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return
    if not inputs:
        return
    leaves = keras.tree.flatten(x)
    if any(not hasattr(leaf, "shape") for leaf in leaves):
        return  # a dataset or generator: its batches are checked as they come
    if len(leaves) != len(inputs):
        raise ValueError(
            f"{owner}: model {model.name!r} takes {len(inputs)} input(s) but "
            f"`{argument}` holds {len(leaves)}."
        )
    if isinstance(x, dict):
        names = input_names(model)
        missing = [name for name in names if name not in x]
        if missing:
            raise ValueError(
                f"{owner}: `{argument}` is a dict with keys {list(x)}, without the "
                f"input(s) {missing} of model {model.name!r}."
            )
        return  # matched by name inside Keras
    for leaf, tensor in zip(leaves, inputs):
        expected = tuple(tensor.shape[1:])
        full = tuple(getattr(leaf, "shape", ()))
        shape = full[1:]
        if len(full) == len(expected) and all(e is None or e == s for e, s in zip(expected, full)):
            raise ValueError(
                f"{owner}: `{argument}` yields inputs of shape {full}, the shape of one "
                f"example of model {model.name!r} (None, {', '.join(map(str, expected))}): "
                "an unbatched dataset? Call `.batch(batch_size)` on it."
            )
        if len(shape) != len(expected) or any(
            e is not None and e != s for e, s in zip(expected, shape)
        ):
            raise ValueError(
                f"{owner}: `{argument}` has examples of shape {shape}, but model "
                f"{model.name!r} expects inputs of shape {expected}."
            )


def input_arrays(data, argument, max_samples, owner):
    """`(x, y)` numpy arrays from an array, a tuple or an iterable of batches.

    Reads at most `max_samples` examples, slicing arrays before any
    conversion so that a large array is never copied whole.
    """
    if isinstance(data, tuple):
        if not 1 <= len(data) <= 3:
            raise ValueError(
                f"{owner}: `{argument}` must be inputs, (x, y) or (x, y, "
                f"sample_weight); received a tuple of {len(data)} items."
            )
        x, y = data[0], (data[1] if len(data) > 1 else None)
    elif _is_array(data):
        x, y = data, None
    elif data is not None and hasattr(data, "__iter__") and not isinstance(data, (str, dict)):
        if _is_infinite(data) and max_samples is None:
            raise ValueError(
                f"{owner}: `{argument}` is an infinite dataset; pass `max_samples`."
            )
        x, y = _read_batches(data, argument, max_samples, owner)
    else:
        raise ValueError(
            f"{owner}: `{argument}` must be an array, a tuple (x, y) or an "
            f"iterable of batches; received {_describe(data)}."
        )
    if x is None or keras.tree.is_nested(x):
        raise ValueError(
            f"{owner}: `{argument}` must hold one input array; received {_describe(x)}."
        )
    if max_samples is not None:
        x = x[:max_samples]
        y = None if y is None else y[:max_samples]
    x = x if isinstance(x, np.ndarray) else np.asarray(ops.convert_to_numpy(x))
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"{owner}: `{argument}` must hold at least one example of shape "
            f"(num_examples, ...); received shape {x.shape}."
        )
    check_finite_inputs(x, argument, owner)
    if y is not None:
        y = y if isinstance(y, np.ndarray) else np.asarray(ops.convert_to_numpy(y))
        if len(y) != len(x):
            raise ValueError(f"{owner}: `{argument}` has {len(x)} inputs but {len(y)} labels.")
    return x, y


def _is_array(data):
    return isinstance(data, np.ndarray) or (
        hasattr(data, "shape") and hasattr(data, "dtype") and not hasattr(data, "element_spec")
    )


def _read_batches(batches, argument, max_samples, owner):
    inputs, labels, seen = [], [], 0
    for batch in batches:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(batch)
        inputs.append(np.asarray(ops.convert_to_numpy(x)))
        if y is not None:
            labels.append(np.asarray(ops.convert_to_numpy(y)))
        seen += len(inputs[-1])
        if max_samples is not None and seen >= max_samples:
            break
    if not inputs:
        raise ValueError(f"{owner}: `{argument}` yields no batch.")
    return np.concatenate(inputs), (np.concatenate(labels) if len(labels) == len(inputs) else None)
