"""Bayesian MLPs on real digits: accuracy, epistemic uncertainty, bayesianize."""

import gzip
import os
import pathlib

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from keras_reliability.layers import DenseFlipout
from keras_reliability.layers import bayesianize
from keras_reliability.uncertainty import predict_with_uncertainty

# The same location rule as tests/conftest.py (not importable under importlib mode).
DATA = pathlib.Path(
    os.environ.get(
        "KERAS_RELIABILITY_DATA", pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
    )
)


def _mnist():
    folder = DATA / "mnist_test_idx"
    if not folder.exists():
        pytest.skip(f"reference data {folder} is absent")
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as file:
        x = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as file:
        y = np.frombuffer(file.read(), np.uint8, offset=8)
    x = x.astype("float32") / 255.0
    y = y.astype("int32")
    return (x[:8000], y[:8000]), (x[8000:], y[8000:])


def _digits():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def _train(model, x, y, epochs):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def _pair(inputs, num_train, seed):
    keras.utils.set_random_seed(seed)
    deterministic = keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)]
    )
    bayesian = keras.Sequential(
        [
            keras.Input((inputs,)),
            DenseFlipout(128, activation="relu", kl_weight=1 / num_train, seed=seed),
            DenseFlipout(10, kl_weight=1 / num_train, seed=seed + 1),
        ]
    )
    return deterministic, bayesian


@pytest.fixture(scope="module", params=["digits", "mnist"])
def trained(request):
    if request.param == "digits":
        (x, y), (x_test, y_test) = _digits()
        epochs = 30
    else:
        (x, y), (x_test, y_test) = _mnist()
        epochs = 5
    deterministic, bayesian = _pair(x.shape[1], len(x), seed=3)
    _train(deterministic, x, y, epochs)
    _train(bayesian, x, y, epochs)
    return request.param, deterministic, bayesian, x_test, y_test


def test_bayesian_mlp_is_within_two_points_of_the_deterministic_one(trained):
    name, deterministic, bayesian, x_test, y_test = trained
    plain = np.mean(np.argmax(deterministic.predict(x_test, verbose=0), -1) == y_test)
    result = predict_with_uncertainty(bayesian, x_test, num_samples=32, batch_size=256)
    monte_carlo = np.mean(result.predicted_class == y_test)
    print(f"{name}: deterministic {plain:.4f}, Bayesian MC mean {monte_carlo:.4f}")
    assert plain > 0.9
    assert monte_carlo >= plain - 0.02


def test_noise_gets_more_epistemic_uncertainty_than_test_digits(trained):
    name, _, bayesian, x_test, _ = trained
    noise = np.random.default_rng(0).normal(0.5, 0.5, size=(500, x_test.shape[1]))
    noise = np.clip(noise, 0.0, 1.0).astype("float32")
    digits = predict_with_uncertainty(bayesian, x_test, num_samples=32, batch_size=256)
    noisy = predict_with_uncertainty(bayesian, noise, num_samples=32, batch_size=256)
    # Fraction of (noise, digit) pairs where the noise input has the larger
    # mutual information, and of noise inputs above the median digit.
    pairs = np.mean(noisy.epistemic[:, None] > digits.epistemic[None, :])
    above_median = np.mean(noisy.epistemic > np.median(digits.epistemic))
    print(f"{name}: pairs {pairs:.4f}, above median {above_median:.4f}")
    assert pairs >= 0.9
    assert above_median >= 0.9


def test_bayesianize_keeps_accuracy_and_round_trips(trained, tmp_path):
    _, deterministic, _, x_test, y_test = trained
    plain = np.mean(np.argmax(deterministic.predict(x_test, verbose=0), -1) == y_test)
    bayesian = bayesianize(deterministic, kl_weight=1e-4, seed=7)
    result = predict_with_uncertainty(bayesian, x_test, num_samples=8, batch_size=256)
    assert abs(np.mean(result.predicted_class == y_test) - plain) <= 0.005
    bayesian.save(tmp_path / "bayesian.keras")
    loaded = keras.models.load_model(tmp_path / "bayesian.keras")
    assert [type(layer).__name__ for layer in loaded.layers] == ["DenseFlipout", "DenseFlipout"]
    for saved, original in zip(loaded.get_weights(), bayesian.get_weights()):
        np.testing.assert_array_equal(saved, original)
    reloaded = predict_with_uncertainty(loaded, x_test, num_samples=8, batch_size=256)
    assert abs(np.mean(reloaded.predicted_class == y_test) - plain) <= 0.005
