"""Post-hoc scorers computed from a classifier's logits alone."""

import numpy as np

from keras_reliability.arguments import check_number
from keras_reliability.ood.scorer import OODScorer
from keras_reliability.ood.scorer import logsumexp
from keras_reliability.ood.scorer import register_scorer
from keras_reliability.ood.scorer import softmax


@register_scorer("msp")
class MaxSoftmax(OODScorer):
    """Maximum softmax probability, negated: `-max_k softmax(z)_k`.

    The baseline detector: a confident prediction is taken as in-distribution.

    Example:

    >>> scores = MaxSoftmax().score(model, x)

    References:
        Hendrycks and Gimpel, "A Baseline for Detecting Misclassified and
        Out-of-Distribution Examples in Neural Networks", ICLR 2017.
    """

    def score_outputs(self, outputs):
        return -softmax(self.logits(outputs)).max(axis=-1)


@register_scorer("maxlogit")
class MaxLogit(OODScorer):
    """Largest logit, negated: `-max_k z_k`.

    Needs the model's logits (not only probabilities): it is not invariant to
    a shift of the logits, which is the information it adds to MSP.

    References:
        Hendrycks et al., "Scaling Out-of-Distribution Detection for
        Real-World Settings", ICML 2022.
    """

    needs_exact_logits = True

    def score_outputs(self, outputs):
        return -self.logits(outputs).max(axis=-1)


@register_scorer("energy")
class Energy(OODScorer):
    """Free energy of the logits: `-T * logsumexp(z / T)`.

    Args:
        temperature: positive temperature `T` (1 in the paper's post-hoc use).
        name: name used in log keys.

    References:
        Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS
        2020.
    """

    needs_exact_logits = True

    def __init__(self, temperature=1.0, name=None):
        super().__init__(name)
        self.temperature = check_number(temperature, "temperature", positive=True, owner="Energy")

    def score_outputs(self, outputs):
        return energy(self.logits(outputs), self.temperature)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


@register_scorer("entropy")
class Entropy(OODScorer):
    """Entropy of the predictive distribution `softmax(z)`, in nats."""

    def score_outputs(self, outputs):
        probabilities = softmax(self.logits(outputs))
        logs = np.log(np.where(probabilities > 0, probabilities, 1.0))
        return -(probabilities * logs).sum(axis=-1)


def energy(logits, temperature=1.0):
    """Free energy `-T * logsumexp(logits / T)` per row (float64 numpy)."""
    return -temperature * logsumexp(logits / temperature)
