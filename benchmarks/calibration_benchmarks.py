"""Calibration benchmarks: each measurement is ours vs a reference, in one run.

Every function returns a dict with the two timings (median of `repeats`
interleaved runs), their ratio and the goal the ratio is compared with.
"""

import time

import keras
import numpy as np

import keras_reliability as kr


def _median_times(functions, repeats):
    """Runs the functions alternately `repeats` times; median seconds each."""
    times = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            times[index].append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def _cnn(num_classes=10):
    """A small ResNet-style CNN on 32x32x3 inputs."""
    inputs = keras.Input(shape=(32, 32, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    for filters in (32, 64):
        shortcut = keras.layers.Conv2D(filters, 1, strides=2)(x)
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        x = keras.layers.Activation("relu")(keras.layers.Add()([x, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes)(x)
    return keras.Model(inputs, outputs)


def _cnn_data(num_examples, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(num_examples, 32, 32, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=num_examples).astype("int32")
    return x, y


def callback_epoch_cost(num_examples=10_000, batch_size=256, repeats=7):
    """CalibrationCallback.on_epoch_end vs one model.predict on the same data."""
    model = _cnn()
    x, y = _cnn_data(num_examples)
    callback = kr.callbacks.CalibrationCallback((x, y), batch_size=batch_size)
    callback.set_model(model)
    callback.on_train_begin()
    model.predict(x, batch_size=batch_size, verbose=0)  # compile once

    def predict():
        model.predict(x, batch_size=batch_size, verbose=0)

    def epoch_end():
        callback.on_epoch_end(0, {})

    reference, ours = _median_times([predict, epoch_end], repeats)
    return {
        "name": "CalibrationCallback epoch cost",
        "shape": f"{num_examples}x32x32x3, batch {batch_size}, 6 metrics",
        "reference": "one model.predict",
        "reference_s": reference,
        "ours_s": ours,
        "ratio": ours / reference,
        "goal": "<= 1.10",
        "met": ours / reference <= 1.10,
    }


def compiled_metric_overhead(num_examples=10_000, batch_size=256, repeats=7):
    """model.evaluate with ExpectedCalibrationError in compile vs without."""
    x, y = _cnn_data(num_examples)
    plain = _cnn()
    plain.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with_ece = _cnn()
    with_ece.set_weights(plain.get_weights())
    with_ece.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[kr.metrics.ExpectedCalibrationError(from_logits=True)],
    )
    for model in (plain, with_ece):
        model.evaluate(x, y, batch_size=batch_size, verbose=0)

    reference, ours = _median_times(
        [
            lambda: plain.evaluate(x, y, batch_size=batch_size, verbose=0),
            lambda: with_ece.evaluate(x, y, batch_size=batch_size, verbose=0),
        ],
        repeats,
    )
    return {
        "name": "ExpectedCalibrationError in compile",
        "shape": f"{num_examples}x32x32x3, batch {batch_size}",
        "reference": "evaluate without the metric",
        "reference_s": reference,
        "ours_s": ours,
        "ratio": ours / reference,
        "goal": "<= 1.03",
        "met": ours / reference <= 1.03,
    }


def functional_ece_vs_tfp(num_examples=1_000_000, num_classes=100, repeats=5):
    """expected_calibration_error vs tfp.stats.expected_calibration_error."""
    if keras.backend.backend() != "tensorflow":
        return None
    try:
        import tensorflow as tf
        import tensorflow_probability as tfp
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(num_examples, num_classes)).astype("float32") * 3)
    labels = tf.constant(rng.integers(0, num_classes, num_examples).astype("int32"))

    def ours():
        return kr.metrics.expected_calibration_error(labels, logits, from_logits=True)

    def reference():
        return float(
            tfp.stats.expected_calibration_error(15, logits=logits, labels_true=labels)
        )

    ours(), reference()
    reference_s, ours_s = _median_times([reference, ours], repeats)
    return {
        "name": "functional ECE",
        "shape": f"{num_examples}x{num_classes} logits, 15 bins",
        "reference": "tfp.stats.expected_calibration_error",
        "reference_s": reference_s,
        "ours_s": ours_s,
        # Here the figure is a speed-up: reference time over ours.
        "ratio": reference_s / ours_s,
        "goal": ">= 1.0 (speed-up)",
        "met": reference_s / ours_s >= 1.0,
        "agreement": abs(ours() - reference()),
    }


BENCHMARKS = (callback_epoch_cost, compiled_metric_overhead, functional_ece_vs_tfp)
