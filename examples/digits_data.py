"""scikit-learn's handwritten digits (they ship with scikit-learn), for the examples."""

import numpy as np
from sklearn.datasets import load_digits


def shuffled_digits(seed):
    """The 1,797 digits as flat 64-vectors in [0, 1] (float32) and int32 labels, shuffled."""
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order]
