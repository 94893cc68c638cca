"""Mutual information between prediction and weights, from Monte-Carlo samples."""

from keras_reliability.arguments import check_positive_int
from keras_reliability.ood.scorer import OODScorer
from keras_reliability.ood.scorer import register_scorer


@register_scorer("mutual_information")
class MutualInformation(OODScorer):
    """Epistemic uncertainty (mutual information) of Monte-Carlo predictions.

    Runs `keras_reliability.uncertainty.predict_with_uncertainty`, so it
    needs a model with layers that sample at inference: `MCDropout` or the
    Bayesian layers of `keras_reliability.layers` (`bayesianize` adds
    them). A deterministic model gives zero for every input, and a warning.

    Args:
        num_samples: number of Monte-Carlo samples.
        batch_size: examples per forward pass (each pass runs
            `batch_size * num_samples` rows).
        name: name used in log keys.

    References:
        Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
        Smith and Gal, "Understanding Measures of Uncertainty for
        Adversarial Example Detection", UAI 2018.
    """

    shares_forward_pass = False

    def __init__(self, num_samples=32, batch_size=None, name=None):
        super().__init__(name)
        self.num_samples = check_positive_int(num_samples, "num_samples", owner="MutualInformation")
        self.batch_size = check_positive_int(
            batch_size, "batch_size", allow_none=True, owner="MutualInformation"
        )

    def score(self, model, x, batch_size=None):
        # Imported here: uncertainty imports callbacks, which import this package.
        from keras_reliability.uncertainty import predict_with_uncertainty

        result = predict_with_uncertainty(
            model, x, num_samples=self.num_samples, batch_size=batch_size or self.batch_size
        )
        return result.epistemic

    def score_outputs(self, outputs):
        raise NotImplementedError(
            "MutualInformation runs its own Monte-Carlo passes: call `score(model, x)`."
        )

    def get_config(self):
        return {
            **super().get_config(),
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
        }
