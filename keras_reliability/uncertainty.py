"""Monte-Carlo predictive uncertainty of a classifier with stochastic layers.

`predict_with_uncertainty` draws T predictions per example from a model with
`MCDropout` and/or Bayesian layers and splits the uncertainty of their mean
into an aleatoric part (the expected entropy of one prediction) and an
epistemic part (the mutual information between prediction and weights).
The T samples come from one forward pass per batch: the batch is stacked T
times and the Bayesian layers draw one weight sample per copy (see
`keras_reliability.layers.sample_groups`).
"""

import collections
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_reliability import distributed
from keras_reliability.arguments import check_positive_int
from keras_reliability.arrays import real_array
from keras_reliability.data import check_model_inputs
from keras_reliability.models import read_model
from keras_reliability.layers.sampling import sample_groups

# Compiled Monte-Carlo wrappers of recently used (model, num_samples) pairs,
# so that repeated calls (e.g. once per epoch) do not retrace.
_CACHE_SIZE = 8
# Largest spread of the samples' probabilities that counts as "no sampling".
_SAME_OUTPUT_TOLERANCE = 1e-6
_wrappers = collections.OrderedDict()
_OWNER = "predict_with_uncertainty"


class PredictiveUncertainty:
    """Monte-Carlo predictions of a classifier and their uncertainty.

    All entropies are in nats. With `p_t` the class probabilities of sample
    `t` and `p` their mean: `predictive_entropy = H(p)`,
    `aleatoric = mean_t H(p_t)`, `epistemic = H(p) - mean_t H(p_t)` (the
    mutual information, >= 0; exactly 0 for a row whose samples all lie
    within 1e-6 of each other, which is float32 rounding, not sampling), and
    `variation_ratio = 1 - (votes for the modal class) / T`.

    Attributes:
        samples: array (num_examples, num_samples, num_classes) of
            probabilities.
        mean: array (num_examples, num_classes), the predictive probabilities.
        predictive_entropy, aleatoric, epistemic, variation_ratio: arrays
            (num_examples,).
    """

    def __init__(self, samples):
        samples = real_array(samples, "samples", "PredictiveUncertainty").astype(np.float64)
        if samples.ndim != 3:
            raise ValueError(
                "`samples` must have shape (num_examples, num_samples, num_classes); "
                f"received shape {samples.shape}."
            )
        self.samples = samples
        self.mean = samples.mean(axis=1)
        self.predictive_entropy = _entropy(self.mean)
        self.aleatoric = _entropy(samples).mean(axis=1)
        # Exactly 0 where all samples agree (to float32 rounding: the stacked
        # copies of a row can round differently in a large matmul), and
        # clipped at 0 elsewhere: the difference of two rounded entropies can
        # be off by 1e-16 either way.
        agree = np.all(
            np.abs(samples - samples[:, :1]) <= _SAME_OUTPUT_TOLERANCE, axis=(1, 2)
        )
        self.epistemic = np.where(
            agree, 0.0, np.maximum(self.predictive_entropy - self.aleatoric, 0.0)
        )
        votes = samples.argmax(axis=-1)
        counts = np.stack(
            [np.bincount(row, minlength=samples.shape[-1]) for row in votes]
        ) if len(votes) else np.zeros((0, samples.shape[-1]), dtype=np.int64)
        self.variation_ratio = 1.0 - counts.max(axis=-1, initial=0) / samples.shape[1]

    @property
    def num_samples(self):
        return self.samples.shape[1]

    @property
    def predicted_class(self):
        """Class of highest mean probability, per example."""
        return self.mean.argmax(axis=-1)

    @property
    def confidence(self):
        """Highest mean probability, per example."""
        return self.mean.max(axis=-1)

    def interval(self, level=0.95):
        """Central percentile interval of each class probability over the samples.

        Args:
            level: the probability mass inside the interval, in (0, 1).

        Returns:
            `(lower, upper)`, two arrays (num_examples, num_classes).
        """
        if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < level < 1.0:
            raise ValueError(f"`level` must be a number in (0, 1); received {level!r}.")
        tail = (1.0 - float(level)) / 2.0
        lower, upper = np.quantile(self.samples, [tail, 1.0 - tail], axis=1)
        return lower, upper

    def __len__(self):
        return len(self.samples)

    def __repr__(self):
        return (
            f"PredictiveUncertainty(num_examples={len(self)}, num_samples={self.num_samples}, "
            f"num_classes={self.samples.shape[-1]})"
        )


def predict_with_uncertainty(
    model, x, num_samples=32, batch_size=None, from_logits=None, verbose=0, output=None
):
    """Monte-Carlo predictions of a classifier with their uncertainty.

    Runs `model` with `training=False` (so batch normalisation uses its moving
    statistics) and relies on layers that sample at inference: `MCDropout`
    and the Bayesian layers of `keras_reliability.layers`. Each batch is
    stacked `num_samples` times and passed through the model once, in Keras'
    compiled predict loop; the Bayesian layers draw one weight sample per
    copy, dropout draws a mask per example. A model without such layers gives
    identical samples; that is warned about, since its epistemic uncertainty
    is then zero.

    Args:
        model: a classifier that outputs probabilities (softmax, or sigmoid
            for one column) or logits.
        x: inputs, anything `model.predict` accepts.
        num_samples: positive int, the number T of Monte-Carlo samples.
        batch_size: examples per forward pass (each pass runs
            `batch_size * num_samples` rows); default 32.
        from_logits: whether the model outputs logits; None reads it from the
            model's graph (its final activation, `keras.ops.softmax`, ...)
            or, failing that, its outputs. A value that contradicts the
            model is refused.
        verbose: Keras progress bar of the forward passes (0, 1 or 2).
        output: the classification output of a multi-output model (name or
            index).

    Returns:
        A `PredictiveUncertainty` with `mean`, `samples`,
        `predictive_entropy`, `aleatoric`, `epistemic`, `variation_ratio` and
        `interval(level)`.

    Raises:
        ValueError: if `num_samples` or `batch_size` is not a positive int,
            the model has several outputs and no `output` is chosen, its
            output is not class scores (a regression model), or its outputs
            are not finite.

    Example:

    >>> result = predict_with_uncertainty(model, x_test, num_samples=32)
    >>> result.epistemic.shape
    (10000,)
    >>> lower, upper = result.interval(0.95)

    References:
        Gal and Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
        Depeweg et al., "Decomposition of Uncertainty in Bayesian Deep
        Learning for Efficient and Risk-sensitive Learning", ICML 2018.
    """
    num_samples = check_positive_int(num_samples, "num_samples")
    batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
    reading = read_model(model, output=output, from_logits=from_logits, owner=_OWNER)
    check_model_inputs(model, x, "x", _OWNER)
    reading.require_class_scores()
    outputs = distributed.predict(
        _monte_carlo_model(model, num_samples, reading.output_index),
        x,
        batch_size=batch_size,
        verbose=verbose,
    )
    if outputs.ndim == 2 and reading.num_columns in (None, 1):
        outputs = outputs[..., None]  # a (batch,) sigmoid or logit output
    if outputs.ndim != 3:
        raise ValueError(
            f"{_OWNER}: `model` must output (batch, num_classes) scores; its samples have "
            f"shape {outputs.shape[:1] + outputs.shape[2:]}."
        )
    if not np.all(np.isfinite(outputs)):
        raise ValueError(f"{_OWNER}: `model` returned NaN or infinite outputs.")
    reading.resolve(outputs.reshape(-1, outputs.shape[-1]))
    probabilities = reading.probabilities(outputs)
    # A tolerance, not equality: the stacked copies of a row can round
    # differently in a large matmul (seen on torch).
    spread = np.abs(probabilities - probabilities[:, :1]).max(initial=0.0)
    if num_samples > 1 and spread <= _SAME_OUTPUT_TOLERANCE:
        warnings.warn(
            f"predict_with_uncertainty: `model` ({model.name}) gave the same output in "
            f"all {num_samples} samples: it has no layer that samples at inference "
            "(MCDropout, or the Bayesian layers of keras_reliability.layers), so its "
            "epistemic uncertainty is zero. `bayesianize(model, method='mc_dropout')` "
            "turns its Dropout layers into MCDropout.",
            UserWarning,
            stacklevel=2,
        )
    return PredictiveUncertainty(probabilities)


class _MonteCarloModel(keras.Model):
    """Wraps a model: one call returns `num_samples` predictions per example."""

    def __init__(self, model, num_samples, output_index):
        super().__init__(name=f"{model.name}_monte_carlo", dtype="float32")
        self.model = model
        self.num_samples = num_samples
        self.output_index = output_index

    def call(self, inputs):
        stacked = keras.tree.map_structure(
            lambda leaf: ops.concatenate([leaf] * self.num_samples, axis=0), inputs
        )
        with sample_groups(self.num_samples):
            outputs = self.model(stacked, training=False)
        if keras.tree.is_nested(outputs):
            outputs = keras.tree.flatten(outputs)[self.output_index]
        # Float32 whatever the policy: probabilities in bfloat16 are coarse.
        outputs = ops.cast(outputs, "float32")
        outputs = ops.reshape(outputs, (self.num_samples, -1) + tuple(outputs.shape[1:]))
        return ops.moveaxis(outputs, 0, 1)


def _monte_carlo_model(model, num_samples, output_index):
    key = (id(model), num_samples, output_index)
    wrapper = _wrappers.pop(key, None)
    if wrapper is None or wrapper.model is not model:
        wrapper = _MonteCarloModel(model, num_samples, output_index)
    _wrappers[key] = wrapper
    while len(_wrappers) > _CACHE_SIZE:
        _wrappers.popitem(last=False)
    return wrapper


def _entropy(probabilities):
    # 0 * log 0 = 0.
    logs = np.log(np.where(probabilities > 0, probabilities, 1.0))
    return -(probabilities * logs).sum(axis=-1)
