"""Invalid input to the streaming calibration metrics: NaN, and told why.

Inside a compiled step a streaming metric can neither raise nor warn, so
invalid rows are counted per reason and make `result()` NaN; the first eager
`result()` (the one Keras makes when `evaluate` or an epoch ends, on PyTorch
already the one of the first step, or a standalone call) emits an
`InvalidRowsWarning` naming each reason and its row count.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_reliability.metrics import ExpectedCalibrationError
from keras_reliability.metrics import MaxCalibrationError
from keras_reliability.metrics import RootMeanSquareCalibrationError
from keras_reliability.metrics import expected_calibration_error
from keras_reliability.metrics.calibration_metrics import InvalidRowsWarning

BACKEND = keras.backend.backend()
CLASSES = [ExpectedCalibrationError, MaxCalibrationError, RootMeanSquareCalibrationError]


def _problem(seed, num_examples=60, num_classes=3):
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.normal(size=(num_examples, num_classes))).astype(np.float32)
    labels = rng.integers(0, num_classes, size=num_examples)
    return rng, logits, labels


def _softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def _state(metric):
    names = ("bin_count", "confidence_sum", "correct_sum")
    return {n: keras.ops.convert_to_numpy(getattr(metric, n)) for n in names}


def _invalid_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, InvalidRowsWarning)]


def _result_and_warnings(metric):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        value = float(metric.result())
    return value, _invalid_warnings(record)


def _check_left_out(metric_kwargs, y_true, y_pred, weight, bad_rows, reasons):
    """Feeds one batch with bad rows; checks NaN, counts and the bin sums.

    The bins must equal those of a fresh metric fed only the valid rows, and
    `invalid_reasons()` must equal `reasons`. Returns the warning texts.
    """
    metric = ExpectedCalibrationError(**metric_kwargs)
    metric.update_state(y_true, y_pred, sample_weight=weight)
    value, messages = _result_and_warnings(metric)
    assert np.isnan(value)
    assert metric.invalid_reasons() == reasons
    assert float(keras.ops.convert_to_numpy(metric.invalid_count)) == len(bad_rows)

    keep = np.ones(len(y_pred), dtype=bool)
    keep[bad_rows] = False
    reference = ExpectedCalibrationError(**metric_kwargs)
    reference.update_state(
        y_true[keep], y_pred[keep], sample_weight=None if weight is None else weight[keep]
    )
    for key, value in _state(reference).items():
        np.testing.assert_allclose(_state(metric)[key], value, atol=1e-5, err_msg=key)
    assert np.sum(_state(metric)["bin_count"]) > 0
    assert len(messages) == 1, messages
    return messages[0]


# --- Each reason, standalone (eager update_state / result) -----------------


@pytest.mark.parametrize("bad_weight", [-0.5, np.nan, np.inf])
def test_negative_or_non_finite_sample_weight_is_invalid(bad_weight):
    rng, logits, labels = _problem(0)
    weight = rng.uniform(0.5, 2.0, size=len(labels)).astype(np.float32)
    weight[[3, 17]] = bad_weight
    message = _check_left_out(
        {"from_logits": True}, labels, logits, weight, [3, 17],
        {"invalid_sample_weights": 2},
    )
    assert "2 row(s) with a negative or non-finite `sample_weight`" in message
    assert "'ece' is NaN" in message


def test_soft_and_malformed_one_hot_labels_are_invalid():
    _, logits, labels = _problem(1)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    one_hot[2] = [0.8, 0.1, 0.1]  # soft label
    one_hot[5] = [1.0, 1.0, 0.0]  # two ones
    one_hot[9] = [0.0, 0.0, 0.0]  # no one
    one_hot[11] = [2.0, -1.0, 0.0]  # sums to 1, not 0/1
    one_hot[12] = [np.nan, 1.0, 0.0]
    message = _check_left_out(
        {"from_logits": True}, one_hot, logits, None, [2, 5, 9, 11, 12],
        {"not_one_hot": 5},
    )
    assert "5 row(s) of one-hot `y_true` that are not one-hot" in message
    assert "soft labels" in message
    # A clean one-hot batch is valid and equals the sparse labels.
    metric = ExpectedCalibrationError(from_logits=True)
    metric.update_state(np.eye(3, dtype=np.float32)[labels], logits)
    assert float(metric.result()) == pytest.approx(
        expected_calibration_error(labels, logits, from_logits=True), abs=1e-6
    )


def test_probabilities_with_from_logits_true_are_invalid_per_batch():
    _, logits, labels = _problem(2)
    probabilities = _softmax(logits)
    metric = ExpectedCalibrationError(from_logits=True)
    metric.update_state(labels[:30], probabilities[:30])
    value, messages = _result_and_warnings(metric)
    assert np.isnan(value)
    assert metric.invalid_reasons() == {"probabilities_as_logits": 30}
    np.testing.assert_array_equal(_state(metric)["bin_count"], 0.0)
    assert len(messages) == 1
    assert "30 row(s) whose `y_pred` looks like probabilities" in messages[0]
    assert "pass `from_logits=False`" in messages[0]

    # Only a whole batch of more than one row counts: one logits row may
    # happen to lie in [0, 1] and sum to 1.
    mixed = logits[:30].copy()
    mixed[4] = [0.2, 0.3, 0.5]
    single = probabilities[:1]
    for y_true, y_pred in ((labels[:30], mixed), (labels[:1], single)):
        metric = ExpectedCalibrationError(from_logits=True)
        metric.update_state(y_true, y_pred)
        value, messages = _result_and_warnings(metric)
        assert value == pytest.approx(
            expected_calibration_error(y_true, y_pred, from_logits=True), abs=1e-6
        )
        assert metric.invalid_reasons() == {} and messages == []
    # One sigmoid column with `from_logits=True` is never taken for
    # probabilities (as in the functional metrics): any real number is a logit.
    metric = ExpectedCalibrationError(from_logits=True)
    metric.update_state(labels[:30] % 2, probabilities[:30, :1])
    assert metric.invalid_reasons() == {}


def test_logits_with_default_from_logits_false_are_invalid():
    _, logits, labels = _problem(3)
    metric = ExpectedCalibrationError()
    metric.update_state(labels, logits)
    value, messages = _result_and_warnings(metric)
    assert np.isnan(value)
    assert metric.invalid_reasons() == {"not_probabilities": 60}
    assert len(messages) == 1
    assert "60 row(s) whose `y_pred` is not probabilities" in messages[0]
    assert "pass `from_logits=True`" in messages[0]


def test_labels_and_predictions_reasons_are_counted_separately():
    _, logits, labels = _problem(4)
    y_true = labels.astype(np.float32)
    y_pred = logits.copy()
    y_true[[1, 2]] = [3.0, 1.5]  # out of range (3 classes), not an integer
    y_pred[2, 0] = np.nan  # row 2 fails two checks
    y_pred[7, 1] = np.inf
    weight = np.ones(60, dtype=np.float32)
    weight[8] = -1.0
    message = _check_left_out(
        {"from_logits": True}, y_true, y_pred, weight, [1, 2, 7, 8],
        {"non_finite_predictions": 2, "invalid_labels": 2, "invalid_sample_weights": 1},
    )
    assert message.startswith("ExpectedCalibrationError 'ece' is NaN: 4 invalid row(s)")
    assert "2 row(s) with NaN or infinite values in `y_pred`" in message
    assert "2 row(s) whose `y_true` is not an integer class label in [0, 2]" in message
    assert "1 row(s) with a negative or non-finite `sample_weight`" in message


def test_huge_float_label_is_not_cast_into_range():
    # int32(1e10) is undefined; the label must be refused before the cast.
    _, logits, labels = _problem(5)
    y_true = labels.astype(np.float32)
    y_true[0] = 1e10
    metric = ExpectedCalibrationError(from_logits=True)
    metric.update_state(y_true, logits)
    assert metric.invalid_reasons() == {"invalid_labels": 1}


def test_warning_once_per_reason_until_reset():
    _, logits, labels = _problem(6)
    metric = MaxCalibrationError(from_logits=True)
    weight = np.ones(60, dtype=np.float32)
    weight[0] = -1.0
    metric.update_state(labels, logits, sample_weight=weight)
    _, first = _result_and_warnings(metric)
    assert len(first) == 1 and "MaxCalibrationError 'mce'" in first[0]
    # More rows of the same reason: still NaN, no second warning.
    metric.update_state(labels, logits, sample_weight=weight)
    value, again = _result_and_warnings(metric)
    assert np.isnan(value) and again == []
    assert metric.invalid_reasons() == {"invalid_sample_weights": 2}
    # A new reason warns again, with every count so far.
    bad_labels = labels.copy()
    bad_labels[0] = 7
    metric.update_state(bad_labels, logits)
    _, new = _result_and_warnings(metric)
    assert len(new) == 1
    assert "3 invalid row(s)" in new[0]
    assert "2 row(s) with a negative" in new[0] and "1 row(s) whose `y_true`" in new[0]
    # After a reset the metric is valid again, and warns again when it is not.
    metric.reset_state()
    assert metric.invalid_reasons() == {}
    metric.update_state(labels, logits)
    value, messages = _result_and_warnings(metric)
    assert np.isfinite(value) and messages == []
    metric.update_state(labels, logits, sample_weight=weight)
    _, messages = _result_and_warnings(metric)
    assert len(messages) == 1 and "1 invalid row(s)" in messages[0]


def test_no_data_nan_is_explained():
    for cls in CLASSES:
        metric = cls(from_logits=True)
        value, messages = _result_and_warnings(metric)
        assert np.isnan(value)
        assert len(messages) == 1
        assert "no example with positive weight" in messages[0]
    _, logits, labels = _problem(7)
    metric = RootMeanSquareCalibrationError(from_logits=True)
    metric.update_state(labels, logits, sample_weight=np.zeros(60, np.float32))
    value, messages = _result_and_warnings(metric)
    assert np.isnan(value) and len(messages) == 1
    assert "every `sample_weight` was 0" in messages[0]
    assert metric.invalid_reasons() == {}


def test_valid_input_never_warns():
    rng, logits, labels = _problem(8)
    weight = rng.uniform(0.0, 2.0, size=60).astype(np.float32)
    for cls in CLASSES:
        for from_logits, y_pred in ((True, logits), (False, _softmax(logits))):
            metric = cls(from_logits=from_logits)
            metric.update_state(labels, y_pred, sample_weight=weight)
            with warnings.catch_warnings():
                warnings.simplefilter("error", InvalidRowsWarning)
                assert np.isfinite(float(metric.result()))
            assert metric.invalid_reasons() == {}


# --- Inside model.evaluate / model.fit (compiled steps) --------------------


def _count_in_message(total, first_batch):
    """Rows named by the warning after `evaluate`.

    TensorFlow and JAX run the steps compiled, so the first eager `result()`
    is the one after the last batch: every row is counted. PyTorch runs the
    steps eagerly and the warning comes with the first invalid batch.
    """
    return first_batch if BACKEND == "torch" else total


def _logits_model(softmax=False, loss=None):
    keras.utils.set_random_seed(0)
    layers = [keras.Input((4,)), keras.layers.Dense(3)]
    if softmax:
        layers.append(keras.layers.Softmax())
    return keras.Sequential(layers), loss or keras.losses.SparseCategoricalCrossentropy(
        from_logits=not softmax
    )


def _data(num_examples=257):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(num_examples, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=num_examples)
    return x, y


def _evaluate(model, *args, **kwargs):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        results = model.evaluate(*args, return_dict=True, verbose=0, **kwargs)
    return results, _invalid_warnings(record)


def test_evaluate_logits_model_with_default_from_logits():
    x, y = _data()
    model, loss = _logits_model()
    metric = ExpectedCalibrationError()  # from_logits=False, but logits out
    model.compile(optimizer="sgd", loss=loss, metrics=[metric])
    results, messages = _evaluate(model, x, y, batch_size=100)
    assert np.isnan(results["ece"])
    assert np.isfinite(results["loss"])
    assert len(messages) == 1, messages
    count = _count_in_message(257, 100)
    assert f"ExpectedCalibrationError 'ece' is NaN: {count} invalid row(s)" in messages[0]
    assert f"{count} row(s) whose `y_pred` is not probabilities" in messages[0]
    assert "if the model outputs logits, pass `from_logits=True`" in messages[0]
    assert metric.invalid_reasons() == {"not_probabilities": 257}

    # A second evaluate resets the state and explains its own NaN again.
    results, messages = _evaluate(model, x[:50], y[:50], batch_size=50)
    assert np.isnan(results["ece"]) and len(messages) == 1
    assert "50 row(s) whose `y_pred` is not probabilities" in messages[0]


def test_evaluate_negative_sample_weights():
    x, y = _data()
    model, loss = _logits_model()
    metric = ExpectedCalibrationError(from_logits=True)
    # Keras passes sample_weight only to `weighted_metrics`.
    model.compile(optimizer="sgd", loss=loss, weighted_metrics=[metric])
    weight = np.ones(257, dtype=np.float32)
    weight[[0, 5, 150]] = -1.0
    results, messages = _evaluate(model, x, y, sample_weight=weight, batch_size=100)
    assert np.isnan(results["ece"])
    assert len(messages) == 1, messages
    count = _count_in_message(3, 2)
    assert f"{count} row(s) with a negative or non-finite `sample_weight`" in messages[0]
    assert metric.invalid_reasons() == {"invalid_sample_weights": 3}

    # The same weights, made valid, give the functional metric's number.
    weight[[0, 5, 150]] = 0.5
    results, messages = _evaluate(model, x, y, sample_weight=weight, batch_size=100)
    logits = model.predict(x, batch_size=100, verbose=0)
    assert messages == []
    assert results["ece"] == pytest.approx(
        expected_calibration_error(y, logits, from_logits=True, sample_weight=weight),
        abs=1e-5,
    )


def test_evaluate_soft_labels():
    x, y = _data()
    model, loss = _logits_model(loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    metric = ExpectedCalibrationError(from_logits=True)
    model.compile(optimizer="sgd", loss=loss, metrics=[metric])
    soft = np.eye(3, dtype=np.float32)[y] * 0.9 + 0.1 / 3  # label smoothing
    results, messages = _evaluate(model, x, soft, batch_size=100)
    assert np.isnan(results["ece"])
    assert len(messages) == 1, messages
    count = _count_in_message(257, 100)
    assert f"{count} row(s) of one-hot `y_true` that are not one-hot" in messages[0]
    assert metric.invalid_reasons() == {"not_one_hot": 257}
    # Hard one-hot labels are valid.
    results, messages = _evaluate(model, x, np.eye(3, dtype=np.float32)[y], batch_size=100)
    assert np.isfinite(results["ece"]) and messages == []


def test_evaluate_probabilities_with_from_logits_true():
    x, y = _data()
    model, loss = _logits_model(softmax=True)
    metric = ExpectedCalibrationError(from_logits=True)
    model.compile(optimizer="sgd", loss=loss, metrics=[metric])
    # Batches of 128, 128 and 1 row: the single-row batch is not counted.
    results, messages = _evaluate(model, x, y, batch_size=128)
    assert np.isnan(results["ece"])
    assert len(messages) == 1, messages
    count = _count_in_message(256, 128)
    assert f"{count} row(s) whose `y_pred` looks like probabilities" in messages[0]
    assert "pass `from_logits=False`" in messages[0]
    assert metric.invalid_reasons() == {"probabilities_as_logits": 256}


def test_valid_evaluate_and_fit_do_not_warn():
    x, y = _data()
    model, loss = _logits_model()
    metric = ExpectedCalibrationError(from_logits=True)
    model.compile(optimizer="sgd", loss=loss, metrics=[metric])
    with warnings.catch_warnings():
        warnings.simplefilter("error", InvalidRowsWarning)
        history = model.fit(x, y, batch_size=64, epochs=2, verbose=0)
        results = model.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    assert all(np.isfinite(history.history["ece"]))
    assert np.isfinite(results["ece"])


def test_fit_explains_nan_after_the_epoch():
    x, y = _data()
    model, loss = _logits_model()
    model.compile(optimizer="sgd", loss=loss, metrics=[ExpectedCalibrationError()])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=257, epochs=2, verbose=0)
    messages = _invalid_warnings(record)
    assert all(np.isnan(history.history["ece"]))
    # Once per epoch: each epoch resets the state.
    assert len(messages) == 2, messages
    assert all("257 row(s) whose `y_pred` is not probabilities" in m for m in messages)


def test_get_config_round_trip_keeps_checks():
    metric = ExpectedCalibrationError(num_bins=7, from_logits=True, name="calib")
    clone = ExpectedCalibrationError.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    _, logits, labels = _problem(10)
    clone.update_state(labels, _softmax(logits))
    value, messages = _result_and_warnings(clone)
    assert np.isnan(value) and len(messages) == 1
    assert "'calib' is NaN" in messages[0]
