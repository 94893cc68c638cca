"""Calibration benchmarks: each measurement is ours vs a reference, in one run.

Every function returns a dict with the two timings (the best of `repeats`
interleaved runs: on a shared machine noise only ever adds time), their
ratio and the goal the ratio is compared with.
"""


import keras
import numpy as np

import keras_reliability as kr
from keras_reliability.metrics import binning
from keras_reliability.metrics import calibration
from timing import times


def _best_times(functions, repeats):
    """Runs the functions alternately `repeats` times; best seconds each."""
    return [float(np.min(seconds)) for seconds in times(functions, repeats)]


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


def callback_epoch_cost(num_examples=50_000, batch_size=256, repeats=7):
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

    reference, ours = _best_times([predict, epoch_end], repeats)
    outputs, labels, _ = callback.data.collect(model)
    (metrics_only,) = _best_times(
        [lambda: [callback._compute(m, labels, outputs, None) for _, m in callback._metrics]],
        repeats,
    )
    return {
        "name": "CalibrationCallback epoch cost",
        "shape": f"{num_examples}x32x32x3, batch {batch_size}, 6 metrics",
        "reference": "one model.predict",
        "reference_s": reference,
        "ours_s": ours,
        "ratio": ours / reference,
        "goal": "<= 1.10",
        "met": ours / reference <= 1.10,
        "metrics_only_s": metrics_only,
    }


def compiled_metric_overhead(num_examples=50_000, batch_size=256, repeats=11):
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
    # Keras' own accuracy metric, for scale: any compiled metric costs a
    # few percent of a small CNN's evaluate on a 2-core CPU.
    with_accuracy = _cnn()
    with_accuracy.set_weights(plain.get_weights())
    with_accuracy.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["sparse_categorical_accuracy"],
    )
    models = (plain, with_ece, with_accuracy)
    for model in models:
        model.evaluate(x, y, batch_size=batch_size, verbose=0)

    reference, ours, accuracy_s = _best_times(
        [
            lambda m=model: m.evaluate(x, y, batch_size=batch_size, verbose=0)
            for model in models
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
        "accuracy_metric_ratio": accuracy_s / reference,
    }


def functional_ece_vs_tfp(num_rows=1_000_000, num_classes=1_000, repeats=5):
    """expected_calibration_error vs tfp.stats.expected_calibration_error."""
    if keras.backend.backend() != "tensorflow":
        return None
    try:
        import tensorflow as tf
        import tensorflow_probability as tfp
    except ImportError:
        return None
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(num_rows, num_classes)).astype("float32") * 3)
    labels = tf.constant(rng.integers(0, num_classes, num_rows).astype("int32"))

    def ours():
        return kr.metrics.expected_calibration_error(labels, logits, from_logits=True)

    def reference():
        return float(
            tfp.stats.expected_calibration_error(15, logits=logits, labels_true=labels)
        )

    def ours_without_validation():
        # The same computation minus the input checks TFP does not make
        # (finiteness, probabilities-vs-logits, label range).
        confidence, predicted = binning.top_label(logits, True)
        correct = keras.ops.equal(predicted, labels)
        index = binning.uniform_bin_index(confidence, 15)
        statistics = calibration._sum_per_bin(index, confidence, correct, None, 15)
        return float(binning.calibration_error_from_bins(statistics))

    ours(), reference()
    reference_s, ours_s, unchecked_s = _best_times(
        [reference, ours, ours_without_validation], repeats
    )
    return {
        "name": "functional ECE",
        "shape": f"{num_rows}x{num_classes} logits, 15 bins",
        "reference": "tfp.stats.expected_calibration_error",
        "reference_s": reference_s,
        "ours_s": ours_s,
        # Here the figure is a speed-up: reference time over ours.
        "ratio": reference_s / ours_s,
        "goal": ">= 1.0 (speed-up)",
        "met": reference_s / ours_s >= 1.0,
        "agreement": abs(ours() - reference()),
        "without_validation_s": unchecked_s,
    }


BENCHMARKS = (callback_epoch_cost, compiled_metric_overhead, functional_ece_vs_tfp)
