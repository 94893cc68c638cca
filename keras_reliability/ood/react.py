"""ReAct: clip hidden activations at a training percentile, then score energy."""

import numpy as np

from keras_reliability.arguments import check_number
from keras_reliability.models import feature_key
from keras_reliability.ood.logit_scorers import energy
from keras_reliability.ood.scorer import FeatureScorer
from keras_reliability.ood.scorer import register_scorer


@register_scorer("react")
class ReAct(FeatureScorer):
    """Energy score of the logits after clipping hidden activations.

    OOD inputs tend to produce a few abnormally large activations in the
    penultimate layer. `fit` sets the clip value to the `percentile`-th
    percentile of the training features; at scoring time features are
    clipped from above, the layers after `feature_layer` recompute the logits
    and the energy `-T logsumexp(z / T)` is the score.

    Args:
        percentile: percentile in (0, 100] of the training activations used
            as the clip value (90 in the paper).
        temperature: energy temperature.
        feature_layer: name or index of the clipped layer; None for the
            input of the last layer. Other layers need the layers after them
            to form a single chain.
        name: name used in log keys.

    References:
        Sun, Guo and Li, "ReAct: Out-of-distribution Detection With Rectified
        Activations", NeurIPS 2021.
    """

    needs_exact_logits = True

    def __init__(self, percentile=90.0, temperature=1.0, feature_layer=None, name=None):
        super().__init__(feature_layer, name)
        percentile = check_number(percentile, "percentile", positive=True, owner="ReAct")
        if percentile > 100:
            raise ValueError(f"ReAct: `percentile` must be in (0, 100]; received {percentile!r}.")
        self.percentile = percentile
        self.temperature = check_number(temperature, "temperature", positive=True, owner="ReAct")

    def fit_features(self, features, outputs, labels):
        self.threshold = float(np.percentile(features, self.percentile))

    def score_outputs(self, outputs):
        self._check_fitted()
        # Checks the logits are usable before running the head.
        self.logits(outputs)
        key = feature_key(outputs.extractor.model, self.feature_layer, "ReAct")
        features = outputs.features[key]
        clipped = np.minimum(features, self.threshold).astype(np.float32)
        logits = outputs.extractor.head(key, clipped).astype(np.float64)
        return energy(logits, self.temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "percentile": self.percentile,
            "temperature": self.temperature,
        }
