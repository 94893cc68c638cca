"""The OOD scorer contract: `fit(model, x, y) -> self`, `score(model, x) -> scores`.

Higher scores mean more out-of-distribution. Scorers that only need the
model's logits and hidden features implement `score_outputs` (and
`fit_outputs` if they learn from training data) on a `ModelOutputs`, so that
`OODMonitorCallback` can run one forward pass for all of them; scorers that
need their own passes (input gradients, Monte-Carlo sampling) override
`score` and set `shares_forward_pass = False`.
"""

import keras
import numpy as np

from keras_reliability.data import check_model_inputs
from keras_reliability.models import feature_extractor
from keras_reliability.models import class_labels
from keras_reliability.models import feature_key
from keras_reliability.serialization import register_serializable


class OODScorer:
    """Base class of out-of-distribution scorers (higher score = more OOD).

    Subclasses set the class attributes and implement `score_outputs`, and
    `fit_outputs` when `requires_fit` is True.

    Attributes:
        requires_fit: whether `fit` must be called before `score`.
        requires_labels: whether `fit` needs the training labels.
        shares_forward_pass: whether the scores come from `score_outputs`
            on a shared forward pass (False for ODIN and Monte-Carlo
            scorers, which run the model themselves).
        feature_layer: the hidden layer the scorer reads (name, index, or
            None for the input of the last layer); only feature-based
            scorers use it.
        uses_features: whether the scorer reads `feature_layer`.
        needs_exact_logits: whether log-probabilities cannot stand in for
            logits (scores that are not invariant to a shift of the logits).
    """

    requires_fit = False
    requires_labels = False
    shares_forward_pass = True
    uses_features = False
    needs_exact_logits = False
    feature_layer = None

    def __init__(self, name=None):
        self.name = name or _default_name(type(self))
        self._fitted = not self.requires_fit

    # Public API ------------------------------------------------------------

    def fit(self, model, x, y=None, batch_size=None):
        """Learns what the scorer needs from in-distribution training data.

        A no-op for post-hoc scorers (they return `self` unchanged).

        Args:
            model: the trained classifier.
            x: in-distribution inputs (anything `model.predict` accepts).
            y: their integer labels; needed by class-conditional scorers.
            batch_size: batch size of the forward pass.

        Returns:
            The scorer itself.
        """
        if not self.requires_fit:
            return self
        if self.requires_labels and y is None:
            raise ValueError(f"{type(self).__name__}.fit needs the labels `y` of `x`.")
        return self.fit_outputs(self.extract(model, x, batch_size), y)

    def score(self, model, x, batch_size=None):
        """OOD scores of inputs `x`: a float array, one score per example."""
        self._check_fitted()
        return self.score_outputs(self.extract(model, x, batch_size))

    # Shared-pass API -------------------------------------------------------

    def feature_layers(self):
        """The feature layers this scorer reads (for a shared extractor)."""
        return (self.feature_layer,) if self.uses_features else ()

    def extract(self, model, x, batch_size=None):
        """The `ModelOutputs` this scorer needs, from one forward pass."""
        owner = type(self).__name__
        check_model_inputs(model, x, "x", owner)
        extractor = feature_extractor(model, self.feature_layers(), owner)
        return extractor.predict(x, batch_size=batch_size)

    def fit_outputs(self, outputs, labels=None):
        """Fits the scorer on `ModelOutputs` of training data; returns self."""
        return self

    def score_outputs(self, outputs):
        """OOD scores from `ModelOutputs`; float64 array of shape `(N,)`."""
        raise NotImplementedError

    # Helpers for subclasses -------------------------------------------------

    def logits(self, outputs):
        """The logits in `outputs`, refused when only log-probabilities exist."""
        if self.needs_exact_logits and not outputs.exact_logits:
            raise ValueError(
                f"{type(self).__name__} needs the model's logits, but the model "
                "outputs probabilities and its graph does not hold the logits "
                "before them. End the model with a linear layer (or a Dense layer "
                "with a softmax activation, a Softmax layer or keras.ops.softmax)."
            )
        return outputs.logits.astype(np.float64)

    def features(self, outputs):
        """The `(N, D)` features of `feature_layer` in `outputs`, flattened."""
        key = feature_key(outputs.extractor.model, self.feature_layer, type(self).__name__)
        features = outputs.features[key]
        return features.reshape(len(features), -1).astype(np.float64)

    def _check_fitted(self):
        if not self._fitted:
            raise ValueError(
                f"{type(self).__name__} must be fitted on in-distribution data "
                "before scoring: call `scorer.fit(model, x_train, y_train)` "
                "first (OODMonitorCallback does it with `fit_data`)."
            )

    def get_config(self):
        """Constructor arguments; fitted statistics are not part of it."""
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(
            f"{key}={value!r}" for key, value in self.get_config().items() if key != "name"
        )
        return f"{type(self).__name__}({arguments})"


def register_scorer(name):
    """Registers a scorer class as `ood_scorer` `name` and as serializable."""
    return register_serializable("ood_scorer", name)


def _default_name(cls):
    return getattr(cls, "registered_name", None) or cls.__name__.lower()


def softmax(logits):
    """Row-wise softmax of a float64 numpy array."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def logsumexp(logits):
    """Row-wise log-sum-exp of a float64 numpy array."""
    top = logits.max(axis=-1)
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))


class FeatureScorer(OODScorer):
    """Base class of scorers that learn from hidden features of training data.

    Args:
        feature_layer: name or index of the layer whose output is the
            feature, or None for the input of the model's classification
            head (the penultimate representation: the input of the Dense
            layer that computes the logits, whatever activation, Softmax or
            Dropout layers follow it). Indices count the layers without
            the `InputLayer`, so an index picks the same layer in a
            Sequential model and in its functional twin.
        name: name used in log keys.
    """

    requires_fit = True
    uses_features = True

    def __init__(self, feature_layer=None, name=None):
        super().__init__(name)
        if feature_layer is not None and (
            isinstance(feature_layer, bool) or not isinstance(feature_layer, (str, int, np.integer))
        ):
            raise ValueError(
                f"{type(self).__name__}: `feature_layer` must be a layer name, an "
                f"index or None; received {feature_layer!r}."
            )
        self.feature_layer = feature_layer

    def fit_outputs(self, outputs, labels=None):
        owner = f"{type(self).__name__}.fit"
        if len(outputs) == 0:
            raise ValueError(f"{owner}: the training data is empty.")
        if labels is not None:
            labels = class_labels(labels, len(outputs), outputs.logits.shape[1], owner=owner)
        self.fit_features(self.features(outputs), outputs, labels)
        self._fitted = True
        return self

    def fit_features(self, features, outputs, labels):
        """Learns from `(N, D)` float64 training features; subclasses implement."""
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "feature_layer": self.feature_layer}
