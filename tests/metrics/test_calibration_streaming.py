"""Tests for the streaming calibration metrics (`keras.metrics.Metric`s).

ExpectedCalibrationError, MaxCalibrationError and
RootMeanSquareCalibrationError accumulate per-bin statistics; they must agree
with the functional metrics on the same data, work inside
`model.compile(metrics=[...])`, and survive `model.save` / `load_model`.
"""

import keras
import numpy as np
import pytest

from keras_reliability.metrics import ExpectedCalibrationError
from keras_reliability.metrics import MaxCalibrationError
from keras_reliability.metrics import RootMeanSquareCalibrationError
from keras_reliability.metrics import expected_calibration_error
from keras_reliability.metrics import max_calibration_error
from keras_reliability.metrics import root_mean_square_calibration_error
from keras_reliability.metrics.calibration_metrics import InvalidRowsWarning

STREAMING_AND_FUNCTIONAL = [
    (ExpectedCalibrationError, expected_calibration_error, "ece"),
    (MaxCalibrationError, max_calibration_error, "mce"),
    (RootMeanSquareCalibrationError, root_mean_square_calibration_error, "rmsce"),
]
CLASSES = [cls for cls, _, _ in STREAMING_AND_FUNCTIONAL]


def _softmax64(logits):
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _problem(seed, num_examples=500, num_classes=4):
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.normal(size=(num_examples, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, size=num_examples)
    return rng, logits, labels


def _feed(metric, y_true, y_pred, sizes, sample_weight=None):
    """Feeds `metric` in consecutive batches of the given sizes."""
    assert sum(sizes) == len(y_true)
    start = 0
    for size in sizes:
        stop = start + size
        weight = None if sample_weight is None else sample_weight[start:stop]
        metric.update_state(y_true[start:stop], y_pred[start:stop], sample_weight=weight)
        start = stop
    return float(metric.result())


def _state(metric):
    return {
        "bin_count": keras.ops.convert_to_numpy(metric.bin_count),
        "confidence_sum": keras.ops.convert_to_numpy(metric.confidence_sum),
        "correct_sum": keras.ops.convert_to_numpy(metric.correct_sum),
    }


# 500 rows in uneven batches; few distinct batch shapes, because eager JAX
# compiles every op once per shape.
BATCHES = [200, 200, 100]


@pytest.mark.parametrize(
    "cls, function, name", STREAMING_AND_FUNCTIONAL, ids=["ece", "mce", "rmsce"]
)
def test_streaming_batches_equal_functional(cls, function, name):
    rng, logits, labels = _problem(0)
    probabilities = _softmax64(logits).astype(np.float32)
    weights = rng.uniform(0.0, 3.0, size=len(labels)).astype(np.float32)
    cases = [
        (15, True, logits, None),
        (15, True, logits, weights),
        (15, False, probabilities, None),
        (15, False, probabilities, weights),
        (7, True, logits, None),
    ]
    for num_bins, from_logits, y_pred, sample_weight in cases:
        metric = cls(num_bins=num_bins, from_logits=from_logits)
        assert metric.name == name
        streamed = _feed(metric, labels, y_pred, BATCHES, sample_weight)
        expected = function(
            labels, y_pred, num_bins=num_bins,
            from_logits=from_logits, sample_weight=sample_weight,
        )
        assert streamed == pytest.approx(expected, abs=1e-6)
        assert expected > 0.01


def test_streaming_hand_computed_case():
    # Same six examples as the functional hand case: 5 bins (lo, hi], the
    # confidences .4 and .8 sit on edges and go to the lower bin, 1.0 to the
    # last. Per bin (count, |acc - conf|): (1, .6), (2, .025), (1, .2), (2, .45).
    probabilities = np.array(
        [
            [0.40, 0.30, 0.30],
            [0.35, 0.50, 0.15],
            [0.10, 0.10, 0.80],
            [1.00, 0.00, 0.00],
            [0.05, 0.90, 0.05],
            [0.30, 0.45, 0.25],
        ],
        dtype=np.float32,
    )
    labels = np.array([0, 2, 2, 0, 0, 1])
    gaps = [(1, 0.6), (2, 0.025), (1, 0.2), (2, 0.45)]
    expected = {
        ExpectedCalibrationError: sum(n * g for n, g in gaps) / 6,
        MaxCalibrationError: 0.6,
        RootMeanSquareCalibrationError: (sum(n * g * g for n, g in gaps) / 6) ** 0.5,
    }
    for cls, value in expected.items():
        metric = cls(num_bins=5)
        assert _feed(metric, labels, probabilities, [3, 3]) == pytest.approx(
            value, abs=1e-6
        )
    metric = ExpectedCalibrationError(num_bins=5)
    _feed(metric, labels, probabilities, [3, 3])
    np.testing.assert_array_equal(_state(metric)["bin_count"], [0, 1, 2, 1, 2])


def test_streaming_label_and_output_formats():
    rng, logits, labels = _problem(1)
    expected = expected_calibration_error(labels, logits, from_logits=True)
    one_hot = np.eye(4, dtype=np.float32)[labels]
    for y_true in (labels, labels[:, None], one_hot, labels.astype(np.float32)):
        metric = ExpectedCalibrationError(from_logits=True)
        assert _feed(metric, y_true, logits, BATCHES) == pytest.approx(
            expected, abs=1e-6
        )
    # Binary classifier with one sigmoid column (probabilities and logits).
    z = (3.0 * rng.normal(size=500)).astype(np.float32)
    p = (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(np.float32)
    binary = rng.integers(0, 2, size=500)
    two_columns = np.stack([1.0 - p, p], axis=1)
    reference = expected_calibration_error(binary, two_columns)
    for y_pred, from_logits in ((p[:, None], False), (p, False), (z[:, None], True)):
        metric = ExpectedCalibrationError(from_logits=from_logits)
        streamed = _feed(metric, binary, y_pred, BATCHES)
        assert streamed == pytest.approx(reference, abs=1e-5)
        assert streamed == pytest.approx(
            expected_calibration_error(binary, y_pred, from_logits=from_logits),
            abs=1e-6,
        )


def test_streaming_reset_state_zeroes():
    _, logits, labels = _problem(2)
    metric = ExpectedCalibrationError(from_logits=True)
    first = _feed(metric, labels, logits, BATCHES)
    assert np.sum(_state(metric)["bin_count"]) == 500
    metric.reset_state()
    for variable in metric.variables:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), 0.0)
    with pytest.warns(InvalidRowsWarning, match="no example with positive weight"):
        assert np.isnan(float(metric.result()))  # no data: NaN, not 0
    # Reusable: the same data gives the same number again.
    assert _feed(metric, labels, logits, [500]) == pytest.approx(first, abs=1e-7)


def _nan_case(metric_kwargs, bad_batch, reason):
    """Feeds a good batch, a batch with one bad row, then checks the state.

    Returns the result after the bad batch; asserts that the bin statistics
    equal those of a fresh metric fed only the valid rows, that the row is
    counted under `reason` and that `result()` warned.
    """
    _, logits, labels = _problem(3, num_examples=60)
    good, bad = slice(0, 30), slice(30, 60)
    y_bad, p_bad, bad_row = bad_batch(labels[bad].copy(), logits[bad].copy())
    metric = ExpectedCalibrationError(**metric_kwargs)
    metric.update_state(labels[good], logits[good])
    metric.update_state(y_bad, p_bad)
    with pytest.warns(InvalidRowsWarning, match="1 invalid row"):
        result = float(metric.result())
    assert metric.invalid_reasons() == {reason: 1}

    keep = np.ones(30, dtype=bool)
    keep[bad_row] = False
    reference = ExpectedCalibrationError(**metric_kwargs)
    reference.update_state(labels[good], logits[good])
    reference.update_state(y_bad[keep], p_bad[keep])
    for key, value in _state(reference).items():
        np.testing.assert_allclose(_state(metric)[key], value, atol=1e-5, err_msg=key)
    assert float(keras.ops.convert_to_numpy(metric.invalid_count)) == 1.0

    # After reset_state the metric is valid again.
    metric.reset_state()
    metric.update_state(labels[good], logits[good])
    expected = expected_calibration_error(
        labels[good], logits[good],
        from_logits=metric_kwargs.get("from_logits", False),
    )
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    return result


def test_streaming_non_finite_prediction_gives_nan():
    for bad_value in (np.nan, np.inf, -np.inf):

        def bad_batch(y, p):
            p[4, 2] = bad_value
            return y, p, 4

        assert np.isnan(
            _nan_case({"from_logits": True}, bad_batch, "non_finite_predictions")
        ), bad_value


def test_streaming_out_of_range_label_gives_nan():
    for bad_label in (4, -1):

        def bad_batch(y, p):
            y[7] = bad_label
            return y, p, 7

        assert np.isnan(
            _nan_case({"from_logits": True}, bad_batch, "invalid_labels")
        ), bad_label


def test_streaming_probabilities_not_summing_to_one_give_nan():
    metric = ExpectedCalibrationError(num_bins=5)
    metric.update_state([0, 1], [[0.7, 0.3], [0.2, 0.8]])
    assert float(metric.result()) == pytest.approx(0.25, abs=1e-6)
    metric.update_state([0], [[0.9, 0.9]])  # sums to 1.8
    with pytest.warns(InvalidRowsWarning, match="not probabilities"):
        assert np.isnan(float(metric.result()))
    np.testing.assert_array_equal(_state(metric)["bin_count"], [0, 0, 0, 2, 0])
    metric.reset_state()
    metric.update_state([1], [[-0.5, 1.5]])  # sums to 1, but negative
    with pytest.warns(InvalidRowsWarning, match="not probabilities"):
        assert np.isnan(float(metric.result()))
    assert metric.invalid_reasons() == {"not_probabilities": 1}


def test_streaming_invalid_float_label_gives_nan():
    # Labels arrive as floats inside compiled steps: 1.5 must not be
    # truncated to 1, and NaN must not be cast to a valid class (on JAX a NaN
    # cast to int32 is 0).
    for bad_label in (1.5, np.nan, np.inf):

        def bad_batch(y, p):
            y = y.astype(np.float32)
            y[5] = bad_label
            return y, p, 5

        assert np.isnan(
            _nan_case({"from_logits": True}, bad_batch, "invalid_labels")
        ), bad_label


def test_streaming_get_config_round_trip():
    _, logits, labels = _problem(4)
    for cls in CLASSES:
        metric = cls(num_bins=9, from_logits=True, name="my_metric")
        config = metric.get_config()
        assert config["num_bins"] == 9
        assert config["from_logits"] is True
        assert config["name"] == "my_metric"
        clone = cls.from_config(config)
        assert type(clone) is cls
        assert clone.get_config() == config
        assert clone.num_bins == 9 and clone.from_logits is True
        # Through Keras' own (de)serialization, by registered name.
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(metric)
        )
        assert type(restored) is cls
        assert restored.get_config() == config
        assert _feed(clone, labels, logits, [500]) == pytest.approx(
            _feed(metric, labels, logits, [500]), abs=1e-7
        )
        default = cls()
        assert default.num_bins == 15 and default.from_logits is False


def test_streaming_constructor_errors():
    for cls in CLASSES:
        with pytest.raises(ValueError, match=r"num_bins.*received 0"):
            cls(num_bins=0)
        with pytest.raises(ValueError, match=r"num_bins.*received 2\.5"):
            cls(num_bins=2.5)
        with pytest.raises(ValueError, match=r"from_logits.*bool.*'yes'"):
            cls(from_logits="yes")


def _tiny_model(metrics):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=metrics,
    )
    return model


def _data(num_examples=257):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(num_examples, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=num_examples)
    return x, y


def _flat_metrics(model):
    found = []
    for metric in model.metrics:
        found.extend(getattr(metric, "metrics", None) or [metric])
    return found


def test_streaming_in_model_evaluate():
    x, y = _data()
    model = _tiny_model(
        [
            ExpectedCalibrationError(from_logits=True),
            MaxCalibrationError(from_logits=True, num_bins=10),
            RootMeanSquareCalibrationError(from_logits=True),
        ]
    )
    # 257 rows in batches of 32: the last batch is partial.
    results = model.evaluate(x, y, batch_size=32, return_dict=True, verbose=0)
    logits = model.predict(x, batch_size=64, verbose=0)
    assert results["ece"] == pytest.approx(
        expected_calibration_error(y, logits, from_logits=True), abs=1e-5
    )
    assert results["mce"] == pytest.approx(
        max_calibration_error(y, logits, num_bins=10, from_logits=True), abs=1e-5
    )
    assert results["rmsce"] == pytest.approx(
        root_mean_square_calibration_error(y, logits, from_logits=True), abs=1e-5
    )
    assert results["ece"] > 0.05
    # A second evaluate resets the state rather than accumulating.
    again = model.evaluate(x[:64], y[:64], batch_size=32, return_dict=True, verbose=0)
    assert again["ece"] == pytest.approx(
        expected_calibration_error(y[:64], logits[:64], from_logits=True), abs=1e-5
    )


def test_streaming_model_save_and_load(tmp_path):
    x, y = _data()
    model = _tiny_model([ExpectedCalibrationError(num_bins=10, from_logits=True)])
    before = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    after = loaded.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    assert after["ece"] == pytest.approx(before["ece"], abs=1e-6)
    metrics = [m for m in _flat_metrics(loaded) if isinstance(m, ExpectedCalibrationError)]
    assert len(metrics) == 1
    config = metrics[0].get_config()
    assert config["num_bins"] == 10
    assert config["from_logits"] is True
    assert config["name"] == "ece"
