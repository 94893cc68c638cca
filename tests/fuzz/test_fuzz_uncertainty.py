"""Fuzz of `predict_with_uncertainty`, `PredictiveUncertainty` and `bayesianize`.

References: for a deterministic model every Monte-Carlo sample is the
softmax of its logits, so the mean is that softmax (float32: 1e-6) and the
epistemic part is exactly 0; for a model with MCDropout the samples are
random, and the summary statistics must be the float64 formulas of the
returned samples (entropies in nats, 1e-9). `bayesianize` must copy the
original kernels and biases into the posterior means exactly.
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_reliability.layers import MCDropout, bayesianize
from keras_reliability.uncertainty import (
    PredictiveUncertainty,
    predict_with_uncertainty,
)

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


DIM, NUM_CLASSES = 4, 3
RNG = np.random.default_rng(3)
W = RNG.normal(size=(DIM, NUM_CLASSES)).astype(np.float32)
B = RNG.normal(size=NUM_CLASSES).astype(np.float32)


def linear_model(dropout=False):
    inputs = keras.Input((DIM,))
    hidden = MCDropout(0.5)(inputs) if dropout else inputs
    dense = keras.layers.Dense(NUM_CLASSES, name="head")
    model = keras.Model(inputs, dense(hidden))
    dense.set_weights([W, B])
    return model


@pytest.fixture(scope="module")
def model():
    return linear_model()


@pytest.fixture(scope="module")
def dropout_model():
    return linear_model(dropout=True)


def entropy(p):
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=-1)


def reference_summary(samples):
    samples = samples.astype(np.float64)
    mean = samples.mean(axis=1)
    predictive = entropy(mean)
    aleatoric = entropy(samples).mean(axis=1)
    # Documented: rows whose samples lie within 1e-6 of each other have no
    # epistemic uncertainty (the stacked copies round differently).
    agree = np.all(np.abs(samples - samples[:, :1]) <= 1e-6, axis=(1, 2))
    epistemic = np.where(agree, 0.0, np.maximum(predictive - aleatoric, 0.0))
    votes = samples.argmax(axis=-1)
    modal = np.array(
        [np.bincount(row, minlength=samples.shape[-1]).max() for row in votes]
    )
    return {
        "mean": mean,
        "predictive_entropy": predictive,
        "aleatoric": aleatoric,
        "epistemic": epistemic,
        "variation_ratio": 1.0 - modal / samples.shape[1],
    }


def summary(result):
    return {
        key: getattr(result, key)
        for key in (
            "mean",
            "predictive_entropy",
            "aleatoric",
            "epistemic",
            "variation_ratio",
        )
    }


X_SHAPES = (1, 5)


def inputs():
    return st.sampled_from(X_SHAPES).flatmap(
        lambda n: hnp.arrays(np.float32, (n, DIM), elements=st.floats(-3, 3, width=32))
    )


@budget(10)
@given(x=inputs(), num_samples=st.sampled_from([1, 3]))
def test_deterministic_model_equals_softmax(fuzz, model, x, num_samples):
    z = x.astype(np.float64) @ W + B
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no sampling layer: warned
        result = predict_with_uncertainty(model, x, num_samples=num_samples)
    fuzz.reference("predict_with_uncertainty", result.mean, p, atol=1e-6)
    fuzz.reference(
        "predict_with_uncertainty", result.epistemic, np.zeros(len(x)), atol=0.0
    )


@budget(5)
@given(x=inputs(), num_samples=st.sampled_from([2, 4]))
def test_mc_dropout_summary_equals_formulas(fuzz, dropout_model, x, num_samples):
    result = predict_with_uncertainty(dropout_model, x, num_samples=num_samples)
    fuzz.reference(
        "predict_with_uncertainty",
        summary(result),
        reference_summary(result.samples),
        atol=1e-9,
    )
    fuzz.invariant(
        "predict_with_uncertainty",
        result.samples.shape == (len(x), num_samples, NUM_CLASSES),
        f"samples of shape {result.samples.shape}",
    )


@budget(20)
@given(
    samples=st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(1, 4)).flatmap(
        lambda shape: hnp.arrays(np.float64, shape, elements=st.floats(0.0, 1.0))
    ),
    level=st.floats(0.01, 0.99),
)
def test_predictive_uncertainty_equals_formulas(fuzz, samples, level):
    samples = samples + 1e-3
    samples /= samples.sum(axis=-1, keepdims=True)
    result = PredictiveUncertainty(samples)
    fuzz.reference(
        "PredictiveUncertainty", summary(result), reference_summary(samples), atol=1e-12
    )
    tail = (1 - level) / 2
    expected = dict(
        zip(("lower", "upper"), np.quantile(samples, [tail, 1 - tail], axis=1))
    )
    fuzz.reference(
        "PredictiveUncertainty.interval",
        dict(zip(("lower", "upper"), result.interval(level))),
        expected,
        atol=1e-12,
    )


def test_predictive_uncertainty_invalid_arguments_raise_clear_error(fuzz):
    fuzz.check_every(
        "PredictiveUncertainty",
        "samples",
        {"rank 2": np.ones((3, 2)), "rank 4": np.ones((1, 2, 3, 4))},
        PredictiveUncertainty,
    )
    result = PredictiveUncertainty(np.full((2, 3, 2), 0.5))
    fuzz.check_every(
        "PredictiveUncertainty.interval",
        "level",
        {
            "0": 0.0,
            "1": 1.0,
            "negative": -0.5,
            "str": "0.9",
            "None": None,
            "NaN": np.nan,
            "bool": True,
        },
        result.interval,
    )


def test_predictive_uncertainty_unreadable_samples(fuzz):
    fuzz.clear_error(
        "PredictiveUncertainty", "samples", lambda: PredictiveUncertainty("abc")
    )


X = RNG.uniform(size=(6, DIM)).astype(np.float32)


def test_invalid_arguments_raise_clear_error(fuzz, model):
    entry = "predict_with_uncertainty"
    fuzz.check_every(
        entry,
        "model",
        fuzz.not_models(),
        lambda bad: predict_with_uncertainty(bad, X, num_samples=2),
    )
    integers = {"0": 0, "negative": -1, "float": 2.5, "str": "2", "bool": True}
    fuzz.check_every(
        entry,
        "num_samples",
        integers | {"None": None},
        lambda bad: predict_with_uncertainty(model, X, num_samples=bad),
    )
    fuzz.check_every(
        entry,
        "batch_size",
        integers,
        lambda bad: predict_with_uncertainty(model, X, num_samples=2, batch_size=bad),
    )
    fuzz.check_every(
        entry,
        "from_logits",
        {"str": "yes", "int": 1},
        lambda bad: predict_with_uncertainty(model, X, num_samples=2, from_logits=bad),
    )
    fuzz.check_every(
        entry,
        "output",
        {"index out of range": 5, "unknown name": "nope"},
        lambda bad: predict_with_uncertainty(model, X, num_samples=2, output=bad),
    )


@pytest.mark.parametrize(
    "kind", ["None", "empty", "str array", "rank 1", "wrong width", "NaN"]
)
def test_unchecked_inputs_raise_clear_error(fuzz, kind):
    bad = {
        "None": None,
        "empty": X[:0],
        "str array": np.full(X.shape, "a"),
        "rank 1": X[0],
        "wrong width": X[:, :3],
        "NaN": np.where(X > 0.9, np.nan, X),
    }[kind]
    fuzz.clear_error(
        "predict_with_uncertainty",
        "x",
        lambda: predict_with_uncertainty(linear_model(), bad, num_samples=2),
    )


# bayesianize ------------------------------------------------------------------------


def dense_model():
    inputs = keras.Input((DIM,))
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    hidden = keras.layers.Dropout(0.3, name="dropout")(hidden)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="head")(hidden))


@pytest.fixture(scope="module")
def original():
    return dense_model()


@budget(4)
@given(
    method=st.sampled_from(["flipout", "reparameterization", "mc_dropout"]),
    layers=st.sampled_from([None, ["head"], ["hidden", "head"]]),
    kl_weight=st.sampled_from([0.0, 1e-3, 1.0]),
    seed=st.sampled_from([None, 0, 7]),
)
def test_bayesianize_copies_the_weights(
    fuzz, original, method, layers, kl_weight, seed
):
    if method == "mc_dropout":
        layers = None if layers is None else ["dropout"]
    new = bayesianize(
        original, layers=layers, method=method, kl_weight=kl_weight, seed=seed
    )
    for name in ("hidden", "head"):
        old_layer, new_layer = original.get_layer(name), new.get_layer(name)
        expected = {
            "kernel": old_layer.get_weights()[0],
            "bias": old_layer.get_weights()[1],
        }
        if hasattr(new_layer, "kernel_loc"):
            actual = {
                "kernel": keras.ops.convert_to_numpy(new_layer.kernel_loc),
                "bias": keras.ops.convert_to_numpy(new_layer.bias_loc),
            }
        else:
            actual = dict(zip(("kernel", "bias"), new_layer.get_weights()))
        fuzz.reference("bayesianize", actual, expected, atol=0.0)
    if method == "mc_dropout":
        fuzz.invariant(
            "bayesianize",
            isinstance(new.get_layer("dropout"), MCDropout),
            "the Dropout layer was not replaced by MCDropout",
        )


def test_bayesianize_invalid_arguments_raise_clear_error(fuzz, original):
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    fuzz.check_every(
        "bayesianize",
        "model",
        fuzz.not_models() | {"unbuilt": unbuilt},
        lambda bad: bayesianize(bad),
    )
    fuzz.check_every(
        "bayesianize",
        "layers",
        {
            "unknown name": "nope",
            "unknown in list": ["nope"],
            "wrong type": ["dropout"],
            "None in list": [None],
        },
        lambda bad: bayesianize(original, layers=bad),
    )
    fuzz.check_every(
        "bayesianize",
        "method",
        {"unknown": "nope", "None": None, "int": 3},
        lambda bad: bayesianize(original, method=bad),
    )
    numbers = {"negative": -1.0, "str": "1", "None": None, "NaN": np.nan, "bool": True}
    fuzz.check_every(
        "bayesianize",
        "kl_weight",
        numbers,
        lambda bad: bayesianize(original, kl_weight=bad),
    )
    fuzz.check_every(
        "bayesianize",
        "initial_scale",
        numbers | {"0": 0.0},
        lambda bad: bayesianize(original, initial_scale=bad),
    )
    fuzz.check_every(
        "bayesianize",
        "kernel_prior",
        {"str": "normal", "int": 3},
        lambda bad: bayesianize(original, kernel_prior=bad),
    )


def test_bayesianize_seed_and_layers_raise_clear_error(fuzz, original):
    fuzz.check_every(
        "bayesianize",
        "seed",
        {"str": "abc", "negative": -1, "float": 2.5},
        lambda bad: bayesianize(original, seed=bad),
    )
    fuzz.check_every(
        "bayesianize",
        "layers",
        {"int": 3},
        lambda bad: bayesianize(original, layers=bad),
    )
