"""Reliability keys reach TensorBoard as scalars through Keras' own callback."""

import os

import keras
import numpy as np
import pytest

import keras_reliability as kr
from keras_reliability.callbacks import tensorboard_images


def _scalars(directory):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    accumulator = event_accumulator.EventAccumulator(directory, size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [float(tensor_util.make_ndarray(event.tensor_proto)) for event in events]
        for tag in accumulator.Tags()["tensors"]
        if tag.startswith("epoch_")
        for events in [accumulator.Tensors(tag)]
    }


def test_every_reliability_key_is_a_tensorboard_scalar(
    make_digits_model, shuffled_digits, tmp_path
):
    if not tensorboard_images.tensorboard_available():
        pytest.skip("keras.callbacks.TensorBoard needs TensorFlow and TensorBoard")
    x, y = shuffled_digits
    calibration = kr.callbacks.CalibrationCallback((x[1500:], y[1500:]), metrics=("ece", "nll"))
    noise = np.random.default_rng(0).uniform(size=(100, 64)).astype("float32")
    ood = kr.callbacks.OODMonitorCallback(x[1500:], ood_data=noise, scorers=("energy",))
    history = make_digits_model().fit(
        x[:500],
        y[:500],
        epochs=2,
        verbose=0,
        callbacks=[calibration, ood, keras.callbacks.TensorBoard(str(tmp_path))],
    )
    train = _scalars(os.path.join(tmp_path, "train"))
    validation = _scalars(os.path.join(tmp_path, "validation"))
    # Keras files "val_" keys under the validation run, without the prefix.
    for key, values in history.history.items():
        if key.startswith("val_"):
            np.testing.assert_allclose(validation[f"epoch_{key[4:]}"], values, rtol=1e-6)
        else:
            np.testing.assert_allclose(train[f"epoch_{key}"], values, rtol=1e-6)
    assert {"val_ece", "val_nll", "ood_energy_auroc", "ood_energy_fpr95"} <= set(history.history)


def test_tensorflow_writes_event_files_off_the_gpu_under_other_backends(monkeypatch, tmp_path):
    if not tensorboard_images.tensorboard_available():
        pytest.skip("needs TensorFlow and TensorBoard")
    import tensorflow as tf

    calls = []
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda *args: calls.append(args))
    monkeypatch.setattr(tensorboard_images, "_writers", {})
    png = kr.plotting.figure_to_png(kr.plotting.metric_history({"val_ece": [0.1, 0.05]}))
    assert tensorboard_images.write_png(str(tmp_path), "report/curves", png, step=0)
    assert tensorboard_images.write_png(str(tmp_path), "report/curves", png, step=1)
    # Once, when the writer is made; never under the TensorFlow backend itself.
    expected = [] if keras.backend.backend() == "tensorflow" else [([], "GPU")]
    assert calls == expected
