"""Loss combination of the recipes that mix clean and adversarial halves."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability.models import read_model
from keras_reliability.training import MixedFGSMTraining
from keras_reliability.training import TRADESTraining


def _kl(p, q):
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))


@pytest.mark.parametrize("outputs_probabilities", [False, True])
def test_trades_adds_beta_times_the_kl_of_clean_to_adversarial_predictions(outputs_probabilities):
    rng = np.random.default_rng(0)
    clean_logits = rng.normal(size=(6, 4))
    adversarial_logits = rng.normal(size=(6, 4))
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)  # noqa: E731
    p, q = softmax(clean_logits), softmax(adversarial_logits)
    recipe = TRADESTraining(epsilon=0.1, input_range=(0, 1), beta=3.0)
    # The callback hands the recipe the model's reading.
    head = keras.layers.Dense(4, activation="softmax" if outputs_probabilities else None)
    model = keras.Sequential([keras.Input((2,)), head])
    recipe.outputs_reading = read_model(model)
    clean = p if outputs_probabilities else clean_logits
    adversarial = q if outputs_probabilities else adversarial_logits
    loss = recipe.combine_losses(
        ops.convert_to_tensor(0.5),
        ops.convert_to_tensor(9.0),
        ops.convert_to_tensor(clean.astype("float32")),
        ops.convert_to_tensor(adversarial.astype("float32")),
    )
    assert float(ops.convert_to_numpy(loss)) == pytest.approx(0.5 + 3.0 * _kl(p, q), rel=1e-5)


def test_mix_weights_the_clean_and_adversarial_losses():
    recipe = MixedFGSMTraining(epsilon=0.1, input_range=(0, 1), clean_weight=0.3)
    loss = recipe.combine_losses(2.0, 10.0, None, None)
    assert loss == pytest.approx(0.3 * 2.0 + 0.7 * 10.0)
