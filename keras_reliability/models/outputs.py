"""What a model outputs, and how every tool reads it.

`read_model(model)` answers once, for every tool, the questions each used to
guess on its own: which output, what kind of values it holds (logits,
probabilities, log-probabilities, one sigmoid column, one logit column, or
not class scores at all), in what dtype, which layer is the classification
head, and where its logits can be recovered exactly.

The kind is read from the operation that produces the output tensor, walking
back through layers that are the identity at inference (Dropout, noise):
a `Softmax` layer, an `Activation` layer, a layer's own `activation`, a
`keras.ops.softmax` / `sigmoid` / `log_softmax` call, or a nested model
(read recursively). A single linear column is a binary logit or a regression
output: the compiled loss, or an explicit `from_logits=True`, decides, and
neither is guessed. Where the graph says nothing (a subclassed model, a
`Lambda` layer), the values decide (`ModelReading.resolve`), with tolerances
set by the output dtype. An explicit `from_logits` is checked against both.

All arithmetic on the values is float32 (float64 for probabilities),
whatever the mixed-precision policy.
"""

import keras
import numpy as np

from keras_reliability.models.graph import check_model
from keras_reliability.models.graph import node_inputs
from keras_reliability.models.graph import producer
from keras_reliability.models.graph import symbolic_graph

LOGITS = "logits"
PROBABILITIES = "probabilities"
LOG_PROBABILITIES = "log_probabilities"
SIGMOID = "sigmoid"
BINARY_LOGIT = "binary_logit"
REGRESSION = "regression"
MULTI_LABEL = "multi_label"
# Class scores of a kind the graph does not tell; `resolve` reads the values.
UNKNOWN = "unknown"

_CLASS_SCORE_KINDS = (LOGITS, PROBABILITIES, LOG_PROBABILITIES, SIGMOID, BINARY_LOGIT)

# Layers that are the identity at inference.
_PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)

# Layers that only change the shape of the logits.
_RESHAPING = (keras.layers.Flatten, keras.layers.Reshape)

# Activation names (of a layer, an Activation layer or a keras.ops call) and
# the kind of values they produce; "linear" means "look further".
_ACTIVATION_KINDS = {
    "softmax": PROBABILITIES,
    "sigmoid": SIGMOID,
    "log_softmax": LOG_PROBABILITIES,
    "linear": LOGITS,
}
_OP_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "LogSoftmax": "log_softmax"}

# Compiled losses, normalised (lower case, no underscores): what they say a
# linear output is.
_REGRESSION_LOSSES = {
    "mse", "mae", "mape", "msle", "meansquarederror", "meanabsoluteerror",
    "meanabsolutepercentageerror", "meansquaredlogarithmicerror", "huber", "huberloss",
    "logcosh", "poisson", "cosinesimilarity",
}
_BINARY_LOSSES = {"binarycrossentropy", "binaryfocalcrossentropy", "hinge", "squaredhinge"}

# Smallest positive float32: the floor of probabilities before a log.
TINY = float(np.finfo(np.float32).tiny)


class ModelReading:
    """How to read one output of a model (see `read_model`).

    Attributes:
        model: the model.
        output_index: which of the model's outputs (0 for a single output).
        kind: one of `LOGITS`, `PROBABILITIES`, `LOG_PROBABILITIES`,
            `SIGMOID`, `BINARY_LOGIT`, `REGRESSION`, `MULTI_LABEL` or
            `UNKNOWN` (until `resolve` sees values).
        dtype: the output's dtype name (e.g. "bfloat16"), or None if unknown.
        head: the layer that computes the logits (a `Dense`, ...), or None.
        head_chain: `head` and the layers after it that only reshape its
            output (e.g. `Flatten`), up to the logits.
        logits_source: the symbolic tensor from which the logits are
            recovered exactly, or None (logits then come from the values).
        without_activation: whether the logits are `head` run on
            `logits_source` with its activation removed.
        nested: the `ModelReading` of a nested model whose outputs are this
            model's, called on `logits_source`; or None.
        feature: the symbolic input of `head` (the default feature), or None.
        declared_from_logits: the `from_logits` the caller passed, or None.
    """

    def __init__(self, model, output_index, owner):
        self.model = model
        self.output_index = output_index
        self.owner = owner
        self.kind = UNKNOWN
        self.dtype = None
        self.num_columns = None
        self.head = None
        self.head_chain = []
        self.logits_source = None
        self.without_activation = False
        self.nested = None
        self.feature = None
        self.declared_from_logits = None
        self.reason = None

    # What the model is ---------------------------------------------------

    @property
    def is_class_scores(self):
        return self.kind in _CLASS_SCORE_KINDS or self.kind == UNKNOWN

    @property
    def is_binary(self):
        return self.kind in (SIGMOID, BINARY_LOGIT)

    @property
    def outputs_probabilities(self):
        """Whether the outputs are probabilities (softmax rows or a sigmoid column)."""
        return self.kind in (PROBABILITIES, SIGMOID)

    @property
    def from_logits(self):
        """The `from_logits` of the library's metrics for these outputs."""
        return self.kind in (LOGITS, BINARY_LOGIT, LOG_PROBABILITIES)

    @property
    def exact_logits(self):
        """Whether the logits of these outputs can be had exactly.

        True for logit outputs and for probabilities whose logits the graph
        holds; False when only the log of probabilities can stand in for
        them (equal up to a constant per row for a softmax).
        """
        if self.kind in (LOGITS, BINARY_LOGIT):
            return True
        return self.logits_source is not None and (
            self.nested is None or self.nested.exact_logits
        )

    def describe(self):
        """A short phrase for messages, e.g. "probabilities (softmax)"."""
        return {
            LOGITS: "logits",
            PROBABILITIES: "probabilities (softmax)",
            LOG_PROBABILITIES: "log-probabilities",
            SIGMOID: "one sigmoid probability column",
            BINARY_LOGIT: "one logit column (binary)",
            REGRESSION: "regression values, not class scores",
            MULTI_LABEL: "independent sigmoid columns (multi-label), not class scores",
            UNKNOWN: "class scores of unknown kind",
        }[self.kind]

    def require_class_scores(self):
        """Raises a ValueError unless the output holds class scores."""
        if not self.is_class_scores:
            raise ValueError(
                f"{self.owner}: model {self.model.name!r} outputs {self.describe()}"
                f"{' (' + self.reason + ')' if self.reason else ''}; this tool needs a "
                "classifier whose output is logits or probabilities of shape "
                "(batch, num_classes), or one sigmoid or logit column."
            )
        return self

    # Values --------------------------------------------------------------

    def resolve(self, values):
        """Checks `values` (outputs of the model) against the kind; fixes UNKNOWN.

        Args:
            values: numpy outputs of the model on a few examples (finite).

        Returns:
            `self`.

        Raises:
            ValueError: when the values contradict the graph or the declared
                `from_logits`, or do not have the shape of class scores.
        """
        self.require_class_scores()
        values = np.asarray(values)
        if self.dtype is None:
            self.dtype = str(values.dtype)
        values = _class_score_matrix(values, self)
        if self.num_columns is None:
            self.num_columns = values.shape[-1]
        tolerance = _tolerance(self.dtype, values.shape[-1])
        declared = self.declared_from_logits
        looks_like = _value_kind(values, tolerance)
        if self.kind == UNKNOWN:
            if values.shape[-1] == 1:
                if declared is None:
                    raise ValueError(
                        f"{self.owner}: model {self.model.name!r} outputs one column "
                        "and nothing in its graph or compiled loss says whether it is a "
                        "sigmoid probability, a logit or a regression value. Pass "
                        "`from_logits` (True: a logit, False: a probability) or compile "
                        "the model with its loss."
                    )
                self.kind = BINARY_LOGIT if declared else SIGMOID
            elif declared is True:
                self.kind = LOGITS
            elif declared is False:
                self.kind = PROBABILITIES
            else:
                self.kind = looks_like
        self._check_values(values, looks_like, tolerance)
        return self

    def _check_values(self, values, looks_like, tolerance):
        name = f"model {self.model.name!r}"
        if self.kind == PROBABILITIES and looks_like != PROBABILITIES:
            raise ValueError(
                f"{self.owner}: {name} is read as outputting probabilities, but its "
                f"rows are not non-negative with sums of 1 (within {tolerance:.2g} for "
                f"{self.dtype}): min {values.min():.4g}, max |row sum - 1| "
                f"{np.abs(values.sum(-1) - 1).max():.4g}. Pass `from_logits=True` if "
                "it outputs logits."
            )
        if self.kind == SIGMOID and (values.min() < 0 or values.max() > 1):
            raise ValueError(
                f"{self.owner}: {name} is read as outputting a sigmoid probability, "
                f"but its values lie in [{values.min():.4g}, {values.max():.4g}]. Pass "
                "`from_logits=True` if it outputs a logit."
            )
        if (
            self.kind in (LOGITS, BINARY_LOGIT)
            and self.logits_source is None
            and self.declared_from_logits is True
            and looks_like == PROBABILITIES
            and len(values) > 1
            and values.shape[-1] > 1
        ):
            raise ValueError(
                f"{self.owner}: `from_logits=True`, but {name} outputs rows that are "
                "non-negative and sum to 1: probabilities. Pass `from_logits=False` "
                "(or leave it None)."
            )

    def metric_inputs(self, values):
        """`(y_pred, from_logits)` for the library's metrics, float32.

        Probabilities computed in a low-precision dtype are renormalised so
        that their rows sum to 1 in float32.
        """
        values = np.asarray(values, dtype=np.float32)
        if self.kind == PROBABILITIES:
            values = values / values.sum(axis=-1, keepdims=True)
        return values, self.from_logits

    def probabilities(self, values):
        """Class probabilities, float64 `(..., K)` (`K = 2` for a binary model)."""
        values = np.asarray(values, dtype=np.float64)
        if self.is_binary:
            column = values.reshape(values.shape[:-1]) if values.shape[-1:] == (1,) else values
            positive = _sigmoid(column) if self.kind == BINARY_LOGIT else column
            return np.stack([1.0 - positive, positive], axis=-1)
        if self.kind == PROBABILITIES:
            return values / values.sum(axis=-1, keepdims=True)
        shifted = values - values.max(axis=-1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=-1, keepdims=True)

    def predicted_classes(self, values):
        """The predicted class of each row of outputs, int `(N,)`."""
        return self.probabilities(values).argmax(axis=-1)

    def logits_op(self, values):
        """Logits `(N, K >= 2)` float32 from output values, in `keras.ops`.

        Exact for logits; for probabilities, their logarithm (equal to the
        logits up to a constant per row); a binary model's column `z` (or
        `logit(p)`) becomes the two-class logits `[0, z]`.
        """
        ops = keras.ops
        values = ops.cast(values, "float32")
        if len(values.shape) == 1:
            values = ops.expand_dims(values, -1)
        if self.kind == PROBABILITIES:
            return ops.log(ops.maximum(values, TINY))
        if self.kind == SIGMOID:
            values = ops.log(ops.maximum(values, TINY)) - ops.log(ops.maximum(1.0 - values, TINY))
        if self.is_binary:
            return ops.concatenate([ops.zeros_like(values), values], axis=-1)
        return values

    def two_class_logits_op(self, logits):
        """`[0, z]` for a binary model's logit column `z`; other logits unchanged."""
        ops = keras.ops
        logits = ops.cast(logits, "float32")
        if not self.is_binary:
            return logits
        if len(logits.shape) == 1:
            logits = ops.expand_dims(logits, -1)
        return ops.concatenate([ops.zeros_like(logits), logits], axis=-1)

    @property
    def num_classes(self):
        """Classes of the two-class view (2 for one column), or None if unknown."""
        if self.num_columns is None:
            return None
        return 2 if self.num_columns == 1 else self.num_columns


def read_model(model, *, output=None, from_logits=None, owner="keras_reliability"):
    """Reads what `model` outputs (see the module docstring).

    Args:
        model: a `keras.Model`.
        output: which output of a multi-output model: its name or index.
            Required when the model has several outputs.
        from_logits: what the caller declares (None: read it). Checked
            against the graph now and against values in `resolve`.
        owner: the caller's name, for messages.

    Returns:
        A `ModelReading`.

    Raises:
        ValueError: for a non-model, an ambiguous or unknown `output`, or a
            `from_logits` that contradicts the graph.
    """
    check_model(model, owner)
    if from_logits is not None and not isinstance(from_logits, bool):
        raise ValueError(f"{owner}: `from_logits` must be True, False or None; received {from_logits!r}.")
    graph = symbolic_graph(model)
    index = _output_index(model, graph, output, owner)
    reading = ModelReading(model, index, owner)
    reading.declared_from_logits = from_logits
    if graph is not None:
        tensor = graph[1][index]
        reading.dtype = str(tensor.dtype)
        reading.num_columns = _columns(tensor.shape)
        _trace(reading, tensor)
        if len(tensor.shape) != 2 and not (len(tensor.shape) == 1) and reading.is_class_scores:
            reading.kind = REGRESSION
            reading.reason = f"its output has shape {tuple(tensor.shape)}"
    _apply_compiled_loss(reading, _compiled_loss(model, index))
    _apply_declaration(reading, from_logits)
    return reading


def check_output(output, owner):
    """Returns `output` (None, a name or an index) or raises a ValueError naming it.

    For constructors: the model, against which the choice is checked by
    `read_model`, is known only later.
    """
    if output is None or isinstance(output, str):
        return output
    if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
        return int(output)
    raise ValueError(
        f"{owner}: `output` must be None, an output name or an index; received {output!r}."
    )


def _output_index(model, graph, output, owner):
    if graph is None:
        if output not in (None, 0):
            raise ValueError(
                f"{owner}: `output` {output!r} cannot be chosen on model {model.name!r}, "
                "which has no symbolic outputs (a subclassed model)."
            )
        return 0
    outputs = graph[1]
    names = [_output_name(model, i, tensor) for i, tensor in enumerate(outputs)]
    layer_names = getattr(model, "output_names", None) or []
    if output is None:
        if len(outputs) > 1:
            raise ValueError(
                f"{owner}: model {model.name!r} has {len(outputs)} outputs "
                f"({', '.join(map(repr, names))}); pass `output=` (a name or index) "
                "to choose the classification output, or, to a tool without an "
                "`output` argument, a model of that output alone: "
                "`keras.Model(model.inputs, model.outputs[index])`."
            )
        return 0
    if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
        if not -len(outputs) <= output < len(outputs):
            raise ValueError(
                f"{owner}: `output` index {output} is out of range for model "
                f"{model.name!r}, which has {len(outputs)} outputs."
            )
        return int(output) % len(outputs)
    if isinstance(output, str) and output in names:
        return names.index(output)
    if isinstance(output, str) and output in layer_names:
        return layer_names.index(output)
    raise ValueError(
        f"{owner}: `output` must be one of the outputs of model {model.name!r} "
        f"({', '.join(map(repr, names))}) or an index; received {output!r}."
    )


def _output_name(model, index, tensor):
    structure = getattr(model, "_outputs_struct", None)
    if isinstance(structure, dict):
        # Outputs given as a dict are known by its keys, in flattened order.
        paths = [path for path, _ in keras.tree.flatten_with_path(structure)]
        if index < len(paths):
            return str(paths[index][0])
    names = getattr(model, "output_names", None)
    if names and index < len(names):
        return names[index]
    operation, _ = producer(tensor)
    return getattr(operation, "name", str(index))


def _columns(shape):
    if len(shape) == 1:
        return 1
    return shape[-1]


def _activation_name(activation):
    return getattr(activation, "__name__", None)


def _trace(reading, tensor):
    """Walks back from the output tensor to what decides its kind."""
    while True:
        operation, node = producer(tensor)
        if operation is None:
            return
        if isinstance(operation, _PASS_THROUGH):
            tensor = node_inputs(node)[0]
            continue
        if isinstance(operation, keras.Model):
            return _trace_nested(reading, operation, node)
        if isinstance(operation, keras.layers.Softmax):
            return _ends_in(reading, "softmax", node_inputs(node)[0], axis=operation.axis)
        if isinstance(operation, keras.layers.Activation):
            name = _activation_name(operation.activation)
            if name == "linear":
                tensor = node_inputs(node)[0]
                continue
            return _ends_in(reading, name, node_inputs(node)[0])
        if not isinstance(operation, keras.layers.Layer):
            name = _OP_ACTIVATIONS.get(type(operation).__name__)
            if name is not None and type(operation).__module__.startswith("keras"):
                axis = getattr(operation, "axis", -1)
                return _ends_in(reading, name, node_inputs(node)[0], axis=axis)
            return  # an arithmetic op: values decide
        if hasattr(operation, "activation") and callable(operation.activation):
            name = _activation_name(operation.activation)
            if name == "linear":
                _set_head(reading, operation, node, source=tensor)
                reading.kind = LOGITS
                return
            kind = _ACTIVATION_KINDS.get(name)
            if kind is None:
                reading.kind = REGRESSION
                reading.reason = f"its last layer {operation.name!r} ends in {name}"
                return
            _set_head(reading, operation, node, source=node_inputs(node)[0])
            reading.without_activation = True
            reading.kind = kind
            _check_sigmoid_columns(reading)
            return
        return  # another layer (Lambda, Reshape, Concatenate, ...): values decide


def _ends_in(reading, name, source, axis=-1):
    kind = _ACTIVATION_KINDS.get(name)
    if kind is None:
        reading.kind = REGRESSION
        reading.reason = f"it ends in the activation {name}"
        return
    if kind in (PROBABILITIES, LOG_PROBABILITIES) and axis not in (-1, len(source.shape) - 1):
        reading.kind = UNKNOWN
        return
    reading.kind = kind
    reading.logits_source = source
    # The head is the layer that computes the logits, seen through layers
    # that only reshape them (MobileNet's 1x1 Conv2D, then Flatten).
    chain = []
    operation, node = producer(source)
    while isinstance(operation, _RESHAPING + _PASS_THROUGH):
        chain.insert(0, operation)
        operation, node = producer(node_inputs(node)[0])
    if isinstance(operation, keras.layers.Layer) and not isinstance(operation, keras.Model):
        reading.head = operation
        reading.head_chain = [operation] + chain
        reading.feature = _single_input(node)
    _check_sigmoid_columns(reading)


def _set_head(reading, layer, node, source):
    reading.head = layer
    reading.head_chain = [layer]
    reading.logits_source = source
    reading.feature = _single_input(node)


def _single_input(node):
    inputs = node_inputs(node)
    return inputs[0] if len(inputs) == 1 else None


def _check_sigmoid_columns(reading):
    if reading.kind == SIGMOID and reading.num_columns not in (None, 1):
        reading.kind = MULTI_LABEL


def _trace_nested(reading, inner, node):
    inputs = node_inputs(node)
    if len(inputs) != 1 or symbolic_graph(inner) is None or len(inner.outputs) != 1:
        return  # values decide
    inner_reading = ModelReading(inner, 0, reading.owner)
    inner_reading.num_columns = reading.num_columns
    _trace(inner_reading, inner.outputs[0])
    reading.kind = inner_reading.kind
    reading.reason = inner_reading.reason
    reading.head = inner_reading.head
    reading.head_chain = inner_reading.head_chain
    if inner_reading.logits_source is not None:
        reading.nested = inner_reading
        reading.logits_source = inputs[0]


def _compiled_loss(model, index):
    loss = getattr(model, "loss", None)
    if isinstance(loss, dict):
        names = getattr(model, "output_names", None) or []
        loss = loss.get(names[index]) if index < len(names) else None
    elif isinstance(loss, (list, tuple)):
        loss = loss[index] if index < len(loss) else None
    if loss is None:
        return None
    if isinstance(loss, str):
        name = loss
    else:
        name = getattr(loss, "name", None) or getattr(loss, "__name__", None) or type(loss).__name__
    if not isinstance(name, str):
        return None
    return name.replace("_", "").lower()


def _apply_compiled_loss(reading, loss):
    if loss is None or reading.kind not in (LOGITS, UNKNOWN):
        return
    if loss in _REGRESSION_LOSSES:
        reading.kind = REGRESSION
        reading.reason = f"it is compiled with the regression loss {loss!r}"
    elif reading.num_columns == 1 and loss in _BINARY_LOSSES:
        reading.kind = BINARY_LOGIT if reading.kind == LOGITS else UNKNOWN


def _apply_declaration(reading, from_logits):
    """Checks an explicit `from_logits` against what the graph says."""
    if reading.kind == LOGITS and reading.num_columns == 1:
        # One linear column: a binary logit only if the loss or caller says so.
        reading.kind = BINARY_LOGIT if from_logits else UNKNOWN
        if from_logits is False:
            reading.kind = SIGMOID
            return
    if from_logits is None or reading.kind in (UNKNOWN, REGRESSION, MULTI_LABEL):
        return
    if from_logits != reading.from_logits:
        said = "logits" if from_logits else "probabilities"
        raise ValueError(
            f"{reading.owner}: `from_logits={from_logits}` says model "
            f"{reading.model.name!r} outputs {said}, but its graph ends in "
            f"{reading.describe()}. Leave `from_logits` as None to read it from the model."
        )


def _class_score_matrix(values, reading):
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[-1] < 1:
        raise ValueError(
            f"{reading.owner}: model {reading.model.name!r} must output class scores of "
            f"shape (batch, num_classes) or (batch, 1); it outputs shape {values.shape}."
        )
    if reading.num_columns not in (None, values.shape[-1]):
        raise ValueError(
            f"{reading.owner}: model {reading.model.name!r} output {values.shape[-1]} "
            f"columns where its graph has {reading.num_columns}."
        )
    return values.astype(np.float64)


def _tolerance(dtype, num_columns):
    """How far from 1 a row of probabilities computed in `dtype` may sum."""
    return max(1e-3, num_columns * _EPSILONS.get(str(dtype), _EPSILONS["float32"]))


# Machine epsilon of the float dtypes outputs come in.
_EPSILONS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def _value_kind(values, tolerance):
    low, high = values.min(), values.max()
    row_error = np.abs(values.sum(axis=-1) - 1.0).max()
    if values.shape[-1] > 1 and low >= -tolerance and high <= 1 + tolerance and row_error <= tolerance:
        return PROBABILITIES
    if values.shape[-1] > 1 and high <= tolerance:
        top = values.max(axis=-1, keepdims=True)
        log_sums = top[:, 0] + np.log(np.exp(values - top).sum(axis=-1))
        if np.abs(log_sums).max() <= tolerance:
            return LOG_PROBABILITIES
    return LOGITS


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def select_output(outputs, index):
    """Output `index` of what a model returned (a structure or one array), as numpy."""
    if keras.tree.is_nested(outputs):
        outputs = keras.tree.flatten(outputs)[index]
    return np.asarray(outputs)


__all__ = [
    "ModelReading",
    "check_output",
    "classification_head",
    "select_output",
    "read_model",
    "LOGITS",
    "PROBABILITIES",
    "LOG_PROBABILITIES",
    "SIGMOID",
    "BINARY_LOGIT",
    "REGRESSION",
    "MULTI_LABEL",
    "UNKNOWN",
]


def classification_head(model, owner):
    """The layer that computes `model`'s logits (e.g. its last Dense layer).

    Trailing `Activation`, `Softmax`, `Dropout` layers and `keras.ops`
    activations are looked through.

    Raises:
        ValueError: when the logits are not computed by one layer of the
            model's own graph.
    """
    reading = read_model(model, owner=owner)
    if reading.head is None or reading.nested is not None:
        raise ValueError(
            f"{owner}: the logits of model {model.name!r} are not computed by a layer "
            "of its own graph (a functional or Sequential model ending in a layer "
            "such as Dense, optionally followed by an activation)."
        )
    return reading.head
