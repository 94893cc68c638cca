"""Shared test fixtures: the real reference data and backend facts."""

import os
import pathlib

import keras
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_DIR = pathlib.Path(os.environ.get("KERAS_RELIABILITY_DATA", _DEFAULT_DATA))

BACKEND = keras.backend.backend()


def data_path(*parts):
    """Path into the shared reference data; skips the test when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"reference data {path} is absent (set KERAS_RELIABILITY_DATA to "
            "the shared/data folder to run this test)"
        )
    return path


@pytest.fixture
def densenet40_logits():
    """Kull et al.'s DenseNet-40 CIFAR-10 logits: (val, y_val, test, y_test)."""
    import pickle

    path = data_path("markus93_densenet40_c10_logits", "probs_densenet40_c10_logits.p")
    with open(path, "rb") as file:
        (val, y_val), (test, y_test) = pickle.load(file, encoding="latin1")
    return val, y_val.ravel(), test, y_test.ravel()
