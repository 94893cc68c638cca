"""GradNorm: the size of the gradient that pulls a prediction toward uniform."""

import keras
import numpy as np
from keras_reliability.arguments import check_number
from keras_reliability.ood import OODScorer
from keras_reliability.models import classification_head
from keras_reliability.ood.scorer import register_scorer
from keras_reliability.ood.scorer import softmax


@register_scorer("gradnorm")
class GradNorm(OODScorer):
    """GradNorm, negated: `-|| d KL(u || softmax(z / T)) / dW ||_1`.

    `W` is the kernel of the model's last `Dense` layer and `u` the uniform
    distribution over the classes. In-distribution inputs give confident
    predictions far from uniform, hence large gradients; the score is the
    negated norm so that, as for every scorer, higher means more OOD.

    For a `Dense` layer `z = h W + b` the gradient of the KL with respect to
    `W` is the outer product `h (softmax(z / T) - u) / T`, so its L1 norm is
    `||h||_1 * ||softmax(z / T) - u||_1 / T`: the score needs the last
    layer's inputs and the logits of one shared forward pass, no backward
    pass.

    Args:
        temperature: positive temperature `T` (1 in the paper).
        name: name used in log keys.

    Example:

    >>> scores = GradNorm().score(model, x)  # higher = more OOD

    References:
        Huang, Geng and Li, "On the Importance of Gradients for Detecting
        Distributional Shifts in the Wild", NeurIPS 2021.
    """

    uses_features = True  # the inputs `h` of the last layer

    def __init__(self, temperature=1.0, name=None):
        super().__init__(name)
        self.temperature = check_number(temperature, "temperature", positive=True, owner="GradNorm")

    def score_outputs(self, outputs):
        last = classification_head(outputs.extractor.model, "GradNorm")
        if not isinstance(last, keras.layers.Dense):
            raise ValueError(
                "GradNorm reads the kernel gradient of the model's last Dense layer; "
                f"the model ends in {type(last).__name__} {last.name!r}."
            )
        logits = self.logits(outputs)
        features = self.features(outputs)
        uniform = 1.0 / logits.shape[-1]
        away_from_uniform = np.abs(softmax(logits / self.temperature) - uniform).sum(axis=-1)
        kernel_gradient_norm = np.abs(features).sum(axis=-1) * away_from_uniform
        return -kernel_gradient_norm / self.temperature

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
