"""The callbacks, metrics and layers under Keras' data-parallel engines.

TensorFlow: `tf.distribute.MirroredStrategy`; JAX: `keras.distribution.DataParallel`.
Two CPU devices stand in for two GPUs (tests/conftest.py splits the CPU:
two logical devices on TensorFlow, two XLA host devices on JAX). Each check
trains or evaluates the same model from the same weights on the same data
once on one device and once on two, and requires the logged numbers to agree
to float tolerance: the streaming metrics aggregate across replicas, the
callbacks' passes use the distribution and keep every example, the
adversarial step runs on every replica's share, and a Bayesian layer's KL is
counted once per step. PyTorch has no Keras data-parallel engine.
"""

import contextlib
import warnings

import keras
import numpy as np
import pytest

import keras_reliability as kr

BACKEND = keras.backend.backend()

pytestmark = pytest.mark.skipif(
    BACKEND not in ("tensorflow", "jax"), reason="Keras has no data-parallel engine for PyTorch"
)

# Recipes whose perturbation draws random numbers. JAX sees the global batch,
# so it draws what one device draws; each TensorFlow replica draws for its
# own share (see test_tensorflow_replicas_draw_their_own_noise).
DRAWS_RANDOM = ("fgsm_rs", "pgd", "noise", "free", "trades")
RECIPE_OPTIONS = {"pgd": {"steps": 2}, "free": {"replays": 2}, "trades": {"steps": 2}}


@pytest.fixture(scope="module")
def two_devices():
    """A context manager factory: models built and trained inside it use two devices."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        devices = tf.config.list_logical_devices("CPU")
        if len(devices) < 2:
            pytest.skip("needs two logical CPU devices (see tests/conftest.py)")
        # One strategy for the module: TensorFlow's collective ops misbehave
        # when many strategies are created in one process.
        strategy = tf.distribute.MirroredStrategy([d.name for d in devices[:2]])
        assert strategy.num_replicas_in_sync == 2
        return strategy.scope
    import jax

    if len(jax.devices()) < 2:
        pytest.skip("needs two XLA host devices (see tests/conftest.py)")
    distribution = keras.distribution.DataParallel(devices=jax.devices()[:2])
    return distribution.scope


def single_and_distributed(two_devices, function):
    """`function()` on one device, then on two: `(single, distributed)`."""
    results = []
    for scope in (contextlib.nullcontext, two_devices):
        with scope():
            results.append(function())
    return results


@pytest.fixture(scope="module")
def digits(shuffled_digits):
    x, y = shuffled_digits
    return (x[:1024], y[:1024]), (x[1024:1536], y[1024:1536])


def build(output_layer=None):
    """The digits MLP with the streaming ECE in compile, same weights every time."""
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


def fit_logs(model, digits, callbacks=()):
    (x, y), _ = digits
    history = model.fit(
        x, y, batch_size=64, epochs=2, shuffle=False, verbose=0, callbacks=list(callbacks)
    )
    return history.history


def assert_same_logs(single, distributed, keys=None, rtol=1e-4):
    keys = keys or sorted(single)
    assert set(keys) <= set(distributed), set(keys) - set(distributed)
    for key in keys:
        np.testing.assert_allclose(distributed[key], single[key], rtol=rtol, atol=1e-6, err_msg=key)


def test_streaming_ece_in_compile_aggregates_across_replicas(two_devices, digits):
    _, (x_test, y_test) = digits

    def run():
        model = build()
        history = fit_logs(model, digits)
        evaluated = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
        history.update({f"test_{key}": [value] for key, value in evaluated.items()})
        return history

    single, distributed = single_and_distributed(two_devices, run)
    assert_same_logs(single, distributed, ["loss", "ece", "test_loss", "test_ece"])
    assert single["test_ece"][0] > 0.01


def _uniform_noise(rows):
    return np.random.default_rng(0).uniform(size=(rows, 64)).astype("float32")


@pytest.mark.parametrize(
    "make_callback, prefix",
    [
        (lambda test, train: kr.callbacks.CalibrationCallback(test), "val_"),
        (
            lambda test, train: kr.callbacks.OODMonitorCallback(
                test[0],
                ood_data=_uniform_noise(256),
                scorers=("msp", "energy", "mahalanobis"),
                fit_data=train,
            ),
            "ood_",
        ),
    ],
    ids=["calibration", "ood_monitor"],
)
def test_monitoring_callbacks_log_the_single_device_numbers(
    two_devices, digits, make_callback, prefix
):
    train, test = digits
    single, distributed = single_and_distributed(
        two_devices, lambda: fit_logs(build(), digits, [make_callback(test, train)])
    )
    keys = [key for key in single if key.startswith(prefix)]
    assert keys
    assert_same_logs(single, distributed, keys + ["loss", "ece"])


@pytest.mark.parametrize("recipe", ["fgsm", "mix", *DRAWS_RANDOM])
def test_adversarial_training_logs_the_single_device_numbers(two_devices, digits, recipe):
    if BACKEND == "tensorflow" and recipe in DRAWS_RANDOM:
        pytest.skip("each TensorFlow replica draws its own noise (tested below)")
    _, (x_test, y_test) = digits

    def run():
        callback = kr.callbacks.AdversarialTrainingCallback(
            recipe,
            epsilon=0.1,
            recipe_options=RECIPE_OPTIONS.get(recipe),
            eval_data=(x_test[:128], y_test[:128]),
            seed=3,
        )
        return fit_logs(build(), digits, [callback])

    single, distributed = single_and_distributed(two_devices, run)
    keys = [key for key in single if key.startswith("adv_")]
    assert keys
    if recipe == "trades":
        # TRADES starts 0.001 from x, where the KL gradient whose sign it
        # steps along is ~1e-4: a sharded pass rounds differently and flips
        # the sign of about 1 entry in 4,000, each flip moving an input by a
        # whole step. The runs part slowly (loss 1e-4 apart after two epochs,
        # one of 128 evaluation examples changes), so only the loss is compared.
        assert_same_logs(single, distributed, ["loss"], rtol=1e-3)
        return
    # The recipes train on perturbed batches: the training loss agrees only
    # if every replica perturbs its share as one device would.
    assert_same_logs(single, distributed, keys + ["loss", "ece"])


@pytest.mark.skipif(BACKEND != "tensorflow", reason="per-replica draws are TensorFlow's")
def test_tensorflow_replicas_draw_their_own_noise(two_devices):
    import tensorflow as tf

    seen = []

    class RecordedNoise(kr.training.NoiseTraining):
        def perturb(self, x, labels, gradient, logits, seed):
            x_adv = super().perturb(x, labels, gradient, logits, seed)
            replica = tf.distribute.get_replica_context().replica_id_in_sync_group
            tf.py_function(
                lambda r, a, b: seen.append((int(r), b.numpy() - a.numpy())),
                [replica, x, x_adv],
                [],
            )
            return x_adv

    # Both replicas get the same 32 rows; correlated draws would perturb them alike.
    rows = np.random.default_rng(0).uniform(0.2, 0.8, size=(32, 64)).astype("float32")
    x, y = np.concatenate([rows, rows]), np.zeros(64, "int32")
    epsilon = 0.05
    with two_devices():
        model = build()
        model.fit(
            x,
            y,
            batch_size=64,
            epochs=1,
            verbose=0,
            callbacks=[
                kr.callbacks.AdversarialTrainingCallback(RecordedNoise(epsilon, (0, 1)), seed=1)
            ],
        )
    noise = dict(seen)
    assert sorted(noise) == [0, 1] and len(seen) == 2
    assert noise[0].shape == noise[1].shape == (32, 64)
    # Independent draws of N(0, epsilon^2) on each replica.
    for replica in (0, 1):
        assert np.std(noise[replica]) == pytest.approx(epsilon, rel=0.1)
    correlation = np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]
    assert abs(correlation) < 0.1


def _flipout():
    return kr.layers.DenseFlipout(10, kl_weight=1e-2, sample_at_inference=False)


def test_bayesian_kl_is_counted_once_per_step(two_devices, digits):
    _, (x_test, y_test) = digits

    def run():
        return build(_flipout).evaluate(x_test, y_test, verbose=0, return_dict=True)

    single, distributed = single_and_distributed(two_devices, run)
    # Posterior means at inference: the pass is deterministic, so the loss
    # (cross-entropy + KL) agrees only if the KL is added once, not per replica.
    assert distributed["loss"] == pytest.approx(single["loss"], rel=1e-5)
    logits = build(_flipout).predict(x_test, verbose=0)
    cross_entropy = float(
        keras.ops.convert_to_numpy(
            keras.losses.sparse_categorical_crossentropy(y_test, logits, from_logits=True)
        ).mean()
    )
    kl = single["loss"] - cross_entropy
    assert kl > 0.1  # the KL term is present in the evaluated loss


@pytest.mark.skipif(BACKEND != "jax", reason="TensorFlow replicas draw their own weights noise")
def test_bayesian_training_draws_what_one_device_draws(two_devices, digits):
    single, distributed = single_and_distributed(
        two_devices, lambda: fit_logs(build(_flipout), digits)
    )
    assert_same_logs(single, distributed, ["loss", "ece"])


def test_every_held_out_example_counts_with_uneven_sizes(two_devices, digits):
    """Held-out sets whose size two devices do not divide: no example is dropped."""
    _, (x_test, y_test) = digits
    x_odd, y_odd = x_test[:301], y_test[:301]

    def run():
        model = build()
        callbacks = [
            kr.callbacks.CalibrationCallback((x_odd, y_odd), max_samples=299),
            kr.callbacks.OODMonitorCallback(
                x_odd, ood_data=_uniform_noise(77), scorers=("msp", "energy")
            ),
        ]
        history = fit_logs(model, digits, callbacks)
        calibrated = kr.calibration.TemperatureScaling.calibrate(model, x_odd, y_odd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a deterministic model: one sample suffices
            uncertainty = kr.uncertainty.predict_with_uncertainty(model, x_odd[:101], 2)
        accuracy = kr.attacks.robust_accuracy(
            model,
            x_odd[:101],
            y_odd[:101],
            kr.attacks.FGSM(input_range=(0, 1)),
            epsilons=(0.0, 0.1),
        )
        return history, calibrated.layers[-1].temperature, uncertainty.mean, accuracy

    single, distributed = single_and_distributed(two_devices, run)
    assert_same_logs(single[0], distributed[0])
    assert distributed[1] == pytest.approx(single[1], rel=1e-5)
    assert distributed[2].shape == single[2].shape == (101, 10)
    np.testing.assert_allclose(distributed[2], single[2], atol=1e-6)
    assert distributed[3] == pytest.approx(single[3], abs=1e-9)
    # Counting the examples: accuracies are multiples of 1/101.
    assert single[3][0] * 101 == pytest.approx(round(single[3][0] * 101), abs=1e-6)


@pytest.mark.skipif(BACKEND != "jax", reason="tf.distribute splits uneven batches itself")
def test_batch_size_the_devices_cannot_split_fails_before_the_first_epoch(two_devices, digits):
    (x, y), test = digits
    for callback in (
        kr.callbacks.CalibrationCallback(test, batch_size=33),
        kr.callbacks.OODMonitorCallback(test[0], ood_data=_uniform_noise(64), batch_size=33),
    ):
        with two_devices():
            model = build()
            with pytest.raises(ValueError, match=r"`batch_size`=33 .* 2 devices"):
                model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
            # Refused at train begin: no step ran.
            assert int(model.optimizer.iterations.numpy()) == 0


def test_multi_input_passes_keep_every_example(two_devices):
    rng = np.random.default_rng(1)
    inputs = {"a": rng.normal(size=(51, 3)).astype("float32"), "b": rng.normal(size=(51, 2))}
    inputs["b"] = inputs["b"].astype("float32")

    def run():
        keras.utils.set_random_seed(0)
        a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
        model = keras.Model(
            {"a": a, "b": b}, keras.layers.Dense(4)(keras.layers.concatenate([a, b]))
        )
        one_row = {key: value[:1] for key, value in inputs.items()}
        return (
            kr.distributed.predict(model, inputs, batch_size=16),
            kr.distributed.predict(model, one_row, batch_size=16),
        )

    single, distributed = single_and_distributed(two_devices, run)
    for expected, got, rows in zip(single, distributed, (51, 1)):
        assert got.shape == expected.shape == (rows, 4)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="per-replica seeds are TensorFlow's")
def test_replica_seed_generator_gives_each_replica_its_own_stream(two_devices):
    import tensorflow as tf

    from keras_reliability import backend

    with two_devices():
        strategy = tf.distribute.get_strategy()
        ours = backend.replica_seed_generator(7)
        plain = keras.random.SeedGenerator(7)
        draws = strategy.run(
            tf.function(
                lambda: (
                    keras.random.normal((1000,), seed=ours),
                    keras.random.normal((1000,), seed=plain),
                )
            )
        )
        ours_0, ours_1 = (np.asarray(t) for t in strategy.experimental_local_results(draws[0]))
        plain_0, plain_1 = (np.asarray(t) for t in strategy.experimental_local_results(draws[1]))
    # Keras' own generator repeats one draw on every replica; ours does not,
    # and replica 0 keeps the single-device stream.
    np.testing.assert_array_equal(plain_0, plain_1)
    assert abs(np.corrcoef(ours_0, ours_1)[0, 1]) < 0.1
    np.testing.assert_array_equal(ours_0, plain_0)
    layer = kr.layers.DenseFlipout(4, seed=7)
    assert isinstance(layer.seed_generator, type(ours))
