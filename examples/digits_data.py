"""scikit-learn's handwritten digits (they ship with scikit-learn) and the MLP the examples fit."""

import keras
import numpy as np
from sklearn.datasets import load_digits


def shuffled_digits(seed):
    """The 1,797 digits as flat 64-vectors in [0, 1] (float32) and int32 labels, shuffled."""
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order]


def mlp(seed):
    """A plain MLP for flattened digits: two 128-unit ReLU layers, 10 logits."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),  # logits
        ]
    )
