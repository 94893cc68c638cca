"""Fuzz of the streaming calibration metrics (`model.compile(metrics=[...])`).

Valid batches: the streamed result must equal the float64 reference over
all rows (the state is float32: atol 1e-5 on a handful of rows). Invalid
rows cannot raise inside a compiled step; the documented behaviour is a NaN
result and an `InvalidRowsWarning` naming the reason, never a silently
wrong number. Constructor arguments raise a clear error.
"""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_reliability import metrics
from keras_reliability.metrics import calibration_metrics

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


STREAMING = {
    "ExpectedCalibrationError": (metrics.ExpectedCalibrationError, "l1"),
    "MaxCalibrationError": (metrics.MaxCalibrationError, "max"),
    "RootMeanSquareCalibrationError": (metrics.RootMeanSquareCalibrationError, "l2"),
}
NUM_CLASSES, BATCH, NUM_BINS = 3, 4, (1, 15)


def reference(probabilities, labels, weights, num_bins, norm):
    confidence = probabilities.max(axis=1).astype(np.float64)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0, 1, num_bins + 1).astype(np.float32).astype(np.float64)
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, weights, minlength=num_bins)
    gap_mass = np.abs(
        np.bincount(index, weights * confidence, minlength=num_bins)
        - np.bincount(index, weights * correct, minlength=num_bins)
    )
    total = count.sum()
    if total <= 0:
        return np.nan
    filled = count > 0
    gap = np.where(filled, gap_mass / np.where(filled, count, 1), 0.0)
    if norm == "l1":
        return gap_mass.sum() / total
    if norm == "l2":
        return np.sqrt(np.sum(count * gap**2) / total)
    return gap[filled].max()


@st.composite
def batches(draw):
    num_batches = draw(st.integers(1, 3))
    raw = draw(
        hnp.arrays(
            np.float64,
            (num_batches * BATCH, NUM_CLASSES),
            elements=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)),
        )
    )
    raw[raw.sum(axis=1) == 0] = 1.0
    probabilities = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    labels = draw(
        hnp.arrays(
            np.int64, num_batches * BATCH, elements=st.integers(0, NUM_CLASSES - 1)
        )
    )
    weights = None
    if draw(st.booleans()):
        weights = draw(
            hnp.arrays(
                np.float32,
                num_batches * BATCH,
                elements=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
            )
        )
    return probabilities, labels, weights


@pytest.mark.parametrize("name", sorted(STREAMING))
@budget(4)
@given(data=batches(), num_bins=st.sampled_from(NUM_BINS))
def test_streamed_result_equals_reference(fuzz, name, data, num_bins):
    probabilities, labels, weights = data
    make, norm = STREAMING[name]
    metric = make(num_bins=num_bins)
    for start in range(0, len(labels), BATCH):
        rows = slice(start, start + BATCH)
        metric.update_state(
            labels[rows],
            probabilities[rows],
            None if weights is None else weights[rows],
        )
    w = np.ones(len(labels)) if weights is None else weights.astype(np.float64)
    expected = reference(probabilities, labels, w, num_bins, norm)
    assume(np.isfinite(expected))  # all weights zero: NaN and a warning, tested below
    with warnings.catch_warnings():
        warnings.simplefilter("error", calibration_metrics.InvalidRowsWarning)
        actual = float(metric.result())
    fuzz.reference(name, actual, expected, atol=1e-5)


INVALID_BATCHES = {
    "NaN prediction": lambda p, y, w: (
        np.where(np.eye(BATCH, NUM_CLASSES) > 0, np.nan, p),
        y,
        w,
    ),
    "unnormalised": lambda p, y, w: (p * 2, y, w),
    "negative probability": lambda p, y, w: (p - 0.5, y, w),
    "label out of range": lambda p, y, w: (
        p,
        np.where(np.arange(BATCH) == 0, NUM_CLASSES, y),
        w,
    ),
    "negative label": lambda p, y, w: (p, np.where(np.arange(BATCH) == 0, -1, y), w),
    "non-integer label": lambda p, y, w: (
        p,
        np.where(np.arange(BATCH) == 0, 0.5, y),
        w,
    ),
    "soft labels": lambda p, y, w: (
        p,
        np.full((BATCH, NUM_CLASSES), 1 / NUM_CLASSES),
        w,
    ),
    "negative weight": lambda p, y, w: (
        p,
        y,
        np.where(np.arange(BATCH) == 0, -1.0, 1.0),
    ),
    "NaN weight": lambda p, y, w: (p, y, np.where(np.arange(BATCH) == 0, np.nan, 1.0)),
    "all weights zero": lambda p, y, w: (p, y, np.zeros(BATCH)),
}


@pytest.mark.parametrize("name", sorted(STREAMING))
@pytest.mark.parametrize("kind", sorted(INVALID_BATCHES))
def test_invalid_rows_give_nan_and_a_warning(fuzz, name, kind):
    probabilities = np.full((BATCH, NUM_CLASSES), 1 / NUM_CLASSES, np.float32)
    labels = np.arange(BATCH) % NUM_CLASSES
    metric = STREAMING[name][0]()
    bad_probabilities, bad_labels, weights = INVALID_BATCHES[kind](
        probabilities, labels, None
    )
    metric.update_state(bad_labels, bad_probabilities, weights)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = float(metric.result())
    warned = [w for w in caught if issubclass(w.category, UserWarning)]
    fuzz.invariant(
        name,
        np.isnan(result) and bool(warned),
        f"{kind}: result {result} (warnings: {[str(w.message) for w in warned]}); "
        "invalid rows must give NaN and a warning",
    )


def test_constructor_arguments_raise_clear_error(fuzz):
    for name, (make, _) in STREAMING.items():
        fuzz.check_every(
            name,
            "num_bins",
            {
                "0": 0,
                "negative": -1,
                "float": 2.5,
                "str": "15",
                "None": None,
                "bool": True,
            },
            lambda bad, make=make: make(num_bins=bad),
        )
        fuzz.check_every(
            name,
            "from_logits",
            {"str": "yes", "None": None, "int": 1},
            lambda bad, make=make: make(from_logits=bad),
        )


@pytest.mark.parametrize(
    "argument, bad",
    [
        ("y_pred", None),
        ("y_pred", np.full((BATCH, NUM_CLASSES), "a")),
        ("y_pred", np.ones((1, BATCH, NUM_CLASSES), np.float32)),
        ("y_true", None),
        ("y_true", np.full((BATCH, NUM_CLASSES), 1 / NUM_CLASSES)),
    ],
)
def test_update_state_unreadable_arrays(fuzz, argument, bad):
    arguments = {
        "y_true": np.arange(BATCH) % NUM_CLASSES,
        "y_pred": np.full((BATCH, NUM_CLASSES), 1 / NUM_CLASSES, np.float32),
    }
    if argument == "y_true" and bad is not None:  # the swapped call
        arguments["y_pred"] = (np.arange(BATCH) % 2).astype(np.float32)
    metric = metrics.ExpectedCalibrationError()
    fuzz.clear_error(
        "ExpectedCalibrationError.update_state",
        argument,
        lambda: metric.update_state(**(arguments | {argument: bad})),
    )
