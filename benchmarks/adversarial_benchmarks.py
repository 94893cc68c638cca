"""Adversarial-training benchmarks: each measurement is ours vs a reference, in one run.

- The epoch of `model.fit` with `AdversarialTrainingCallback` against the
  same plain epoch: FGSM-AT (one input gradient per step: goal <= 2.2x),
  FGSM-RS, PGD-k-AT (k input gradients: goal <= 1.1 (k + 1)x), and Free-AT
  with m replays against m plain epochs (one backward pass per replay: ~1x);
- our FGSM-AT against the Adversarial Robustness Toolbox's
  `AdversarialTrainer` with `FastGradientMethod` on the same Keras model and
  data (TensorFlow backend; skipped when ART is not installed; goal: ours
  >= 3x faster).

Epoch times come from one `fit` of several epochs (the first, which
compiles, is dropped); fits of the two sides alternate.
"""

import os
import time

import keras
import numpy as np
from calibration_benchmarks import _cnn
from calibration_benchmarks import _cnn_data
from timing import row

import keras_reliability as kr

EPSILON = 8 / 255


class _EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def _mnist_cnn():
    """Wong et al.'s MNIST CNN (two strided convolutions, 100 hidden units)."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 4, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def _mnist_data(num_examples, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(num_examples, 28, 28, 1)).astype("float32")
    return x, rng.integers(0, 10, size=num_examples).astype("int32")


WORKLOADS = {
    "resnet": (_cnn, _cnn_data, "32x32x3, ResNet-style CNN"),
    "mnist": (_mnist_cnn, _mnist_data, "28x28x1, Wong et al.'s MNIST CNN"),
}


def _compiled_cnn(workload="resnet"):
    keras.utils.set_random_seed(0)
    model = WORKLOADS[workload][0]()
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _epoch_seconds(x, y, batch_size, epochs, recipe=None, workload="resnet", **options):
    """Epoch times (without the first) of `fit` plainly or with a recipe."""
    model = _compiled_cnn(workload)
    timer = _EpochTimes()
    callbacks = [timer]
    if recipe is not None:
        callbacks.insert(
            0,
            kr.callbacks.AdversarialTrainingCallback(
                recipe, epsilon=EPSILON, input_range=(0, 1), recipe_options=options, seed=0
            ),
        )
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)
    return timer.seconds[1:]


def adversarial_step_cost(
    num_examples=50_000, batch_size=256, epochs=3, repeats=2, pgd_steps=10, replays=4
):
    """Epoch of fit with FGSM-AT, FGSM-RS, PGD-k-AT and Free-AT vs the plain epoch."""
    x, y = _cnn_data(num_examples)
    setups = {
        "plain": (None, {}),
        "fgsm": ("fgsm", {}),
        "fgsm_rs": ("fgsm_rs", {}),
        "pgd": ("pgd", {"steps": pgd_steps}),
        "free": ("free", {"replays": replays}),
    }
    seconds = {name: [] for name in setups}
    for _ in range(repeats):
        for name, (recipe, options) in setups.items():
            seconds[name].extend(_epoch_seconds(x, y, batch_size, epochs, recipe, **options))
    shape = f"{num_examples} x 32x32x3, batch {batch_size}, ResNet-style CNN"
    plain = seconds["plain"]
    pgd_goal = 1.1 * (pgd_steps + 1)
    return [
        row(
            "FGSM-AT epoch",
            shape,
            "plain fit epoch",
            seconds["fgsm"],
            plain,
            "<= 2.2",
            lambda ratio: ratio <= 2.2,
        ),
        row(
            "FGSM-RS-AT epoch",
            shape,
            "plain fit epoch",
            seconds["fgsm_rs"],
            plain,
            "<= 2.2",
            lambda ratio: ratio <= 2.2,
        ),
        row(
            f"PGD-{pgd_steps}-AT epoch",
            shape,
            "plain fit epoch",
            seconds["pgd"],
            plain,
            f"<= {pgd_goal:.1f}",
            lambda ratio: ratio <= pgd_goal,
        ),
        row(
            f"Free-AT epoch per replay (m = {replays})",
            shape,
            f"{replays} plain fit epochs",
            seconds["free"],
            [replays * s for s in plain],
            "~1 (<= 1.2)",
            lambda ratio: ratio <= 1.2,
        ),
    ]


def art_fgsm_training(num_examples=2_560, batch_size=256, epochs=3, repeats=2):
    """Our FGSM-AT epoch vs ART's AdversarialTrainer + FastGradientMethod epoch."""
    if keras.backend.backend() != "tensorflow":
        return None
    os.environ.setdefault("TQDM_DISABLE", "1")  # ART's progress bars
    try:
        from art.attacks.evasion import FastGradientMethod
        from art.defences.trainer import AdversarialTrainer
        from art.estimators.classification import TensorFlowV2Classifier
    except ImportError:
        print("- ART comparison skipped: pip install adversarial-robustness-toolbox")
        return None
    import tensorflow as tf

    def art_epochs(x, y, workload):
        model = _compiled_cnn(workload)
        optimizer = keras.optimizers.SGD(0.01)
        loss_object = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        @tf.function
        def train_step(model, images, labels):
            with tf.GradientTape() as tape:
                loss = loss_object(labels, model(images, training=True))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        classifier = TensorFlowV2Classifier(
            model=model,
            nb_classes=10,
            input_shape=x.shape[1:],
            loss_object=loss_object,
            train_step=train_step,
            clip_values=(0.0, 1.0),
        )
        attack = FastGradientMethod(classifier, eps=EPSILON, batch_size=batch_size)
        trainer = AdversarialTrainer(classifier, attack, ratio=1.0)
        seconds = []
        for _ in range(epochs):
            start = time.perf_counter()
            trainer.fit(x, y, nb_epochs=1, batch_size=batch_size)
            seconds.append(time.perf_counter() - start)
        return seconds[1:]

    results = []
    for workload, (_, data, description) in WORKLOADS.items():
        x, y = data(num_examples)
        ours, art = [], []
        for _ in range(repeats):
            ours.extend(_epoch_seconds(x, y, batch_size, epochs, "fgsm", workload))
            art.extend(art_epochs(x, y, workload))
        results.append(
            row(
                f"FGSM-AT epoch vs ART, {workload}",
                f"{num_examples} x {description}, batch {batch_size}",
                "ART AdversarialTrainer + FastGradientMethod (TensorFlowV2Classifier, "
                "tf.function train step)",
                ours,
                art,
                ">= 3 (speed-up)",
                lambda ratio: ratio >= 3,
                speed_up=True,
            )
        )
    return results


BENCHMARKS = [adversarial_step_cost, art_fgsm_training]
