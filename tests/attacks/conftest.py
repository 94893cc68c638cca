"""The digits classifier the attack tests share."""

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

NUM_TRAIN, NUM_TEST = 600, 96
HIDDEN = 32


@pytest.fixture(scope="session")
def digits_split(shuffled_digits):
    """`(x_train, y_train, x_test, y_test)`: digits as flat 64-vectors in [0, 1]."""
    x, y = shuffled_digits
    test = slice(NUM_TRAIN, NUM_TRAIN + NUM_TEST)
    return x[:NUM_TRAIN], y[:NUM_TRAIN], x[test], y[test]


@pytest.fixture(scope="session")
def digits_mlp_weights(digits_split):
    """Weights `[W1, b1, W2, b2]` of a 64-32-10 ReLU MLP trained by scikit-learn (~1 s)."""
    x_train, y_train, _, _ = digits_split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(
            hidden_layer_sizes=(HIDDEN,), learning_rate_init=1e-2, max_iter=60, random_state=0
        ).fit(x_train, y_train)
    return [w.astype("float32") for pair in zip(mlp.coefs_, mlp.intercepts_) for w in pair]
