"""The callbacks, metrics and layers under `tf.distribute.MirroredStrategy`.

Two logical CPU devices (split in tests/conftest.py) stand in for two GPUs.
Each check trains or evaluates the same model from the same weights on the
same data once on one device and once mirrored on two, and requires the
logged numbers to agree to float tolerance: the streaming metrics aggregate
across replicas, the callbacks' passes use the strategy, the adversarial
step runs per replica, and a Bayesian layer's KL is counted once per step.
"""

import keras
import numpy as np
import pytest

import keras_reliability as kr

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="MirroredStrategy is TensorFlow's"
)


@pytest.fixture(scope="module")
def strategy():
    import tensorflow as tf

    devices = tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        pytest.skip("needs two logical CPU devices (see tests/conftest.py)")
    # One strategy for the module: TensorFlow's collective ops misbehave when
    # many strategies are created in one process.
    strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
    assert strategy.num_replicas_in_sync == 2
    return strategy


@pytest.fixture(scope="module")
def digits(shuffled_digits):
    x, y = shuffled_digits
    return (x[:1024], y[:1024]), (x[1024:1536], y[1024:1536])


def build(strategy=None, output_layer=None):
    """The digits MLP with the streaming ECE in compile, same weights every time."""

    def make():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(32, activation="relu"),
                output_layer() if output_layer else keras.layers.Dense(10),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[kr.metrics.ExpectedCalibrationError(from_logits=True)],
        )
        return model

    if strategy is None:
        return make()
    with strategy.scope():
        return make()


def fit_logs(model, digits, callbacks=()):
    (x, y), _ = digits
    history = model.fit(
        x, y, batch_size=64, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks)
    )
    return history.history


def assert_same_logs(single, mirrored, keys=None):
    keys = keys or sorted(single)
    assert set(keys) <= set(mirrored), set(keys) - set(mirrored)
    for key in keys:
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-4, atol=1e-6, err_msg=key)


def test_streaming_ece_in_compile_aggregates_across_replicas(strategy, digits):
    _, (x_test, y_test) = digits
    logs = {}
    for name, scope in (("single", None), ("mirrored", strategy)):
        model = build(scope)
        history = fit_logs(model, digits)
        evaluated = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        history.update({f"test_{key}": [value] for key, value in evaluated.items()})
        logs[name] = history
    assert_same_logs(logs["single"], logs["mirrored"], ["loss", "ece", "test_loss", "test_ece"])
    assert logs["single"]["test_ece"][0] > 0.01


@pytest.mark.parametrize(
    "make_callback, prefix",
    [
        (lambda test, train: kr.callbacks.CalibrationCallback(test), "val_"),
        (
            lambda test, train: kr.callbacks.OODMonitorCallback(
                test[0],
                ood_data=np.random.default_rng(0).uniform(size=(256, 64)).astype("float32"),
                scorers=("msp", "energy", "mahalanobis"),
                fit_data=train,
            ),
            "ood_",
        ),
        (
            lambda test, train: kr.callbacks.AdversarialTrainingCallback(
                "fgsm", epsilon=0.1, eval_data=(test[0][:128], test[1][:128])
            ),
            "adv_",
        ),
        (
            lambda test, train: kr.callbacks.AdversarialTrainingCallback(
                "mix", epsilon=0.1, eval_data=(test[0][:128], test[1][:128])
            ),
            "adv_",
        ),
    ],
    ids=["calibration", "ood_monitor", "adversarial_fgsm", "adversarial_mix"],
)
def test_callbacks_log_the_single_device_numbers(strategy, digits, make_callback, prefix):
    train, test = digits
    logs = {}
    for name, scope in (("single", None), ("mirrored", strategy)):
        model = build(scope)
        logs[name] = fit_logs(model, digits, [make_callback(test, train)])
    keys = [key for key in logs["single"] if key.startswith(prefix)]
    assert keys
    # The adversarial recipes train on perturbed batches: the training loss
    # agrees only if every replica perturbs its share as one device would.
    assert_same_logs(logs["single"], logs["mirrored"], keys + ["loss", "ece"])


def test_bayesian_kl_is_counted_once_per_step(strategy, digits):
    _, (x_test, y_test) = digits

    def flipout():
        return kr.layers.DenseFlipout(10, kl_weight=1e-2, sample_at_inference=False)

    results = {}
    for name, scope in (("single", None), ("mirrored", strategy)):
        model = build(scope, flipout)
        results[name] = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    single, mirrored = results["single"], results["mirrored"]
    # Posterior means at inference: the pass is deterministic, so the loss
    # (cross-entropy + KL) agrees only if the KL is added once, not per replica.
    assert mirrored["loss"] == pytest.approx(single["loss"], rel=1e-5)
    model = build(None, flipout)
    logits = model.predict(x_test, verbose=0)
    cross_entropy = float(
        keras.ops.convert_to_numpy(
            keras.losses.sparse_categorical_crossentropy(y_test, logits, from_logits=True)
        ).mean()
    )
    kl = single["loss"] - cross_entropy
    assert kl > 0.1  # the KL term is present in the evaluated loss
