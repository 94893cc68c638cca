"""One forward pass that returns a classifier's logits and hidden features.

Every OOD scorer reads the same two things from a model: its logits (the
pre-softmax outputs) and, for feature-based scorers, the output of a hidden
layer. `FeatureExtractor` computes all of them in one compiled
`predict` pass, so several scorers share the pass; and `head` maps features
of a layer back to logits (ReAct clips features, then needs new logits).

A model whose last layer ends in a softmax (or sigmoid) still yields its
logits: the last layer is run once more with its activation removed, on the
input the model gave it. Models whose last layer cannot be treated that way
yield log-probabilities instead, which are logits up to a per-example
constant: enough for shift-invariant scorers (MSP, entropy, ODIN), refused
by the others.
"""

import collections

import keras
import numpy as np

from keras_reliability import backend
from keras_reliability import distributed
from keras_reliability.arguments import check_positive_int
from keras_reliability.metrics._inputs import outputs_are_probabilities

_CACHE_SIZE = 8
_extractors = collections.OrderedDict()


class ModelOutputs:
    """A model's logits and hidden features on a set of inputs (numpy).

    Attributes:
        logits: `(N, K)` float array of logits, or of log-probabilities when
            `exact_logits` is False.
        exact_logits: whether `logits` are the model's logits (False: they are
            log-probabilities, equal to the logits up to a constant per row).
        features: dict layer name -> `(N, ...)` float array.
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


def resolve_layer(model, layer, owner):
    """The layer of `model` named (str) or indexed (int) by `layer`.

    None means the penultimate representation: the input of the last layer.
    Returns the layer whose *output* is the feature, or None for the input of
    the last layer.
    """
    if layer is None:
        return None
    layers = _layers(model, owner)
    if isinstance(layer, str):
        for candidate in layers:
            if candidate.name == layer:
                return candidate
        names = ", ".join(repr(candidate.name) for candidate in layers)
        raise ValueError(
            f"{owner}: `feature_layer` {layer!r} is not a layer of model "
            f"{model.name!r}. Its layers: {names}."
        )
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(
                f"{owner}: `feature_layer` index {layer} is out of range for "
                f"model {model.name!r}, which has {len(layers)} layers."
            )
        return layers[layer]
    raise ValueError(
        f"{owner}: `feature_layer` must be a layer name, an index or None; " f"received {layer!r}."
    )


def feature_key(model, layer, owner):
    """The key under which `ModelOutputs.features` holds `layer`'s output."""
    resolved = resolve_layer(model, layer, owner)
    return _PENULTIMATE if resolved is None else resolved.name


# Key of the input of the last layer, the default feature.
_PENULTIMATE = "<penultimate>"


def _layers(model, owner):
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"{owner}: `model` must be a keras.Model; received {type(model).__name__}."
        )
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _symbolic_graph(model, owner, required=True):
    """`(inputs, output)` of a functional or Sequential model.

    None for a model without a symbolic graph (subclassed), unless
    `required`, which raises.
    """
    try:
        inputs = model.inputs
        outputs = model.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs or not outputs:
        if not required:
            return None
        raise ValueError(
            f"{owner}: reading features needs a functional or Sequential model "
            f"with a known input shape; model {model.name!r} "
            f"({type(model).__name__}) has no symbolic inputs. Build it with "
            "`keras.Input`, or score it with a logit-based scorer."
        )
    if len(outputs) != 1:
        raise ValueError(
            f"{owner}: the model must have one output of class scores; model "
            f"{model.name!r} has {len(outputs)} outputs."
        )
    return inputs, outputs[0]


def check_single_input(model, owner):
    """Raises unless `model` takes one input (when its inputs are known)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # subclassed: unknown until called
        return
    if inputs and len(inputs) != 1:
        raise ValueError(
            f"{owner}: the model must have one input; model {model.name!r} has "
            f"{len(inputs)} inputs."
        )


class _ExtractorModel(keras.Model):
    """Returns `{"logits": ..., <feature key>: ...}` in one call."""

    def __init__(self, graph, last_layer, linearise):
        super().__init__(name="feature_extractor")
        self.graph = graph
        self.last_layer = last_layer
        self.linearise = linearise
        self.built = True

    def call(self, inputs, training=False):
        outputs = self.graph(inputs, training=False)
        last_input = outputs.pop("<last_input>", None)
        if self.linearise:
            outputs["logits"] = run_without_activation(self.last_layer, last_input)
        return outputs


class _LogitsModel(keras.Model):
    """The logits of a model or of an `_ExtractorModel`, alone."""

    def __init__(self, network, softmax_inside):
        super().__init__(name="logits")
        self.network = network
        self.softmax_inside = softmax_inside
        # No weights of its own; the wrapped network is built.
        self.built = True

    def call(self, inputs, training=False):
        outputs = self.network(inputs, training=False)
        if isinstance(outputs, dict):
            return outputs["logits"]
        if self.softmax_inside:
            return keras.ops.log(keras.ops.maximum(outputs, np.finfo(np.float32).tiny))
        return outputs


def run_without_activation(layer, inputs):
    """Calls `layer` on `inputs` with its activation replaced by identity."""
    activation = layer.activation
    layer.activation = keras.activations.linear
    try:
        return layer(inputs, training=False)
    finally:
        layer.activation = activation


def output_layer(model):
    """The layer that produces the output of a functional or Sequential model."""
    layers = _layers(model, "output_layer")
    outputs = getattr(model, "outputs", None) or []
    for layer in reversed(layers):
        if outputs and _single_output(layer) is outputs[0]:
            return layer
    return layers[-1]


# Final activations whose removal gives back the logits.
_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")


def _ends_in_probabilities(layer):
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "")
    return name if name in _PROBABILITY_ACTIVATIONS else None


def _are_log_probabilities(outputs):
    # Rows of log-probabilities are <= 0 and their exponentials sum to 1.
    if outputs.max() > 0:
        return False
    top = outputs.max(axis=1, keepdims=True)
    log_sums = top[:, 0] + np.log(np.exp(outputs - top).sum(axis=1))
    return bool(np.abs(log_sums).max() < 1e-3)


class FeatureExtractor:
    """Compiled forward pass returning logits and chosen hidden features.

    Args:
        model: a classifier; feature layers need a functional or Sequential
            model.
        feature_layers: layer names, indices or None (the input of the last
            layer) whose outputs to return.
        owner: name for error messages.
    """

    def __init__(self, model, feature_layers=(), owner="FeatureExtractor"):
        self.model = model
        self.owner = owner
        self.keys = []
        self._feature_layers = []
        for layer in feature_layers:
            key = feature_key(model, layer, owner)
            if key not in self.keys:
                self.keys.append(key)
                self._feature_layers.append(resolve_layer(model, layer, owner))
        self._build()

    def _build(self):
        self._compiled = {}
        self._softmax_inside = False
        self._logits_model = None
        self._predictor = None
        # Whether the model's outputs are probabilities (not logits or
        # log-probabilities); for a subclassed model, known after `predict`.
        self.outputs_probabilities = False
        graph = _symbolic_graph(self.model, self.owner, required=bool(self.keys))
        if graph is None:
            # A subclassed model and no feature needed: the model itself is
            # the pass, and its outputs tell logits from probabilities.
            return
        inputs, output = graph
        last = output_layer(self.model)
        kind = _ends_in_probabilities(last)
        self.outputs_probabilities = kind in ("softmax", "sigmoid")
        if not self.keys and kind is None:
            return
        outputs = {}
        linearise = kind is not None and not isinstance(last, keras.layers.Softmax)
        if kind is None:
            outputs["logits"] = output
        elif linearise:
            outputs["<last_input>"] = last.input
        else:
            outputs["logits"] = last.input
        for key, layer in zip(self.keys, self._feature_layers):
            outputs[key] = last.input if layer is None else layer.output
        self._predictor = _ExtractorModel(keras.Model(inputs, outputs), last, linearise)

    def predict(self, x, batch_size=None):
        """`ModelOutputs` of the model on inputs `x` (anything predict takes)."""
        batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        if self._predictor is None:
            outputs = {"logits": distributed.predict(self.model, x, batch_size=batch_size)}
        else:
            outputs = distributed.predict(self._predictor, x, batch_size=batch_size)
        logits = _class_scores(outputs.pop("logits"), self.owner, self.model)
        exact_logits = True
        if self._predictor is None:
            # A model that applies (log-)softmax inside its own code: only
            # log-probabilities can be had.
            softmax_inside = outputs_are_probabilities(logits)
            if softmax_inside != self._softmax_inside:
                self._softmax_inside = softmax_inside
                self._logits_model = None
            self.outputs_probabilities = softmax_inside
            exact_logits = not softmax_inside and not _are_log_probabilities(logits)
        if self._softmax_inside:
            logits = np.log(np.clip(logits, np.finfo(np.float32).tiny, None))
        features = {key: np.asarray(outputs[key], dtype=np.float32) for key in self.keys}
        return ModelOutputs(logits, exact_logits, features, self)

    def logits_model(self):
        """A `keras.Model` mapping inputs to logits, for input gradients.

        Log-probabilities stand in for the logits of a model that applies
        its softmax inside its own code (equal up to a constant per row);
        that is detected by `predict`, which must run first.
        """
        if self._logits_model is None:
            self._logits_model = _LogitsModel(self._predictor or self.model, self._softmax_inside)
        return self._logits_model

    def input_gradient(self, loss, with_outputs=False):
        """`backend.input_gradient_function` of `logits_model()` for `loss`.

        Compiled once per loss and kept, so that every attack or scorer on
        this model shares one traced function.
        """
        key = (self.logits_model(), loss, with_outputs)
        if key not in self._compiled:
            self._compiled[key] = backend.input_gradient_function(
                self.logits_model(), loss, with_outputs
            )
        return self._compiled[key]

    def forward(self):
        """`backend.forward_function` of `logits_model()`: compiled logits."""
        key = (self.logits_model(), "forward")
        if key not in self._compiled:
            self._compiled[key] = backend.forward_function(self.logits_model())
        return self._compiled[key]

    def head(self, key, features, batch_size=None):
        """Logits computed from the features of `key` by the layers after it.

        Supported for the input of the last layer (the default feature) and
        for any layer of a model whose layers form a single chain.
        """
        layers = self._head_layers(key)

        def forward(h):
            h = keras.ops.convert_to_tensor(h)
            for layer in layers[:-1]:
                h = layer(h, training=False)
            last = layers[-1]
            if isinstance(last, keras.layers.Softmax):
                return h
            if _ends_in_probabilities(last):
                return run_without_activation(last, h)
            return last(h, training=False)

        batch_size = batch_size or 1024
        logits = [
            keras.ops.convert_to_numpy(forward(features[start : start + batch_size]))
            for start in range(0, len(features), batch_size)
        ]
        return np.concatenate(logits).astype(np.float32)

    def _head_layers(self, key):
        if key == _PENULTIMATE:
            return [output_layer(self.model)]
        layers = _layers(self.model, self.owner)
        names = [layer.name for layer in layers]
        position = names.index(key)
        head = layers[position + 1 :]
        if not head:
            raise ValueError(
                f"{self.owner}: `feature_layer` {key!r} is the model's output "
                "layer; there are no layers after it to recompute logits from "
                "its features. Use a hidden layer, or None (the input of the "
                "last layer)."
            )
        previous = layers[position]
        for layer in head:
            if _single_input(layer) is not _single_output(previous):
                raise ValueError(
                    f"{self.owner}: the layers after {key!r} do not form a "
                    "single chain, so logits cannot be recomputed from its "
                    "features. Use the default `feature_layer=None` (the input "
                    "of the last layer)."
                )
            previous = layer
        return head


def _single_input(layer):
    try:
        return layer.input
    except (AttributeError, ValueError):
        return None


def _single_output(layer):
    try:
        return layer.output
    except (AttributeError, ValueError):
        return object()


def _class_scores(outputs, owner, model):
    if not isinstance(outputs, np.ndarray):
        raise ValueError(
            f"{owner}: the model must have one output of class scores; model "
            f"{model.name!r} returned {type(outputs).__name__}."
        )
    if outputs.ndim != 2 or outputs.shape[-1] < 2:
        raise ValueError(
            f"{owner}: the model must output class scores of shape (batch, "
            f"num_classes) with num_classes >= 2; model {model.name!r} outputs "
            f"shape {outputs.shape}."
        )
    outputs = outputs.astype(np.float32)
    if not np.all(np.isfinite(outputs)):
        raise ValueError(f"{owner}: model {model.name!r} returned NaN or infinite outputs.")
    return outputs


def feature_extractor(model, feature_layers=(), owner="FeatureExtractor"):
    """A cached `FeatureExtractor` (rebuilding one recompiles predict)."""
    keys = tuple(feature_key(model, layer, owner) for layer in feature_layers)
    cache_key = (id(model), tuple(sorted(set(keys))))
    extractor = _extractors.pop(cache_key, None)
    if extractor is None or extractor.model is not model:
        extractor = FeatureExtractor(model, feature_layers, owner)
    _extractors[cache_key] = extractor
    while len(_extractors) > _CACHE_SIZE:
        _extractors.popitem(last=False)
    return extractor
