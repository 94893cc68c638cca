"""Fuzz of the post-hoc calibrators: fit, call and calibrate.

Fit: the calibrators minimise the held-out NLL (plus their L2 penalties), a
convex problem; the reference minimises the same float64 objective with
scipy. The property is that the fitted parameters reach the reference's
objective value within 1e-6 (relative 1e-6), whichever optimiser wins; the
parameters themselves may differ where the optimum is flat (temperature at
a bound, separable data).

Call: the layer's output must equal the float64 map written out in numpy
with its fitted parameters (logits: `z / T`, `z * scale + bias`,
`z @ kernel + bias`; probabilities: the softmax of the map of `log p`), to
float32 precision (relative 1e-5).
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_reliability.calibration import (
    MatrixScaling,
    TemperatureScaling,
    VectorScaling,
)

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


NUM_EXAMPLES = (6, 12)
NUM_CLASSES = (2, 3, 4)
TINY = float(np.finfo(np.float32).tiny)


@st.composite
def fit_data(draw, min_classes=2):
    n = draw(st.sampled_from(NUM_EXAMPLES))
    k = draw(st.sampled_from([c for c in NUM_CLASSES if c >= min_classes]))
    logits = draw(hnp.arrays(np.float32, (n, k), elements=st.floats(-6, 6, width=32)))
    labels = draw(hnp.arrays(np.int64, n, elements=st.integers(0, k - 1)))
    assume(np.unique(labels).size >= 2)
    return logits, labels


def log_softmax(z):
    top = z.max(axis=1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(axis=1, keepdims=True))


def nll(z, labels):
    return -np.mean(log_softmax(z)[np.arange(len(labels)), labels])


def scipy_minimum(objective, start):
    optimize = pytest.importorskip("scipy.optimize")
    best = optimize.minimize(
        objective,
        start,
        method="L-BFGS-B",
        options={"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-10},
    )
    return best.fun


def temperature_objective(log_t, z, labels):
    return nll(z / np.exp(log_t), labels)


def assert_reaches_minimum(fuzz, entry, achieved, reference_minimum):
    """The library's objective is at most the reference's, within 1e-6."""
    fuzz.reference(
        entry, max(achieved, reference_minimum), reference_minimum, atol=1e-6, rtol=1e-6
    )


@budget(20)
@given(data=fit_data())
def test_temperature_scaling_fit_reaches_reference_minimum(fuzz, data):
    z, labels = data
    z64 = z.astype(np.float64)
    optimize = pytest.importorskip("scipy.optimize")
    reference = optimize.minimize_scalar(
        temperature_objective,
        bounds=(np.log(1e-4), np.log(1e4)),
        args=(z64, labels),
        method="bounded",
        options={"xatol": 1e-12},
    ).fun
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # optimum at a bound: warned
        scaler = TemperatureScaling().fit(z, labels)
    achieved = temperature_objective(np.log(scaler.temperature), z64, labels)
    assert_reaches_minimum(fuzz, "TemperatureScaling.fit", achieved, reference)
    out = keras.ops.convert_to_numpy(scaler(z))
    fuzz.reference(
        "TemperatureScaling.call", out, z64 / scaler.temperature, atol=1e-6, rtol=1e-5
    )


@budget(10)
@given(data=fit_data(), temperature=st.floats(0.05, 20.0))
def test_temperature_scaling_on_probabilities_equals_reference(fuzz, data, temperature):
    z, _ = data
    probabilities = np.exp(log_softmax(z.astype(np.float64))).astype(np.float32)
    scaler = TemperatureScaling(from_logits=False, temperature=temperature)
    out = keras.ops.convert_to_numpy(scaler(probabilities))
    logs = np.log(np.maximum(probabilities.astype(np.float64), TINY))
    expected = np.exp(log_softmax(logs / scaler.temperature))
    fuzz.reference("TemperatureScaling.call", out, expected, atol=1e-6, rtol=1e-4)


@budget(8)
@given(data=fit_data(), bias_l2=st.sampled_from([0.0, 0.1, 10.0]))
def test_vector_scaling_fit_reaches_reference_minimum(fuzz, data, bias_l2):
    z, labels = data
    z64, k = z.astype(np.float64), z.shape[1]

    def objective(parameters):
        scale, bias = parameters[:k], parameters[k:]
        return nll(z64 * scale + bias, labels) + bias_l2 * np.mean(bias**2)

    reference = scipy_minimum(objective, np.r_[np.ones(k), np.zeros(k)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scaler = VectorScaling(bias_l2=bias_l2).fit(z, labels)
    scale = keras.ops.convert_to_numpy(scaler.scale).astype(np.float64)
    bias = keras.ops.convert_to_numpy(scaler.bias).astype(np.float64)
    assert_reaches_minimum(
        fuzz, "VectorScaling.fit", objective(np.r_[scale, bias]), reference
    )
    out = keras.ops.convert_to_numpy(scaler(z))
    fuzz.reference("VectorScaling.call", out, z64 * scale + bias, atol=1e-5, rtol=1e-5)


@budget(6)
@given(
    data=fit_data(),
    off_diagonal_l2=st.sampled_from([0.0, 0.1, 10.0]),
    bias_l2=st.sampled_from([0.0, 1.0]),
)
def test_matrix_scaling_fit_reaches_reference_minimum(
    fuzz, data, off_diagonal_l2, bias_l2
):
    z, labels = data
    z64, k = z.astype(np.float64), z.shape[1]
    off = 1.0 - np.eye(k)

    def objective(parameters):
        kernel, bias = parameters[: k * k].reshape(k, k), parameters[k * k :]
        penalty = off_diagonal_l2 * np.sum((kernel * off) ** 2) / max(k * (k - 1), 1)
        return nll(z64 @ kernel + bias, labels) + penalty + bias_l2 * np.mean(bias**2)

    reference = scipy_minimum(objective, np.r_[np.eye(k).ravel(), np.zeros(k)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scaler = MatrixScaling(off_diagonal_l2=off_diagonal_l2, bias_l2=bias_l2).fit(
            z, labels
        )
    kernel = keras.ops.convert_to_numpy(scaler.kernel).astype(np.float64)
    bias = keras.ops.convert_to_numpy(scaler.bias).astype(np.float64)
    assert_reaches_minimum(
        fuzz, "MatrixScaling.fit", objective(np.r_[kernel.ravel(), bias]), reference
    )
    out = keras.ops.convert_to_numpy(scaler(z))
    fuzz.reference("MatrixScaling.call", out, z64 @ kernel + bias, atol=1e-5, rtol=1e-5)


# Invalid inputs ------------------------------------------------------------------

CALIBRATORS = {
    "TemperatureScaling": TemperatureScaling,
    "VectorScaling": VectorScaling,
    "MatrixScaling": MatrixScaling,
}
Z = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
Y = np.arange(12) % 3


def bad_predictions():
    first = np.zeros(Z.shape, bool)
    first[0, 0] = True
    return {
        "complex": Z.astype(np.complex64) + 1j,
        "bool": Z > 0,
        "rank 3": Z[None],
        "empty": Z[:0],
        "NaN": np.where(first, np.nan, Z),
        "inf": np.where(first, np.inf, Z),
        "probabilities as logits": np.full(Z.shape, 1 / 3, np.float32),
    }


def bad_labels():
    first = np.arange(len(Y)) == 0
    return {
        "None": None,
        "negative": np.where(first, -1, Y),
        "= num_classes": np.where(first, 3, Y),
        "non-integer": np.where(first, 0.5, Y),
        "NaN": np.where(first, np.nan, Y),
        "str": np.full(len(Y), "a"),
        "soft": np.full((len(Y), 3), 1 / 3),
        "one-hot too wide": np.eye(4)[Y],
        "too short": Y[:5],
        "one class": np.zeros(len(Y), int),
        "ragged": [[0], [0, 1]] + [[0]] * 10,
    }


def bad_weights():
    first = np.arange(len(Y)) == 0
    ones = np.ones(len(Y))
    return {
        "negative": np.where(first, -1.0, ones),
        "NaN": np.where(first, np.nan, ones),
        "too short": ones[:5],
        "all zero": np.zeros(len(Y)),
    }


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_fit_invalid_inputs_raise_clear_error(fuzz, name):
    make = CALIBRATORS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fuzz.check_every(
            f"{name}.fit",
            "y_pred",
            bad_predictions(),
            lambda bad: make().fit(bad, Y),
        )
        fuzz.check_every(
            f"{name}.fit", "y_true", bad_labels(), lambda bad: make().fit(Z, bad)
        )
        fuzz.check_every(
            f"{name}.fit",
            "sample_weight",
            bad_weights(),
            lambda bad: make().fit(Z, Y, sample_weight=bad),
        )


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_fit_unreadable_predictions_raise_clear_error(fuzz, name):
    fuzz.check_every(
        f"{name}.fit",
        "y_pred",
        {
            "None": None,
            "str": "abc",
            "str array": np.full((12, 3), "a"),
            "dict": {"z": Z},
            "ragged": [[1.0, 2.0], [1.0]],
        },
        lambda bad: CALIBRATORS[name]().fit(bad, Y),
    )


@pytest.mark.parametrize("name", ["VectorScaling", "MatrixScaling"])
def test_other_number_of_classes_raises_clear_error(fuzz, name):
    scaler = CALIBRATORS[name]().fit(Z, Y)
    four = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    fuzz.clear_error(f"{name}.call", "inputs", lambda: scaler(four))
    probabilities = CALIBRATORS[name](from_logits=False).fit(
        np.exp(log_softmax(Z.astype(np.float64))).astype(np.float32), Y
    )
    fuzz.clear_error(
        f"{name}.call",
        "inputs",
        lambda: probabilities(np.full((5, 4), 0.25, np.float32)),
    )
    fuzz.clear_error(
        f"{name}.fit", "y_pred", lambda: scaler.fit(four, np.arange(5) % 4)
    )
    # Still usable with the classes it was fitted on.
    fuzz.invariant(
        f"{name}.call",
        keras.ops.convert_to_numpy(scaler(Z)).shape == Z.shape,
        "the calibrator no longer works after the refused call",
    )


@pytest.mark.parametrize("name", sorted(CALIBRATORS))
def test_call_unreadable_inputs_raise_clear_error(fuzz, name):
    scaler = CALIBRATORS[name]().fit(Z, Y)
    fuzz.check_every(
        f"{name}.call",
        "inputs",
        {"None": None, "str array": np.full((2, 3), "a")},
        lambda bad: scaler(bad),
    )


def test_constructor_arguments_raise_clear_error(fuzz):
    numbers = {
        "negative": -1.0,
        "str": "1",
        "None": None,
        "NaN": np.nan,
        "inf": np.inf,
        "bool": True,
        "list": [1.0],
    }
    fuzz.check_every(
        "TemperatureScaling",
        "temperature",
        numbers | {"0": 0.0},
        lambda bad: TemperatureScaling(temperature=bad),
    )
    fuzz.check_every(
        "VectorScaling",
        "bias_l2",
        numbers,
        lambda bad: VectorScaling(bias_l2=bad),
    )
    fuzz.check_every(
        "MatrixScaling",
        "bias_l2",
        numbers,
        lambda bad: MatrixScaling(bias_l2=bad),
    )
    fuzz.check_every(
        "MatrixScaling",
        "off_diagonal_l2",
        numbers,
        lambda bad: MatrixScaling(off_diagonal_l2=bad),
    )
    for name, make in CALIBRATORS.items():
        fuzz.check_every(
            name,
            "from_logits",
            {"str": "yes", "None": None, "int": 1},
            lambda bad, make=make: make(from_logits=bad),
        )


# calibrate(model, x, y) ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


X4 = np.random.default_rng(2).uniform(size=(12, 4)).astype(np.float32)


def test_calibrate_equals_fit_on_the_outputs(fuzz, small_model):
    logits = small_model.predict(X4, verbose=0)
    calibrated = TemperatureScaling.calibrate(small_model, X4, Y)
    direct = TemperatureScaling().fit(logits, Y)
    fuzz.reference(
        "TemperatureScaling.calibrate",
        calibrated.layers[-1].temperature,
        direct.temperature,
        atol=0,
        rtol=1e-9,
    )


def test_calibrate_invalid_arguments_raise_clear_error(fuzz, small_model):
    not_models = {
        "None": None,
        "str": "model",
        "int": 3,
        "function": lambda x: x,
        "layer": keras.layers.Dense(3),
        "array": np.zeros((2, 3)),
    }
    fuzz.check_every(
        "TemperatureScaling.calibrate",
        "model",
        not_models,
        lambda bad: TemperatureScaling.calibrate(bad, X4, Y),
    )
    fuzz.check_every(
        "TemperatureScaling.calibrate",
        "x",
        {"None": None, "wrong width": X4[:, :3], "rank 3": X4[None], "rank 1": X4[0]},
        lambda bad: TemperatureScaling.calibrate(small_model, bad, Y),
    )
    fuzz.check_every(
        "TemperatureScaling.calibrate",
        "from_logits",
        {"str": "yes", "int": 1},
        lambda bad: TemperatureScaling.calibrate(small_model, X4, Y, from_logits=bad),
    )


def test_calibrate_invalid_labels_name_y(fuzz, small_model):
    fuzz.check_every(
        "TemperatureScaling.calibrate",
        "y",
        {
            "negative": np.where(np.arange(12) == 0, -1, Y),
            "too short": Y[:3],
            "None": None,
        },
        lambda bad: TemperatureScaling.calibrate(small_model, X4, bad),
    )
