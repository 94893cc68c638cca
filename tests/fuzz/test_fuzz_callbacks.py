"""Fuzz of the callbacks' arguments: a clear error before training starts.

Each callback documents that misconfigured data raises in `on_train_begin`,
before the first epoch, while plain arguments are checked by the
constructor. The property is therefore: constructing the callback and
running `on_train_begin` on a compiled model raises a ValueError or
TypeError naming the argument, at either stage. Valid configurations must
log the numbers of a float64 reference after an epoch (NLL, Brier, AUROC,
clean accuracy of a fixed linear model).
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_reliability.callbacks import (
    AdversarialTrainingCallback,
    CalibrationCallback,
    OODMonitorCallback,
)

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


DIM, NUM_CLASSES = 4, 3
RNG = np.random.default_rng(11)
W = RNG.normal(size=(DIM, NUM_CLASSES)).astype(np.float32)
B = RNG.normal(size=NUM_CLASSES).astype(np.float32)
X = RNG.uniform(size=(16, DIM)).astype(np.float32)
Y = np.arange(16) % NUM_CLASSES
X_OOD = RNG.uniform(2.0, 3.0, size=(8, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    inputs = keras.Input((DIM,))
    dense = keras.layers.Dense(NUM_CLASSES)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([W, B])
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def logits(x):
    return x.astype(np.float64) @ W + B


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def before_training(make, model):
    """Builds the callback and runs `on_train_begin` (undone by `on_train_end`)."""
    callback = make()
    callback.set_model(model)
    callback.on_train_begin()
    try:
        return callback
    finally:
        if isinstance(callback, AdversarialTrainingCallback):
            callback.on_train_end()


def check_every(fuzz, entry, argument, variants, make, model, failures):
    """Every invalid variant must raise a clear error; appends those that do not."""
    for kind, bad in variants.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                fuzz.clear_error(
                    entry,
                    argument,
                    lambda bad=bad: before_training(lambda: make(bad), model),
                )
        except AssertionError as error:
            failures.append(f"[{argument}: {kind}] {error}")


# Valid configurations equal the reference ----------------------------------------


@budget(6)
@given(size=st.sampled_from([4, 16]), every=st.sampled_from([1, 2]))
def test_calibration_callback_logs_reference_numbers(fuzz, model, size, every):
    x, y = X[:size], Y[:size]
    callback = before_training(
        lambda: CalibrationCallback((x, y), metrics=("nll", "brier"), every=every),
        model,
    )
    logs = {}
    callback.on_epoch_end(every - 1, logs)
    p = softmax(logits(x))
    expected = {
        "val_nll": -np.mean(np.log(p[np.arange(size), y])),
        "val_brier": np.mean((p - np.eye(NUM_CLASSES)[y]) ** 2),
    }
    fuzz.reference("CalibrationCallback", logs, expected, atol=1e-5)


@budget(6)
@given(size=st.sampled_from([4, 16]))
def test_ood_monitor_logs_reference_auroc(fuzz, model, size):
    callback = before_training(
        lambda: OODMonitorCallback(X[:size], ood_data=X_OOD, scorers=("msp",)), model
    )
    logs = {}
    callback.on_epoch_end(0, logs)
    scores_in = -softmax(logits(X[:size])).max(axis=1)
    scores_out = -softmax(logits(X_OOD)).max(axis=1)
    greater = (scores_out[None, :] > scores_in[:, None]).sum()
    ties = (scores_out[None, :] == scores_in[:, None]).sum()
    expected = (greater + 0.5 * ties) / (scores_in.size * scores_out.size)
    fuzz.reference("OODMonitorCallback", logs["ood_msp_auroc"], expected, atol=1e-6)


def test_adversarial_training_logs_reference_clean_accuracy(fuzz, model):
    callback = before_training(
        lambda: AdversarialTrainingCallback(
            "fgsm", epsilon=0.1, eval_data=(X, Y), eval_attacks=("fgsm",)
        ),
        model,
    )
    results = callback.evaluate()
    expected = np.mean(np.argmax(logits(X), axis=1) == Y)
    fuzz.reference(
        "AdversarialTrainingCallback",
        results["adv_clean_accuracy"],
        expected,
        atol=1e-12,
    )
    fuzz.invariant(
        "AdversarialTrainingCallback",
        0.0 <= results["adv_fgsm_accuracy"] <= expected + 1e-12,
        f"FGSM accuracy {results['adv_fgsm_accuracy']} above the clean accuracy {expected}",
    )


# Invalid arguments ---------------------------------------------------------------

FIRST = np.arange(len(Y)) == 0
BAD_DATA = {
    "None": None,
    "str": "abc",
    "int": 3,
    "tuple of one": (X,),
    "tuple of four": (X, Y, Y, Y),
    "length mismatch": (X, Y[:5]),
    "empty": (X[:0], Y[:0]),
    "str inputs": (np.full(X.shape, "a"), Y),
    "NaN inputs": (np.where(X > 0.9, np.nan, X), Y),
    "complex inputs": (X.astype(np.complex64), Y),
    "wrong width": (X[:, :3], Y),
    "rank 1 inputs": (X[:, 0], Y),
    "str labels": (X, np.full(len(Y), "a")),
    "negative label": (X, np.where(FIRST, -1, Y)),
    "label = num_classes": (X, np.where(FIRST, NUM_CLASSES, Y)),
    "non-integer label": (X, np.where(FIRST, 0.5, Y)),
    "soft labels": (X, np.full((len(Y), NUM_CLASSES), 1 / NUM_CLASSES)),
}
BAD_INTEGERS = {"0": 0, "negative": -1, "float": 2.5, "str": "2", "bool": True}


def test_calibration_callback_invalid_arguments(fuzz, model):
    failures = []
    entry = "CalibrationCallback"

    check_every(
        fuzz,
        entry,
        "validation_data",
        BAD_DATA
        | {
            "list": [X, Y],
            "negative weights": (X, Y, -np.ones(len(Y))),
            "short weights": (X, Y, np.ones(3)),
        },
        lambda bad: CalibrationCallback(bad),
        model,
        failures,
    )
    for argument, variants in {
        "num_bins": BAD_INTEGERS | {"None": None},
        "metrics": {"str": "ece", "None": None, "int": [3], "None in": [None]},
        "every": BAD_INTEGERS | {"None": None},
        "plot_every": BAD_INTEGERS,
        "max_samples": BAD_INTEGERS,
        "batch_size": BAD_INTEGERS,
        "from_logits": {"str": "yes", "int": 1},
    }.items():
        check_every(
            fuzz,
            entry,
            argument,
            variants,
            lambda bad, argument=argument: CalibrationCallback(
                (X, Y), **{argument: bad}
            ),
            model,
            failures,
        )
    check_every(
        fuzz,
        entry,
        "log_dir",
        {"missing with plot_every": None},
        lambda bad: CalibrationCallback((X, Y), plot_every=1, log_dir=bad),
        model,
        failures,
    )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "argument, bad", [("prefix", None), ("prefix", 3), ("metrics", ["nope"])]
)
def test_calibration_callback_unchecked_arguments(fuzz, model, argument, bad):
    fuzz.clear_error(
        "CalibrationCallback",
        argument,
        lambda: before_training(
            lambda: CalibrationCallback((X, Y), **{argument: bad}), model
        ),
    )


def test_ood_monitor_invalid_arguments(fuzz, model):
    failures = []
    entry = "OODMonitorCallback"
    inputs_only = {
        k: v
        for k, v in BAD_DATA.items()
        if "label" not in k and "mismatch" not in k and "tuple" not in k
    }
    check_every(
        fuzz,
        entry,
        "in_data",
        {k: v for k, v in inputs_only.items() if k != "complex inputs"},
        lambda bad: OODMonitorCallback(bad, ood_data=X_OOD, scorers=("msp",)),
        model,
        failures,
    )
    check_every(
        fuzz,
        entry,
        "ood_data",
        {k: v for k, v in inputs_only.items() if k not in ("None", "complex inputs")}
        | {"empty dict": {}},
        lambda bad: OODMonitorCallback(X, ood_data=bad, scorers=("msp",)),
        model,
        failures,
    )
    check_every(
        fuzz,
        entry,
        "fit_data",
        {
            k: v
            for k, v in BAD_DATA.items()
            if "label" not in k and k != "complex inputs"
        },
        lambda bad: OODMonitorCallback(
            X, ood_data=X_OOD, scorers=("mahalanobis",), fit_data=bad
        ),
        model,
        failures,
    )
    for argument, variants in {
        "scorers": {"str": "msp", "None": None, "empty": [], "twice": ["msp", "msp"]},
        "every": BAD_INTEGERS | {"None": None},
        "plot_every": BAD_INTEGERS,
        "max_samples": BAD_INTEGERS,
        "batch_size": BAD_INTEGERS,
    }.items():
        check_every(
            fuzz,
            entry,
            argument,
            variants,
            lambda bad, argument=argument: OODMonitorCallback(
                X, ood_data=X_OOD, **{argument: bad}
            ),
            model,
            failures,
        )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "argument, bad",
    [
        ("synthetic_severity", 0),
        ("synthetic_severity", "a"),
        ("prefix", None),
        ("in_data", X.astype(np.complex64)),
        ("ood_data", X.astype(np.complex64)),
        ("fit_data", (X.astype(np.complex64), Y)),
        ("fit_data", (X, np.where(FIRST, -1, Y))),
        ("fit_data", (X, np.full(len(Y), "a"))),
        ("scorers", ["nope"]),
        ("scorers", [3]),
        ("scorers", [None]),
    ],
)
def test_ood_monitor_unchecked_arguments(fuzz, model, argument, bad):
    arguments = {"in_data": X, "ood_data": X_OOD} | {argument: bad}
    if argument == "fit_data":
        arguments["scorers"] = ("mahalanobis",)
    fuzz.clear_error(
        "OODMonitorCallback",
        argument,
        lambda: before_training(lambda: OODMonitorCallback(**arguments), model),
    )


def test_adversarial_training_invalid_arguments(fuzz, model):
    failures = []
    entry = "AdversarialTrainingCallback"
    check_every(
        fuzz,
        entry,
        "eval_data",
        {
            k: v
            for k, v in BAD_DATA.items()
            if k not in ("None", "str inputs", "complex inputs")
        }
        | {"list": [X, Y]},
        lambda bad: AdversarialTrainingCallback("fgsm", eval_data=bad),
        model,
        failures,
    )
    numbers = {"negative": -1.0, "str": "a", "NaN": np.nan, "bool": True}
    for argument, variants in {
        "recipe": {"None": None, "int": 3},
        "epsilon": numbers | {"None": None},
        "input_range": {"None": None, "reversed": (1, 0), "str": "ab", "one": (0,)},
        "eval_attacks": {"str": "fgsm", "int": 3},
        "eval_every": BAD_INTEGERS,
        "max_eval_samples": BAD_INTEGERS,
    }.items():
        check_every(
            fuzz,
            entry,
            argument,
            variants,
            lambda bad, argument=argument: AdversarialTrainingCallback(
                **{argument: bad}
            ),
            model,
            failures,
        )
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "argument, bad",
    [
        ("recipe_options", "a"),
        ("recipe_options", 3),
        ("recipe_options", {"nope": 1}),
        ("seed", -1),
        ("prefix", None),
        ("eval_data", (np.full(X.shape, "a"), Y)),
        ("eval_data", (X.astype(np.complex64), Y)),
        ("recipe", "nope"),
        ("recipe", ""),
        ("eval_attacks", ["nope"]),
        ("eval_attacks", [None]),
        ("eval_epsilon", -1.0),
        ("eval_epsilon", "a"),
        ("eval_epsilon", np.nan),
    ],
)
def test_adversarial_training_unchecked_arguments(fuzz, model, argument, bad):
    fuzz.clear_error(
        "AdversarialTrainingCallback",
        argument,
        lambda: before_training(
            lambda: AdversarialTrainingCallback(**{argument: bad}), model
        ),
    )
