"""Interrupted adversarial fits: exceptions and KeyboardInterrupt anywhere in `fit`.

`AdversarialTrainingCallback` replaces `train_step` (and `compute_loss`)
only while its train function runs, so an error inside the step restores
the model at once. Keras calls no hook when another callback raises, so
then exactly one attribute remains, an instance `make_train_function`
(and `train_function` holds the adversarial function until it is
rebuilt): the next `fit` or `train_on_batch` removes it before it trains,
and nothing else reads it. These tests check that the model is left
usable and trains, evaluates, predicts and saves like a model that never
saw the callback, on every backend.

On JAX, Keras' `fit` moves the weights out of the variables for the
duration of an epoch; an error inside the first step left them empty
(`'NoneType' object is not callable`): the callback gives them back. A
call on inputs of the wrong shape did the same through `predict`: the
attacks, OOD scorers and calibrators check shapes before any forward pass.
"""

import keras
import numpy as np
import pytest

import keras_reliability as kr
from keras_reliability.backend import keep_variables
from keras_reliability.callbacks import AdversarialTrainingCallback
from keras_reliability.training.recipes import MixedFGSMTraining

BACKEND = keras.backend.backend()
HOOKS = [
    "on_train_begin",
    "on_epoch_begin",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_epoch_end",
]
ERRORS = [RuntimeError, KeyboardInterrupt]
# What an interrupted fit may leave in the model's `__dict__` (documented).
LEFTOVER = {"make_train_function"}
PATCHED = ("train_step", "compute_loss", "make_train_function")


# ----------------------------------------------------------------------------
# Helpers


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
    # Plain SGD has no state, so models starting from the same weights
    # train alike whatever their history.
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def adversarial_callback(recipe=None):
    # "mix" without its clean half trains on FGSM inputs only: a step left
    # installed would change the next plain fit.
    return AdversarialTrainingCallback(
        recipe or "mix", epsilon=0.3, recipe_options=None if recipe else {"clean_weight": 0.0}
    )


def fit(model, x, y, callbacks=(), **kwargs):
    return model.fit(
        x, y, epochs=1, batch_size=8, shuffle=False, verbose=0, callbacks=list(callbacks), **kwargs
    )


class Raiser(keras.callbacks.Callback):
    """Raises `error` in `hook` (on the first call)."""

    def __init__(self, hook, error):
        super().__init__()
        self.error = error

        def raise_error(*args, **kwargs):
            raise error(f"raised in {hook}")

        setattr(self, hook, raise_error)


class RaisingMix(MixedFGSMTraining):
    """Mix training whose step raises on batches of another size than 8."""

    def __init__(self, error, **kwargs):
        super().__init__(**kwargs)
        self.error = error

    def transform(self, data, gradient, logits, seed):
        x = data[0]
        if x.shape[0] != 8:  # traced with a None batch size on TensorFlow
            raise self.error("raised inside the step")
        return super().transform(data, gradient, logits, seed)


def assert_usable_like_untouched(model, start, x, y):
    """From `start`, a plain fit gives what a fresh model gives; so do
    evaluate, predict and train_on_batch."""
    twin = make_model(seed=1)
    twin.set_weights(start)
    model.set_weights(start)
    np.testing.assert_allclose(model.predict(x, verbose=0), twin.predict(x, verbose=0), atol=1e-6)
    fit(model, x, y)
    fit(twin, x, y)
    for value, expected in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(value, expected, atol=1e-6, rtol=0)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(twin.evaluate(x, y, verbose=0))
    model.train_on_batch(x[:8], y[:8])
    twin.train_on_batch(x[:8], y[:8])
    for value, expected in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(value, expected, atol=1e-6, rtol=0)
    assert not set(PATCHED) & set(model.__dict__)


def variables_emptied(model):
    return [v.path for v in model.variables if getattr(v, "_value", 0) is None]


# ----------------------------------------------------------------------------
# Errors in callback hooks


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
@pytest.mark.parametrize("hook", HOOKS)
def test_error_in_a_callback_hook_leaves_only_the_documented_attribute(data, hook, error):
    x, y = data
    model, interrupted_twin = make_model(), make_model()
    start = model.get_weights()
    interrupted_twin.set_weights(start)
    callback = adversarial_callback()
    for target, callbacks in ((model, [callback]), (interrupted_twin, [])):
        with pytest.raises(error, match=f"raised in {hook}"):
            fit(target, x, y, [*callbacks, Raiser(hook, error)], validation_data=(x, y))
    # Keras' own fit leaves the same attributes on both; the callback adds
    # at most the documented one, which behaves like the class method.
    assert set(model.__dict__) - set(interrupted_twin.__dict__) <= LEFTOVER
    assert set(interrupted_twin.__dict__) <= set(model.__dict__)
    assert "train_step" not in model.__dict__ and "compute_loss" not in model.__dict__
    assert not variables_emptied(model)
    # The validation pass compiled during the fit computes the plain loss.
    twin = make_model(seed=1)
    twin.set_weights(model.get_weights())
    assert model.evaluate(x, y, verbose=0) == pytest.approx(twin.evaluate(x, y, verbose=0))
    assert_usable_like_untouched(model, start, x, y)


def test_adversarial_fit_differs_from_a_plain_one(data):
    """The comparisons above would catch a leftover adversarial step."""
    x, y = data
    model, twin = make_model(), make_model()
    fit(model, x, y, [adversarial_callback()])
    fit(twin, x, y)
    difference = max(
        float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), twin.get_weights())
    )
    assert difference > 1e-3


@pytest.mark.parametrize("action", ["train_on_batch", "compile"])
def test_leftover_attribute_is_removed_by_train_on_batch_and_compile(data, action):
    x, y = data
    model = make_model()
    with pytest.raises(RuntimeError):
        fit(model, x, y, [adversarial_callback(), Raiser("on_epoch_begin", RuntimeError)])
    assert set(model.__dict__) & LEFTOVER
    if action == "compile":
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=model.loss)
    start = model.get_weights()
    twin = make_model(seed=1)
    twin.set_weights(start)
    model.train_on_batch(x[:8], y[:8])
    twin.train_on_batch(x[:8], y[:8])
    assert not set(PATCHED) & set(model.__dict__)
    for value, expected in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(value, expected, atol=1e-6, rtol=0)


def test_interrupted_model_saves_and_loads(data, tmp_path):
    x, y = data
    model = make_model()
    with pytest.raises(KeyboardInterrupt):
        fit(model, x, y, [adversarial_callback(), Raiser("on_train_batch_end", KeyboardInterrupt)])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not set(PATCHED) & set(loaded.__dict__)


def test_a_second_adversarial_callback_leaves_nothing(data):
    x, y = data
    model = make_model()
    with pytest.raises(ValueError, match="two AdversarialTrainingCallbacks"):
        fit(model, x, y, [adversarial_callback(), adversarial_callback()])
    assert not set(PATCHED) & set(model.__dict__)
    assert_usable_like_untouched(model, model.get_weights(), x, y)


# ----------------------------------------------------------------------------
# Errors inside the train step


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_error_in_the_first_step_restores_the_model(data, error):
    # Raised while the step is traced (TensorFlow, JAX) or run (PyTorch).
    x, y = data
    model = make_model()
    start = model.get_weights()
    recipe = RaisingMix(error, epsilon=0.3, input_range=(0, 1), clean_weight=0.0)
    with pytest.raises(error, match="inside the step"):
        fit(model, x[:4], y[:4], [AdversarialTrainingCallback(recipe)])
    assert not set(PATCHED) & set(model.__dict__)
    assert not variables_emptied(model)
    for value, expected in zip(model.get_weights(), start):
        np.testing.assert_array_equal(value, expected)
    assert_usable_like_untouched(model, start, x, y)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_error_in_a_later_step_keeps_the_weights_of_the_steps_before(data, error):
    x, y = data
    model, reference = make_model(), make_model()
    if BACKEND == "tensorflow":
        # The graph is traced once for any batch size; eager steps see the
        # batch of 4. (JAX traces the step again for it.)
        model.run_eagerly = True
    start = model.get_weights()
    reference.set_weights(start)
    recipe = RaisingMix(error, epsilon=0.3, input_range=(0, 1), clean_weight=0.0)
    # 12 examples: a batch of 8 trains, the batch of 4 raises.
    with pytest.raises(error, match="inside the step"):
        fit(model, x[:12], y[:12], [AdversarialTrainingCallback(recipe)])
    assert not set(PATCHED) & set(model.__dict__)
    assert not variables_emptied(model)
    fit(reference, x[:8], y[:8], [adversarial_callback()])
    for value, expected in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(value, expected, atol=1e-6, rtol=0)
    assert_usable_like_untouched(model, start, x, y)


@pytest.mark.skipif(BACKEND != "jax", reason="a JAX trainer behaviour")
def test_keras_jax_fit_empties_the_variables_on_an_error_in_the_first_step(data):
    """Keras' plain JAX `fit`, without the callback: the variables stay None.

    Documents why `backend.recover_train_state` exists; if this fails,
    Keras fixed it.
    """
    x, y = data

    class Failing(keras.Sequential):
        def train_step(self, *args):
            raise KeyboardInterrupt("raised inside the step")

    keras.utils.set_random_seed(0)
    model = Failing([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    with pytest.raises(KeyboardInterrupt):
        fit(model, x, y)
    assert variables_emptied(model)
    with pytest.raises(TypeError, match="'NoneType' object is not callable"):
        model.predict(x, verbose=0)


# ----------------------------------------------------------------------------
# Inputs of the wrong shape are refused before any forward pass


def entry_points():
    def fgsm(model, x, y):
        kr.attacks.FGSM(epsilon=0.1, input_range=(0, 1)).generate(model, x, y)

    def max_softmax(model, x, y):
        kr.ood.MaxSoftmax().score(model, x)

    def mahalanobis(model, x, y):
        kr.ood.Mahalanobis().fit(model, x, y)

    def calibrate(model, x, y):
        kr.calibration.TemperatureScaling.calibrate(model, x, y)

    return {
        "FGSM.generate": fgsm,
        "MaxSoftmax.score": max_softmax,
        "Mahalanobis.fit": mahalanobis,
        "calibrate": calibrate,
    }


@pytest.mark.parametrize("shape", [(16, 5), (16, 4, 1)], ids=["size", "rank"])
@pytest.mark.parametrize("entry", sorted(entry_points()))
def test_wrong_input_shape_is_refused_and_the_model_stays_usable(data, entry, shape):
    x, y = data
    model = make_model()
    expected = model.predict(x, verbose=0)
    wrong = np.random.default_rng(1).uniform(0, 1, shape).astype("float32")
    with pytest.raises(ValueError, match="`x`"):
        entry_points()[entry](model, wrong, y)
    assert not variables_emptied(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    fit(model, x, y)


DATASET_ENTRY_POINTS = {
    "MaxSoftmax.score": lambda model, dataset: kr.ood.MaxSoftmax().score(model, dataset),
    "predict_with_uncertainty": lambda model, dataset: kr.uncertainty.predict_with_uncertainty(
        model, dataset, num_samples=2
    ),
    "calibrate": lambda model, dataset: kr.calibration.TemperatureScaling.calibrate(
        model, dataset, np.zeros(16, "int32")
    ),
}


@pytest.mark.parametrize("entry", sorted(DATASET_ENTRY_POINTS))
def test_wrong_input_shape_in_a_dataset_leaves_the_model_usable(data, entry):
    # Datasets are read batch by batch inside Keras' predict, so the shape
    # error comes from Keras; every predict of the library keeps the model.
    tf = pytest.importorskip("tensorflow")
    x, _ = data
    model = make_model()
    expected = model.predict(x, verbose=0)
    wrong = np.random.default_rng(1).uniform(0, 1, (16, 5)).astype("float32")
    # Keras' error (a ValueError, or TensorFlow's own from a graph): the
    # batches are not read before the pass.
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        DATASET_ENTRY_POINTS[entry](model, tf.data.Dataset.from_tensor_slices(wrong).batch(8))
    assert not variables_emptied(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)


@pytest.mark.skipif(BACKEND != "jax", reason="Keras' JAX trainer empties variables")
def test_keep_variables_refills_what_an_interrupted_jax_call_emptied(data):
    x, _ = data
    model = make_model()
    expected = model.predict(x, verbose=0)
    with pytest.raises(KeyboardInterrupt), keep_variables(model):
        # What Keras' JAX predict/evaluate/fit do before their first step.
        model._purge_model_variables(trainable_variables=True, non_trainable_variables=True)
        raise KeyboardInterrupt
    assert not variables_emptied(model)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-6)
    # Without it, Keras' own predict on inputs of the wrong shape breaks the model.
    wrong = np.zeros((4, 5), "float32")
    with pytest.raises(ValueError):
        model.predict(wrong, verbose=0)
    assert variables_emptied(model)
