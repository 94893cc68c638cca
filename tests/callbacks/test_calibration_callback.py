"""CalibrationCallback inside real `model.fit` runs on scikit-learn's digits."""

import csv
import math

import keras
import numpy as np
import pytest

import keras_reliability as kr
from keras_reliability.callbacks import CalibrationCallback

DEFAULT_KEYS = [
    "val_ece",
    "val_mce",
    "val_adaptive_ece",
    "val_nll",
    "val_brier",
    "val_classwise_ece",
]


@pytest.fixture(scope="module")
def digits(shuffled_digits):
    x, y = shuffled_digits
    return (x[:1000], y[:1000]), (x[1000:1400], y[1000:1400])


def make_model(output_activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation=output_activation),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=output_activation is None
        ),
    )
    return model


class EpochRecorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs_begun = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_begun += 1


def test_callback_keys_reach_history_and_match_functional_metrics(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    history = model.fit(
        x, y, epochs=2, batch_size=64, verbose=0,
        callbacks=[CalibrationCallback((x_val, y_val))],
    )
    for key in DEFAULT_KEYS:
        assert len(history.history[key]) == 2
    logits = model.predict(x_val, verbose=0)
    last = {key: history.history[key][-1] for key in DEFAULT_KEYS}
    expected = {
        "val_ece": kr.metrics.expected_calibration_error(y_val, logits, from_logits=True),
        "val_mce": kr.metrics.max_calibration_error(y_val, logits, from_logits=True),
        "val_adaptive_ece": kr.metrics.adaptive_calibration_error(
            y_val, logits, from_logits=True
        ),
        "val_nll": kr.metrics.negative_log_likelihood(y_val, logits, from_logits=True),
        "val_brier": kr.metrics.brier_score(y_val, logits, from_logits=True),
        "val_classwise_ece": kr.metrics.classwise_calibration_error(
            y_val, logits, from_logits=True
        ),
    }
    for key, value in expected.items():
        assert last[key] == pytest.approx(value, abs=1e-6), key
    # A model trained for two epochs is not perfectly calibrated.
    assert 0.0 < last["val_ece"] < 1.0


def test_callback_csv_logger_and_early_stopping_see_the_keys(digits, tmp_path):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    csv_path = tmp_path / "log.csv"
    # min_delta=1 turns any change of ECE into "no improvement", so the run
    # stops after patience + 1 epochs only if EarlyStopping reads val_ece.
    history = model.fit(
        x, y, epochs=8, batch_size=64, verbose=0,
        callbacks=[
            CalibrationCallback((x_val, y_val)),
            keras.callbacks.CSVLogger(str(csv_path)),
            keras.callbacks.EarlyStopping(
                monitor="val_ece", mode="min", patience=1, min_delta=1.0
            ),
        ],
    )
    assert len(history.history["val_ece"]) == 2
    with open(csv_path) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2
    for key in DEFAULT_KEYS:
        logged = [float(row[key]) for row in rows]
        np.testing.assert_allclose(logged, history.history[key], rtol=1e-6)


def test_callback_every_writes_nan_on_skipped_epochs(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    callback = CalibrationCallback((x_val, y_val), metrics=("ece",), every=2)
    history = model.fit(
        x, y, epochs=4, batch_size=128, verbose=0, callbacks=[callback]
    )
    values = history.history["val_ece"]
    assert [math.isnan(v) for v in values] == [True, False, True, False]
    np.testing.assert_array_equal(callback.history["val_ece"], values)


def test_callback_fit_temperature_logs_the_optimal_temperature(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    history = model.fit(
        x, y, epochs=2, batch_size=64, verbose=0,
        callbacks=[
            CalibrationCallback((x_val, y_val), metrics=("ece",), fit_temperature=True)
        ],
    )
    logits = model.predict(x_val, verbose=0)
    scaler = kr.calibration.TemperatureScaling().fit(logits, y_val)
    assert history.history["val_temperature"][-1] == pytest.approx(
        scaler.temperature, rel=1e-5
    )
    scaled = keras.ops.convert_to_numpy(scaler(logits))
    assert history.history["val_ece_after_ts"][-1] == pytest.approx(
        kr.metrics.expected_calibration_error(y_val, scaled, from_logits=True),
        abs=1e-6,
    )
    # Temperature scaling fitted on the same data lowers its NLL, and so
    # usually its ECE; it must not leave it much worse.
    assert history.history["val_ece_after_ts"][-1] <= history.history["val_ece"][-1] + 0.01


def test_callback_detects_probability_outputs(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model(output_activation="softmax")
    history = model.fit(
        x, y, epochs=1, batch_size=64, verbose=0,
        callbacks=[CalibrationCallback((x_val, y_val), metrics=("ece", "nll"))],
    )
    probabilities = model.predict(x_val, verbose=0)
    assert history.history["val_ece"][-1] == pytest.approx(
        kr.metrics.expected_calibration_error(y_val, probabilities), abs=1e-6
    )
    assert history.history["val_nll"][-1] == pytest.approx(
        kr.metrics.negative_log_likelihood(y_val, probabilities), abs=1e-5
    )


def test_callback_accepts_batches_weights_and_max_samples(digits):
    (x, y), (x_val, y_val) = digits
    weights = np.where(y_val % 2 == 0, 2.0, 1.0).astype("float32")
    batches = [
        (x_val[i : i + 50], y_val[i : i + 50], weights[i : i + 50])
        for i in range(0, 400, 50)
    ]
    model = make_model()
    callback = CalibrationCallback(batches, metrics=("ece",), max_samples=120)
    array_callback = CalibrationCallback(
        (x_val, y_val, weights), metrics=("ece",), max_samples=120, prefix="arr_"
    )
    history = model.fit(
        x, y, epochs=1, batch_size=64, verbose=0,
        callbacks=[callback, array_callback],
    )
    logits = model.predict(x_val[:120], verbose=0)
    expected = kr.metrics.expected_calibration_error(
        y_val[:120], logits, from_logits=True, sample_weight=weights[:120]
    )
    assert history.history["val_ece"][-1] == pytest.approx(expected, abs=1e-6)
    assert history.history["arr_ece"][-1] == pytest.approx(expected, abs=1e-6)


def test_callback_accepts_metric_objects(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    metric = kr.metrics.MaxCalibrationError(from_logits=True, name="streamed_mce")
    history = model.fit(
        x, y, epochs=1, batch_size=64, verbose=0,
        callbacks=[CalibrationCallback((x_val, y_val), metrics=("mce", metric))],
    )
    assert history.history["val_streamed_mce"][-1] == pytest.approx(
        history.history["val_mce"][-1], abs=1e-6
    )


def test_callback_plots_reliability_diagrams(digits, tmp_path):
    pytest.importorskip("matplotlib")
    (x, y), (x_val, y_val) = digits
    model = make_model()
    model.fit(
        x, y, epochs=2, batch_size=64, verbose=0,
        callbacks=[
            CalibrationCallback(
                (x_val, y_val), metrics=("ece",), plot_every=2, log_dir=str(tmp_path)
            )
        ],
    )
    assert not (tmp_path / "reliability_epoch_0001.png").exists()
    for name in ("reliability_epoch_0002.png", "calibration_history.png"):
        png = (tmp_path / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), name
    from keras_reliability.callbacks import tensorboard_images

    events = list((tmp_path / "reliability").glob("events.out.tfevents.*"))
    assert bool(events) == tensorboard_images.tensorboard_available()


def test_callback_bad_labels_fail_before_the_first_epoch(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    recorder = EpochRecorder()
    bad_labels = y_val.copy()
    bad_labels[5] = 12
    with pytest.raises(ValueError, match=r"`validation_data` holds the label 12, outside \[0, 9\]"):
        model.fit(
            x, y, epochs=3, verbose=0,
            callbacks=[CalibrationCallback((x_val, bad_labels)), recorder],
        )
    assert recorder.epochs_begun == 0


def test_callback_incompatible_inputs_fail_before_the_first_epoch(digits):
    (x, y), _ = digits
    model = make_model()
    recorder = EpochRecorder()
    wrong_inputs = np.zeros((20, 7), "float32")
    with pytest.raises(
        ValueError, match=r"`validation_data` has examples of shape \(7,\), but model .* expects"
    ):
        model.fit(
            x, y, epochs=3, verbose=0,
            callbacks=[
                CalibrationCallback((wrong_inputs, np.zeros(20, "int32"))),
                recorder,
            ],
        )
    assert recorder.epochs_begun == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_bins": 0}, "`num_bins` must be >= 1; received 0"),
        ({"metrics": "ece"}, "`metrics` must be a list or tuple"),
        ({"metrics": ("ecee",)}, "Unknown calibration_metric 'ecee'"),
        ({"plot_every": 2}, "`log_dir` is required"),
        ({"plot_every": 0, "log_dir": "x"}, "`plot_every` must be a positive integer"),
        ({"every": 0}, "`every` must be a positive integer; received 0"),
        ({"max_samples": 0}, "`max_samples` must be a positive integer"),
        ({"from_logits": "yes"}, "`from_logits` must be True, False or None"),
    ],
)
def test_callback_rejects_bad_arguments(kwargs, message):
    data = (np.zeros((4, 64), "float32"), np.zeros(4, "int32"))
    with pytest.raises(ValueError, match=message):
        CalibrationCallback(data, **kwargs)


@pytest.mark.parametrize(
    "data, message",
    [
        ((np.zeros((4, 64)), np.zeros(3)), "4 inputs but 3 labels"),
        ((np.zeros((0, 64)), np.zeros(0)), "empty"),
        ((np.zeros((4, 64)),), "tuple of 1 items"),
        (None, "received NoneType"),
    ],
)
def test_callback_rejects_bad_validation_data(data, message):
    with pytest.raises(ValueError, match=message):
        CalibrationCallback(data)


def test_callback_warns_when_it_overwrites_a_compiled_metric(digits):
    (x, y), (x_val, y_val) = digits
    model = make_model()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[kr.metrics.ExpectedCalibrationError(from_logits=True)],
    )
    with pytest.warns(UserWarning, match="overwrites the log key 'val_ece'"):
        model.fit(
            x, y, epochs=1, verbose=0, validation_data=(x_val, y_val),
            callbacks=[CalibrationCallback((x_val, y_val), metrics=("ece",))],
        )


def test_callback_config_round_trip():
    data = (np.zeros((4, 64), "float32"), np.zeros(4, "int32"))
    callback = CalibrationCallback(
        data, num_bins=10, metrics=("ece", "brier"), fit_temperature=True,
        max_samples=3, every=2, prefix="holdout_",
    )
    config = callback.get_config()
    rebuilt = CalibrationCallback.from_config(config, validation_data=data)
    assert rebuilt.get_config() == config
    assert rebuilt.log_keys == [
        "holdout_ece", "holdout_brier", "holdout_temperature", "holdout_ece_after_ts"
    ]
    serialized = keras.saving.serialize_keras_object(callback)
    assert serialized["registered_name"] == "keras_reliability>CalibrationCallback"
    with pytest.raises(ValueError, match="needs `validation_data`"):
        CalibrationCallback.from_config(config)


def test_callback_accepts_a_tf_data_dataset(digits):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.data as validation data is exercised on the TensorFlow backend")
    import tensorflow as tf

    (x, y), (x_val, y_val) = digits
    dataset = tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(64)
    model = make_model()
    history = model.fit(
        x, y, epochs=1, batch_size=64, verbose=0,
        callbacks=[CalibrationCallback(dataset, metrics=("ece",))],
    )
    logits = model.predict(x_val, verbose=0)
    assert history.history["val_ece"][-1] == pytest.approx(
        kr.metrics.expected_calibration_error(y_val, logits, from_logits=True), abs=1e-6
    )


def test_callback_reads_no_batch_past_max_samples(digits):
    (x, y), (x_val, y_val) = digits

    class CountingBatches:
        """An iterable of 50-example batches that counts the batches it hands out."""

        def __init__(self):
            self.read = 0

        def __iter__(self):
            for start in range(0, 400, 50):
                self.read += 1
                yield x_val[start : start + 50], y_val[start : start + 50]

    batches = CountingBatches()
    callback = CalibrationCallback(batches, metrics=("ece",), max_samples=120)
    model = make_model()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[callback])
    read_at_train_begin = 1  # the probe reads the first batch
    assert batches.read == read_at_train_begin + 3  # 150 examples cover 120, not all 400
    outputs, labels, _ = callback.data.collect(model)
    assert outputs.shape == (120, 10) and labels.shape == (120,)
