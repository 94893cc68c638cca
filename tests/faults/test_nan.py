"""NaN losses and NaN weights during adversarial training.

A loss that turns NaN under `TerminateOnNaN` stops the fit quietly: `fit`
returns its History, the robustness evaluation of that epoch (NaN weights)
logs NaN with a warning, and the model is restored. With
`TerminateOnNaN(raise_error=True)` the fit raises and the model is left as
after any interrupted fit. A model whose weights are already NaN is refused
before training when `eval_data` is given. After each, the model trains and
evaluates like a model that never saw the callback.
"""

import math
import warnings

import keras
import numpy as np
import pytest

from keras_reliability.callbacks import AdversarialTrainingCallback

PATCHED = ("train_step", "compute_loss", "make_train_function")
ADV_KEYS = ["adv_clean_accuracy", "adv_fgsm_accuracy", "adv_pgd_accuracy"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (16, 4)).astype("float32")
    y = (np.arange(16) % 3).astype("int32")
    return x, y


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def callback(data):
    return AdversarialTrainingCallback(
        "fgsm", epsilon=0.1, eval_data=data, eval_attacks=("fgsm", "pgd"), seed=0
    )


def fit(model, x, y, callbacks=(), epochs=1):
    return model.fit(
        x, y, epochs=epochs, batch_size=8, shuffle=False, verbose=0, callbacks=list(callbacks)
    )


def with_nan_row(x):
    x = x.copy()
    x[0, 0] = np.nan
    return x


def assert_trains_like_untouched(model, x, y):
    start = make_model(seed=3).get_weights()
    twin = make_model(seed=1)
    twin.set_weights(start)
    model.set_weights(start)
    fit(model, x, y)
    fit(twin, x, y)
    for value, expected in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(value, expected, atol=1e-6, rtol=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(twin.evaluate(x, y, verbose=0))
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0), atol=1e-6)
    assert not set(PATCHED) & set(model.__dict__)


def test_terminate_on_nan_stops_the_fit_and_logs_nan(data):
    x, y = data
    model = make_model()
    adversarial = callback(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(
            model, with_nan_row(x), y, [adversarial, keras.callbacks.TerminateOnNaN()], epochs=3
        )
    assert isinstance(history, keras.callbacks.History)
    assert len(history.epoch) == 1  # stopped in the first epoch
    assert math.isnan(history.history["loss"][0])
    for key in ADV_KEYS:
        assert len(history.history[key]) == 1 and math.isnan(history.history[key][0]), key
    assert any("robustness evaluation failed" in str(w.message) for w in caught)
    assert not set(PATCHED) & set(model.__dict__)
    assert_trains_like_untouched(model, x, y)


def test_terminate_on_nan_raising_leaves_a_usable_model(data):
    x, y = data
    model = make_model()
    with pytest.raises(RuntimeError, match="NaN"):
        fit(model, with_nan_row(x), y, [callback(data), keras.callbacks.TerminateOnNaN(True)])
    assert not {"train_step", "compute_loss"} & set(model.__dict__)
    assert_trains_like_untouched(model, x, y)


def test_nan_weights_are_refused_before_training(data):
    x, y = data
    model = make_model()
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    with pytest.raises(ValueError, match="NaN"):
        fit(model, x, y, [callback(data)])
    assert not set(PATCHED) & set(model.__dict__)
    assert_trains_like_untouched(model, x, y)


def test_nan_weights_without_eval_data_stop_with_terminate_on_nan(data):
    x, y = data
    model = make_model()
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    history = fit(
        model,
        x,
        y,
        [AdversarialTrainingCallback("fgsm", epsilon=0.1), keras.callbacks.TerminateOnNaN()],
        epochs=3,
    )
    assert len(history.epoch) == 1 and math.isnan(history.history["loss"][0])
    assert not set(PATCHED) & set(model.__dict__)
    assert_trains_like_untouched(model, x, y)
