"""Tests for `keras_reliability.layers.MCDropout`."""

import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability.layers import MCDropout


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _model(layer, features=200):
    return keras.Sequential([keras.Input((features,)), layer])


def _check_dropout_output(out, x, rate):
    """Units are either 0 or x / (1 - rate); the dropped fraction is about `rate`."""
    dropped = out == 0
    np.testing.assert_allclose(out[~dropped], x[~dropped] / (1.0 - rate), rtol=1e-6)
    standard_error = math.sqrt(rate * (1.0 - rate) / out.size)
    assert abs(dropped.mean() - rate) < 5 * standard_error


@pytest.mark.parametrize("rate", [0.3, 0.6])
def test_drops_at_inference_by_default(rate):
    model = _model(MCDropout(rate, seed=1))
    x = np.random.default_rng(0).uniform(0.5, 2.0, size=(50, 200)).astype("float32")
    first = model.predict(x, batch_size=50, verbose=0)
    second = model.predict(x, batch_size=50, verbose=0)
    assert not np.array_equal(first, second)
    _check_dropout_output(first, x, rate)
    _check_dropout_output(second, x, rate)
    # Eager calls with training=False drop too.
    eager = _np(model(x, training=False))
    _check_dropout_output(eager, x, rate)


def test_inactive_at_inference_is_plain_dropout():
    x = np.random.default_rng(1).uniform(0.5, 2.0, size=(40, 200)).astype("float32")
    layer = MCDropout(0.4, seed=3, active_at_inference=False)
    model = _model(layer)
    np.testing.assert_array_equal(model.predict(x, batch_size=40, verbose=0), x)
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)
    np.testing.assert_array_equal(_np(layer(x)), x)
    # Same as keras Dropout at inference ...
    reference = keras.layers.Dropout(0.4, seed=3)
    np.testing.assert_array_equal(_np(reference(x, training=False)), _np(layer(x, training=False)))
    # ... and it still drops in training.
    _check_dropout_output(_np(layer(x, training=True)), x, 0.4)


def test_same_seed_gives_same_mask():
    x = np.ones((8, 200), dtype="float32")
    first = _np(MCDropout(0.5, seed=42)(x))
    second = _np(MCDropout(0.5, seed=42)(x))
    other = _np(MCDropout(0.5, seed=43)(x))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_rate_zero_is_identity():
    x = np.random.default_rng(2).normal(size=(5, 200)).astype("float32")
    np.testing.assert_array_equal(_np(MCDropout(0.0)(x)), x)


def test_noise_shape_shares_the_mask():
    # noise_shape (None, 1): each example is kept or dropped as a whole.
    x = np.ones((400, 6), dtype="float32")
    out = _np(MCDropout(0.5, noise_shape=(None, 1), seed=5)(x))
    row_dropped = out[:, 0] == 0
    np.testing.assert_array_equal(out[row_dropped], 0.0)
    np.testing.assert_allclose(out[~row_dropped], 2.0, rtol=1e-6)
    assert abs(row_dropped.mean() - 0.5) < 5 * math.sqrt(0.25 / 400)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rate": 1.0}, "MCDropout: `rate` must be a number in [0, 1); received 1.0"),
        ({"rate": -0.1}, "`rate` must be a number in [0, 1); received -0.1"),
        ({"rate": "a"}, "`rate` must be a number in [0, 1); received 'a'"),
        ({"rate": float("nan")}, "`rate` must be a number in [0, 1); received nan"),
        ({"rate": True}, "`rate` must be a number in [0, 1); received True"),
        ({"rate": 0.5, "noise_shape": (None, 0)}, "`noise_shape` must be a positive integer; received 0"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MCDropout(**kwargs)


@pytest.mark.parametrize("active", [True, False])
def test_serialization_round_trip(tmp_path, active):
    layer = MCDropout(0.35, noise_shape=(None, 200), seed=9, active_at_inference=active, name="mcd")
    model = _model(layer)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.get_layer("mcd")
    assert isinstance(restored, MCDropout)
    assert restored.active_at_inference is active
    assert restored.get_config() == layer.get_config()
    assert restored.get_config()["active_at_inference"] is active
    assert restored.rate == pytest.approx(0.35)

    x = np.random.default_rng(3).uniform(0.5, 2.0, size=(30, 200)).astype("float32")
    out = loaded.predict(x, batch_size=30, verbose=0)
    if active:
        _check_dropout_output(out, x, 0.35)
        assert np.any(out == 0)
    else:
        np.testing.assert_array_equal(out, x)

    clone = MCDropout.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
