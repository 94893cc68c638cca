"""keras_reliability.distributed on one device (every backend)."""

import keras
import numpy as np
import pytest

import keras_reliability as kr


@pytest.fixture
def model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_without_a_distribution_the_batch_is_not_split():
    assert keras.distribution.distribution() is None
    assert kr.distributed.batch_shards() == 1
    # Any batch size goes on one device.
    assert kr.distributed.check_batch_size(33) == 33


def test_predict_is_model_predict_on_one_device(model):
    x = np.random.default_rng(0).normal(size=(37, 3)).astype("float32")
    expected = model.predict(x, batch_size=8, verbose=0)
    np.testing.assert_array_equal(kr.distributed.predict(model, x, batch_size=8), expected)
    np.testing.assert_allclose(
        kr.distributed.predict_on_batch(model, x[:5]), expected[:5], rtol=1e-6, atol=1e-6
    )
