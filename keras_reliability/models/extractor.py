"""One compiled forward pass for a classifier's logits, hidden features and input gradients.

Every OOD scorer, attack and the adversarial training step read the same
things from a model: its logits and, for feature-based scorers, the output
of hidden layers. `FeatureExtractor` computes all of them in one compiled
`predict` pass built from the model's `ModelReading`, so several tools
share the pass. Logits are always float32 and always have at least two
columns: a binary model's column `z` is read as the two-class logits
`[0, z]` (softmax of which is `[1 - sigmoid(z), sigmoid(z)]`), so binary
cross-entropy, MSP and every other tool work on it unchanged.
"""

import collections

import keras
import numpy as np

from keras_reliability import backend
from keras_reliability import distributed
from keras_reliability.arguments import check_positive_int
from keras_reliability.models.graph import input_structure
from keras_reliability.models.graph import layer_input
from keras_reliability.models.graph import layer_output
from keras_reliability.models.graph import model_layers
from keras_reliability.models.graph import resolve_layer
from keras_reliability.models.graph import symbolic_graph
from keras_reliability.models.outputs import UNKNOWN
from keras_reliability.models.outputs import read_model
from keras_reliability.models.outputs import select_output

# Key of the default feature: the input of the classification head.
PENULTIMATE = "<penultimate>"
_SOURCE = "<logits_source>"
_OUTPUT = "<output>"
_PROBE_ROWS = 32

_CACHE_SIZE = 8
_extractors = collections.OrderedDict()


class NonFiniteOutputsError(ValueError):
    """The model returned NaN or infinite outputs."""


class ModelOutputs:
    """A model's logits and hidden features on a set of inputs (numpy).

    Attributes:
        logits: `(N, K)` float32 logits, `K >= 2` (or log-probabilities when
            `exact_logits` is False).
        exact_logits: whether `logits` are the model's logits (False: the log
            of its probabilities, equal to the logits up to a constant per
            row).
        features: dict feature key -> `(N, ...)` float32 array.
        extractor: the `FeatureExtractor` that produced them (for `head`).
    """

    def __init__(self, logits, exact_logits, features, extractor):
        self.logits = logits
        self.exact_logits = exact_logits
        self.features = features
        self.extractor = extractor

    def __len__(self):
        return len(self.logits)

    @staticmethod
    def concatenate(parts):
        """The outputs of several input sets, one after another."""
        return ModelOutputs(
            np.concatenate([part.logits for part in parts]),
            all(part.exact_logits for part in parts),
            {
                name: np.concatenate([part.features[name] for part in parts])
                for name in parts[0].features
            },
            parts[0].extractor,
        )


def feature_key(model, layer, owner):
    """The key under which `ModelOutputs.features` holds `layer`'s output."""
    resolved = resolve_layer(model, layer, owner)
    return PENULTIMATE if resolved is None else resolved.name


def run_without_activation(layer, inputs):
    """Calls `layer` on `inputs` with its activation replaced by identity."""
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(inputs, training=False)
    finally:
        layer.activation = activation


class _ExtractorModel(keras.Model):
    """Returns `{"logits": ..., <feature key>: ...}`, float32, in one call."""

    def __init__(self, graph, reading, nested, penultimate):
        super().__init__(name="feature_extractor", dtype="float32")
        self.graph = graph
        self.reading = reading
        self.nested = nested
        self.penultimate = penultimate
        # Tracked, so that its weights are among this model's (stateless
        # calls on JAX pass them explicitly): it runs outside `graph`.
        self.head = reading.head if reading.without_activation else None
        # No weights of its own: the wrapped network is built.
        self.built = True

    def call(self, inputs, training=False):
        values = dict(self.graph(inputs, training=False))
        reading = self.reading
        if _SOURCE in values:
            source = values.pop(_SOURCE)
            if self.nested is not None:
                inner = self.nested(source)
                logits = inner["logits"]
                if self.penultimate and PENULTIMATE in inner:
                    values[PENULTIMATE] = inner[PENULTIMATE]
            elif reading.without_activation:
                logits = reading.two_class_logits_op(run_without_activation(self.head, source))
            else:
                logits = reading.two_class_logits_op(source)
        else:
            logits = reading.logits_op(values.pop(_OUTPUT))
        values = {key: keras.ops.cast(value, "float32") for key, value in values.items()}
        values["logits"] = logits
        return values


class _OutputsModel(keras.Model):
    """Logits of a model without a symbolic graph, from its outputs."""

    def __init__(self, model, reading):
        super().__init__(name="outputs", dtype="float32")
        self.network = model
        self.reading = reading
        self.built = True

    def call(self, inputs, training=False):
        return {"logits": self.reading.logits_op(self.network(inputs, training=False))}


class _LogitsModel(keras.Model):
    """The logits of an extractor, alone (for input gradients)."""

    def __init__(self, predictor):
        super().__init__(name="logits", dtype="float32")
        self.predictor = predictor
        self.built = True

    def call(self, inputs, training=False):
        return self.predictor(inputs, training=False)["logits"]


class _PerturbedLogitsModel(keras.Model):
    """Logits of `(perturbed input, context)`: one input of several, apart."""

    def __init__(self, logits_model, perturbed):
        super().__init__(name="perturbed_logits", dtype="float32")
        self.logits_model = logits_model
        self.perturbed = perturbed
        self.built = True

    def call(self, inputs, training=False):
        x, context = inputs
        return self.logits_model(self.perturbed.assemble(x, context), training=False)


class FeatureExtractor:
    """Compiled forward pass returning float32 logits and chosen hidden features.

    Args:
        model: a classifier; feature layers need a functional or Sequential
            model.
        feature_layers: layer names, indices or None (the input of the
            classification head) whose outputs to return.
        owner: name for error messages.
        output: which output of a multi-output model (name or index).
        from_logits: what the caller declares the outputs to be (None: read
            from the model).
    """

    def __init__(self, model, feature_layers=(), owner="FeatureExtractor", output=None,
                 from_logits=None):
        self.model = model
        self.owner = owner
        self.reading = read_model(model, output=output, from_logits=from_logits, owner=owner)
        self.reading.require_class_scores()
        self.keys = []
        self._feature_layers = []
        for layer in feature_layers:
            key = feature_key(model, layer, owner)
            if key not in self.keys:
                self.keys.append(key)
                self._feature_layers.append(resolve_layer(model, layer, owner))
        if self.keys and symbolic_graph(model) is None:
            raise ValueError(
                f"{owner}: reading features needs a functional or Sequential model "
                f"with a known input shape; model {model.name!r} "
                f"({type(model).__name__}) has no symbolic inputs. Build it with "
                "`keras.Input`, or score it with a logit-based scorer."
            )
        if PENULTIMATE in self.keys:
            self._check_penultimate()
        self._compiled = {}
        self._predictor = None
        self._logits_model = None

    @property
    def outputs_probabilities(self):
        """Whether the model outputs probabilities (softmax rows or a sigmoid column)."""
        return self.reading.outputs_probabilities

    def _check_penultimate(self):
        reading = self.reading
        while reading.nested is not None:
            reading = reading.nested
        if reading.feature is None:
            raise ValueError(
                f"{self.owner}: the input of model {self.model.name!r}'s classification "
                "head cannot be found in its graph (the output is not computed by a "
                "layer such as Dense from one input). Pass `feature_layer=` (a layer "
                "name or index)."
            )

    # Building ------------------------------------------------------------

    def resolve(self, x):
        """Reads the model's kind from its outputs on the first rows of `x` if needed."""
        if self.reading.kind != UNKNOWN:
            return
        first = keras.tree.map_structure(lambda leaf: leaf[:_PROBE_ROWS], x)
        outputs = select_output(
            distributed.predict_on_batch(self.model, first), self.reading.output_index
        )
        if not np.all(np.isfinite(outputs)):
            raise NonFiniteOutputsError(
                f"{self.owner}: model {self.model.name!r} returned NaN or infinite outputs."
            )
        self.reading.resolve(outputs)

    def _predictor_model(self):
        if self._predictor is None:
            self._predictor = _build(self.reading, dict(zip(self.keys, self._feature_layers)))
        return self._predictor

    # Running -------------------------------------------------------------

    def predict(self, x, batch_size=None):
        """`ModelOutputs` of the model on inputs `x` (anything predict takes)."""
        batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        self.resolve(x)
        outputs = distributed.predict(self._predictor_model(), x, batch_size=batch_size)
        logits = np.asarray(outputs.pop("logits"), dtype=np.float32)
        if not np.all(np.isfinite(logits)):
            raise NonFiniteOutputsError(
                f"{self.owner}: model {self.model.name!r} returned NaN or infinite outputs."
            )
        features = {key: np.asarray(outputs[key], dtype=np.float32) for key in self.keys}
        return ModelOutputs(logits, self.reading.exact_logits, features, self)

    def logits_model(self):
        """A `keras.Model` mapping inputs to float32 logits `(N, K >= 2)`.

        Log-probabilities stand in for the logits of a model whose logits the
        graph does not hold (equal up to a constant per row).
        """
        if self.reading.kind == UNKNOWN:
            raise ValueError(
                f"{self.owner}: the outputs of model {self.model.name!r} must be seen "
                "before its logits can be read; call `predict` first."
            )
        if self._logits_model is None:
            self._logits_model = _LogitsModel(self._predictor_model())
        return self._logits_model

    def input_gradient(self, loss, with_outputs=False, perturbed=None):
        """`backend.input_gradient_function` of `logits_model()` for `loss`.

        Compiled once per loss (and perturbed input) and kept, so that every
        attack or scorer on this model shares one traced function. With a
        `PerturbedInput`, the function is `gradient(x, *args, context=...)`:
        `x` is that input, `context` the model's other inputs.
        """
        key = (loss, with_outputs, None if perturbed is None else perturbed.key)
        if key not in self._compiled:
            self._compiled[key] = backend.input_gradient_function(
                self._attacked_model(perturbed), loss, with_outputs
            )
        return self._compiled[key]

    def forward(self, perturbed=None):
        """`backend.forward_function` of `logits_model()`: compiled logits."""
        key = ("forward", None if perturbed is None else perturbed.key)
        if key not in self._compiled:
            self._compiled[key] = backend.forward_function(self._attacked_model(perturbed))
        return self._compiled[key]

    def _attacked_model(self, perturbed):
        if perturbed is None:
            return self.logits_model()
        return _PerturbedLogitsModel(self.logits_model(), perturbed)

    # Logits from features (ReAct) -----------------------------------------

    def head(self, key, features, batch_size=None):
        """Logits computed from the features of `key` by the layers after it.

        Supported for the default feature (the input of the classification
        head) and for any layer of a model whose layers from it to the head
        form a single chain.
        """
        reading = self.reading
        layers = self._head_layers(key)

        def forward(h):
            h = keras.ops.convert_to_tensor(h)
            for layer in layers:
                if layer is reading.head and reading.without_activation:
                    h = run_without_activation(layer, h)
                else:
                    h = layer(h, training=False)
            return reading.two_class_logits_op(h)

        batch_size = batch_size or 1024
        logits = [
            keras.ops.convert_to_numpy(forward(features[start : start + batch_size]))
            for start in range(0, len(features), batch_size)
        ]
        return np.concatenate(logits).astype(np.float32)

    def _head_layers(self, key):
        head = self.reading.head
        if head is None or self.reading.nested is not None:
            raise ValueError(
                f"{self.owner}: the classification head of model {self.model.name!r} is "
                "not a layer of its own graph, so logits cannot be recomputed from "
                "features."
            )
        if key == PENULTIMATE:
            return list(self.reading.head_chain)
        layers = model_layers(self.model, self.owner)
        names = [layer.name for layer in layers]
        position = names.index(key)
        if layers[position] is head or head not in layers[position + 1 :]:
            raise ValueError(
                f"{self.owner}: `feature_layer` {key!r} is not before the "
                f"classification head {head.name!r}; there are no layers to recompute "
                "logits from its features. Use a hidden layer, or None (the input of "
                "the head)."
            )
        chain = layers[position + 1 : layers.index(head)] + list(self.reading.head_chain)
        previous = layers[position]
        for layer in chain:
            if layer_input(layer) is not layer_output(previous):
                raise ValueError(
                    f"{self.owner}: the layers after {key!r} do not form a single "
                    "chain, so logits cannot be recomputed from its features. Use the "
                    "default `feature_layer=None` (the input of the classification head)."
                )
            previous = layer
        return chain


def _build(reading, feature_layers):
    """The predictor model of a resolved reading."""
    model = reading.model
    graph = symbolic_graph(model)
    if graph is None:
        return _OutputsModel(model, reading)
    outputs = {}
    if reading.logits_source is not None:
        outputs[_SOURCE] = reading.logits_source
    else:
        outputs[_OUTPUT] = graph[1][reading.output_index]
    nested = None
    for key, layer in feature_layers.items():
        if layer is not None:
            outputs[key] = layer.output
        elif reading.nested is None:
            outputs[key] = reading.feature
    if reading.nested is not None:
        inner_layers = {PENULTIMATE: None} if PENULTIMATE in feature_layers else {}
        nested = _build(reading.nested, inner_layers)
    return _ExtractorModel(
        keras.Model(input_structure(model), outputs),
        reading,
        nested,
        PENULTIMATE in feature_layers,
    )


def feature_extractor(model, feature_layers=(), owner="FeatureExtractor", output=None,
                      from_logits=None):
    """A cached `FeatureExtractor` (rebuilding one recompiles predict)."""
    keys = tuple(feature_key(model, layer, owner) for layer in feature_layers)
    cache_key = (id(model), tuple(sorted(set(keys))), output, from_logits, _loss_key(model))
    extractor = _extractors.pop(cache_key, None)
    if extractor is None or extractor.model is not model:
        extractor = FeatureExtractor(model, feature_layers, owner, output, from_logits)
    _extractors[cache_key] = extractor
    while len(_extractors) > _CACHE_SIZE:
        _extractors.popitem(last=False)
    return extractor


def _loss_key(model):
    # A model compiled again with another loss may be read differently.
    return repr(getattr(model, "loss", None))
