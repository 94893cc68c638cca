"""Fuzz of the attacks' `generate` and of `robust_accuracy`.

The target is a fixed linear classifier `z = x W + b` (float32), whose
cross-entropy gradient has the closed form `(softmax(z) - onehot(y)) W^T`.
FGSM and PGD without random start are then deterministic functions of it:
the reference repeats their steps in float64. A gradient component within
1e-4 of zero could take the other sign in float32, so such draws are
discarded; the adversarial inputs then agree to 1e-5. APGD and Square Attack
are randomised searches without a closed form: their outputs must lie in
the epsilon-ball around `x` and inside `input_range`, with the shape of `x`
(an invariant, counted apart).
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_reliability import attacks

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


DIM, NUM_CLASSES = 4, 3
NUM_EXAMPLES = (1, 5)
RNG = np.random.default_rng(7)
W = RNG.normal(size=(DIM, NUM_CLASSES)).astype(np.float32)
B = RNG.normal(size=NUM_CLASSES).astype(np.float32)
MARGIN = 1e-4


def linear_model():
    inputs = keras.Input((DIM,))
    dense = keras.layers.Dense(NUM_CLASSES)
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([W, B])
    return model


@pytest.fixture(scope="module")
def model():
    return linear_model()


def gradient(x, labels):
    z = x @ W.astype(np.float64) + B
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (p - np.eye(NUM_CLASSES)[labels]) @ W.T.astype(np.float64)


def predict(x):
    return np.argmax(x @ W.astype(np.float64) + B, axis=1)


def inputs_and_labels():
    return st.sampled_from(NUM_EXAMPLES).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, (n, DIM), elements=st.floats(0.0, 1.0, width=32)),
            hnp.arrays(np.int64, n, elements=st.integers(0, NUM_CLASSES - 1)),
        )
    )


def reference_pgd(x, labels, epsilon, steps, step_size, norm, columns=slice(None)):
    """PGD from x without random start; None when a step is ambiguous in float32.

    Only `columns` of `x` are perturbed (one input of a two-input model).
    """
    x = x.astype(np.float64)
    adversarial = x.copy()
    for _ in range(steps):
        g = gradient(adversarial, labels)[:, columns]
        if norm == "linf":
            if np.any(np.abs(g) < MARGIN):
                return None
            direction = np.sign(g)
        else:
            norms = np.linalg.norm(g, axis=1, keepdims=True)
            if np.any(norms < MARGIN):
                return None
            direction = g / norms
        adversarial = adversarial.copy()
        adversarial[:, columns] += step_size * direction
        delta = adversarial - x
        if norm == "linf":
            delta = np.clip(delta, -epsilon, epsilon)
        else:
            delta = delta * np.minimum(
                1.0,
                epsilon
                / np.maximum(np.linalg.norm(delta, axis=1, keepdims=True), 1e-12),
            )
        unclipped = x + delta
        # A coordinate on the box boundary may go either way in float32.
        near = np.abs(unclipped) < MARGIN
        near |= np.abs(unclipped - 1.0) < MARGIN
        if np.any(near & (np.abs(delta) > 0)):
            return None
        adversarial = np.clip(unclipped, 0.0, 1.0)
    return adversarial


@budget(15)
@given(data=inputs_and_labels(), epsilon=st.sampled_from([0.0, 0.05, 0.3]))
def test_fgsm_equals_reference(fuzz, model, data, epsilon):
    x, labels = data
    expected = reference_pgd(x, labels, epsilon, 1, epsilon, "linf")
    assume(expected is not None)
    actual = attacks.FGSM(epsilon=epsilon, input_range=(0, 1)).generate(
        model, x, labels
    )
    fuzz.reference("FGSM.generate", actual, expected, atol=1e-5)


@budget(15)
@given(
    data=inputs_and_labels(),
    epsilon=st.sampled_from([0.05, 0.3]),
    steps=st.integers(1, 3),
    norm=st.sampled_from(["linf", "l2"]),
    step_fraction=st.sampled_from([None, 0.5, 1.0]),
)
def test_pgd_without_random_start_equals_reference(
    fuzz, model, data, epsilon, steps, norm, step_fraction
):
    x, labels = data
    step_size = None if step_fraction is None else step_fraction * epsilon
    effective = 2.5 * epsilon / steps if step_size is None else step_size
    expected = reference_pgd(x, labels, epsilon, steps, effective, norm)
    assume(expected is not None)
    attack = attacks.PGD(
        epsilon=epsilon,
        steps=steps,
        step_size=step_size,
        norm=norm,
        random_start=False,
        input_range=(0, 1),
    )
    fuzz.reference(
        "PGD.generate", attack.generate(model, x, labels), expected, atol=1e-5
    )


SPLIT = 1  # the two-input model's first input holds the first SPLIT columns


def two_input_model():
    first, second = keras.Input((SPLIT,), name="first"), keras.Input((DIM - SPLIT,), name="second")
    dense = keras.layers.Dense(NUM_CLASSES)
    model = keras.Model([first, second], dense(keras.layers.Concatenate()([first, second])))
    dense.set_weights([W, B])
    return model


@pytest.fixture(scope="module")
def two_inputs():
    return two_input_model()


@budget(15)
@given(
    data=inputs_and_labels(),
    epsilon=st.sampled_from([0.05, 0.3]),
    steps=st.integers(1, 2),
    norm=st.sampled_from(["linf", "l2"]),
    chosen=st.sampled_from([0, 1, "first", "second"]),
)
def test_pgd_on_one_input_of_two_equals_reference(fuzz, two_inputs, data, epsilon, steps,
                                                   norm, chosen):
    x, labels = data
    columns = slice(0, SPLIT) if chosen in (0, "first") else slice(SPLIT, DIM)
    expected = reference_pgd(x, labels, epsilon, steps, epsilon / 2, norm, columns)
    assume(expected is not None)
    attack = attacks.PGD(
        epsilon=epsilon, steps=steps, step_size=epsilon / 2, norm=norm,
        random_start=False, input_range=(0, 1),
    )
    actual = attack.generate(two_inputs, [x[:, :SPLIT], x[:, SPLIT:]], labels, inputs=chosen)
    fuzz.reference("PGD.generate", np.concatenate(actual, axis=1), expected, atol=1e-5)


def test_invalid_inputs_argument_raises_clear_error(fuzz, model, two_inputs):
    x = [X[:, :SPLIT], X[:, SPLIT:]]
    fuzz.check_every(
        "FGSM.generate",
        "inputs",
        {"None": None, "unknown name": "nope", "index": 2, "float": 0.5, "list": [0]},
        lambda bad: attacks.FGSM(0.1, input_range=(0, 1)).generate(
            two_inputs, x, Y, inputs=bad
        ),
    )
    fuzz.check_every(
        "FGSM.generate",
        "inputs",
        {"unknown name": "nope", "index": 1},
        lambda bad: attacks.FGSM(0.1, input_range=(0, 1)).generate(model, X, Y, inputs=bad),
    )
    fuzz.check_every(
        "robust_accuracy",
        "inputs",
        {"None": None, "unknown name": "nope"},
        lambda bad: attacks.robust_accuracy(
            two_inputs, x, Y, attacks.FGSM(0.1, input_range=(0, 1)), [0.1], inputs=bad
        ),
    )


def in_ball_and_range(x, adversarial, epsilon, norm):
    x, adversarial = x.astype(np.float64), adversarial.astype(np.float64)
    delta = (adversarial - x).reshape(len(x), -1)
    size = (
        np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    )
    return (
        adversarial.shape == x.shape
        and np.all(size <= epsilon * (1 + 1e-5) + 1e-6)
        and adversarial.min() >= 0.0
        and adversarial.max() <= 1.0
    )


@budget(6)
@given(
    data=inputs_and_labels(),
    epsilon=st.sampled_from([0.0, 0.1, 0.5]),
    norm=st.sampled_from(["linf", "l2"]),
    random_start=st.booleans(),
    seed=st.integers(0, 100),
)
def test_apgd_stays_in_ball_and_range(
    fuzz, model, data, epsilon, norm, random_start, seed
):
    x, labels = data
    attack = attacks.APGD(
        epsilon=epsilon,
        steps=4,
        norm=norm,
        random_start=random_start,
        input_range=(0, 1),
        seed=seed,
    )
    adversarial = attack.generate(model, x, labels)
    fuzz.invariant(
        "APGD.generate",
        in_ball_and_range(x, adversarial, epsilon, norm),
        f"outside the {norm} ball of radius {epsilon} or [0, 1]",
    )
    if epsilon == 0:
        fuzz.reference("APGD.generate", adversarial, x, atol=0.0)


@pytest.fixture(scope="module")
def image_model():
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    dense = keras.layers.Dense(NUM_CLASSES)
    model = keras.Model(inputs, dense(flat))
    dense.set_weights([RNG.normal(size=(16, NUM_CLASSES)).astype(np.float32), B])
    return model


@budget(3)
@given(
    x=hnp.arrays(np.float32, (2, 4, 4, 1), elements=st.floats(0.0, 1.0, width=32)),
    epsilon=st.sampled_from([0.0, 0.1, 0.4]),
    seed=st.integers(0, 100),
)
def test_square_attack_stays_in_ball_and_range(fuzz, image_model, x, epsilon, seed):
    if keras.config.image_data_format() != "channels_last":
        pytest.skip("the image model is channels-last")
    labels = np.arange(len(x)) % NUM_CLASSES
    attack = attacks.SquareAttack(
        epsilon=epsilon, queries=4, input_range=(0, 1), seed=seed
    )
    adversarial = attack.generate(image_model, x, labels)
    fuzz.invariant(
        "SquareAttack.generate",
        in_ball_and_range(x, adversarial, epsilon, "linf"),
        f"outside the L-inf ball of radius {epsilon} or [0, 1]",
    )


@budget(10)
@given(
    data=inputs_and_labels(),
    epsilons=st.lists(
        st.sampled_from([0.0, 0.05, 0.3]), min_size=1, max_size=3, unique=True
    ),
)
def test_robust_accuracy_equals_reference(fuzz, model, data, epsilons):
    x, labels = data
    expected = {}
    for epsilon in epsilons:
        adversarial = (
            reference_pgd(x, labels, epsilon, 1, epsilon, "linf") if epsilon else x
        )
        assume(adversarial is not None)
        expected[epsilon] = float(
            np.mean(predict(adversarial.astype(np.float64)) == labels)
        )
    actual = attacks.robust_accuracy(
        model, x, labels, attacks.FGSM(input_range=(0, 1)), epsilons
    )
    fuzz.reference("robust_accuracy", actual, expected, atol=1e-12)


# Invalid inputs ------------------------------------------------------------------

ATTACKS = {
    "FGSM": lambda **kw: attacks.FGSM(input_range=(0, 1), **kw),
    "PGD": lambda **kw: attacks.PGD(input_range=(0, 1), steps=2, **kw),
    "APGD": lambda **kw: attacks.APGD(input_range=(0, 1), steps=2, **kw),
}
X = RNG.uniform(size=(6, DIM)).astype(np.float32)
Y = np.arange(6) % NUM_CLASSES


def early_bad_inputs():
    """`x` refused by attack.py's own input checks, before any forward pass."""
    return {
        "None": None,
        "str array": np.full(X.shape, "a"),
        "complex": X.astype(np.complex64),
        "int": (X * 10).astype(np.int64),
        "bool": X > 0.5,
        "rank 1": X[0],
        "empty": X[:0],
        "NaN": np.where(X > 0.9, np.nan, X),
        "dict": {"x": X},
        "list of two": [X, X],
    }


def bad_labels():
    first = np.arange(len(Y)) == 0
    return {
        "None": None,
        "negative": np.where(first, -1, Y),
        "= num_classes": np.where(first, NUM_CLASSES, Y),
        "non-integer": np.where(first, 0.5, Y),
        "str": np.full(len(Y), "a"),
        "soft": np.full((len(Y), NUM_CLASSES), 1 / NUM_CLASSES),
        "one-hot too wide": np.eye(NUM_CLASSES + 1)[Y],
        "too short": Y[:2],
    }


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_generate_invalid_arguments_raise_clear_error(fuzz, model, name):
    attack = ATTACKS[name]()
    entry = f"{name}.generate"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fuzz.check_every(
            entry, "model", fuzz.not_models(), lambda bad: attack.generate(bad, X, Y)
        )
        fuzz.check_every(
            entry,
            "x",
            early_bad_inputs(),
            lambda bad: attack.generate(model, bad, Y),
        )
        fuzz.check_every(
            entry, "y", bad_labels(), lambda bad: attack.generate(model, X, bad)
        )


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_generate_wrongly_shaped_inputs_raise_clear_error(fuzz, name):
    # A model of its own: on JAX a forward pass on a wrongly shaped input
    # can leave a model unusable (Keras), so the attack must refuse it first.
    model = linear_model()
    fuzz.check_every(
        f"{name}.generate",
        "x",
        {"rank 3": X[None], "wrong width": X[:, :3]},
        lambda bad: ATTACKS[name]().generate(model, bad, Y[: len(bad)]),
    )
    fuzz.invariant(
        f"{name}.generate",
        model.predict(X, verbose=0).shape == (len(X), NUM_CLASSES),
        "the model no longer works after the refused inputs",
    )


def test_generate_complex_labels_raise_clear_error(fuzz, model):
    fuzz.clear_error(
        "FGSM.generate",
        "y",
        lambda: ATTACKS["FGSM"]().generate(model, X, Y.astype(complex)),
    )


def test_attack_constructor_arguments_raise_clear_error(fuzz):
    numbers = {
        "negative": -1.0,
        "str": "1",
        "None": None,
        "NaN": np.nan,
        "inf": np.inf,
        "bool": True,
        "list": [1.0],
    }
    integers = {
        "0": 0,
        "negative": -1,
        "float": 2.5,
        "str": "2",
        "None": None,
        "bool": True,
    }
    ranges = {
        "reversed": (1, 0),
        "one": (0,),
        "str": "ab",
        "inf": (0, np.inf),
        "NaN": (np.nan, 1),
        "int": 3,
    }
    cases = [
        ("FGSM", "epsilon", lambda v: attacks.FGSM(epsilon=v), numbers),
        ("FGSM", "input_range", lambda v: attacks.FGSM(input_range=v), ranges),
        ("FGSM", "batch_size", lambda v: attacks.FGSM(batch_size=v), integers),
        ("PGD", "steps", lambda v: attacks.PGD(steps=v), integers),
        (
            "PGD",
            "step_size",
            lambda v: attacks.PGD(step_size=v),
            {k: v for k, v in numbers.items() if k != "None"} | {"0": 0.0},
        ),
        (
            "PGD",
            "norm",
            lambda v: attacks.PGD(norm=v),
            {"unknown": "l1", "None": None, "int": 2},
        ),
        ("PGD", "restarts", lambda v: attacks.PGD(restarts=v), integers),
        ("APGD", "steps", lambda v: attacks.APGD(steps=v), integers),
        (
            "APGD",
            "rho",
            lambda v: attacks.APGD(rho=v),
            numbers | {"0": 0.0, "above 1": 1.5},
        ),
        (
            "APGD",
            "norm",
            lambda v: attacks.APGD(norm=v),
            {"unknown": "l1", "None": None},
        ),
        (
            "SquareAttack",
            "queries",
            lambda v: attacks.SquareAttack(queries=v),
            integers,
        ),
        (
            "SquareAttack",
            "p_init",
            lambda v: attacks.SquareAttack(p_init=v),
            numbers | {"0": 0.0, "above 1": 1.5},
        ),
        ("FGSM", "seed", lambda v: attacks.FGSM(seed=v), {"str": "abc", "float": 2.5}),
    ]
    for owner, argument, make, variants in cases:
        fuzz.check_every(owner, argument, variants, make)


def test_attack_negative_seed_raises_clear_error(fuzz):
    fuzz.clear_error("FGSM", "seed", lambda: attacks.FGSM(seed=-1))


def test_robust_accuracy_invalid_arguments_raise_clear_error(fuzz, model):
    attack = attacks.FGSM(input_range=(0, 1))
    fuzz.check_every(
        "robust_accuracy",
        "model",
        fuzz.not_models(),
        lambda bad: attacks.robust_accuracy(bad, X, Y, attack, [0.1]),
    )
    fuzz.check_every(
        "robust_accuracy",
        "x",
        {"None": None, "rank 3": X[None], "wrong width": X[:, :3], "rank 1": X[0]},
        lambda bad: attacks.robust_accuracy(model, bad, Y, attack, [0.1]),
    )
    fuzz.check_every(
        "robust_accuracy",
        "y",
        bad_labels(),
        lambda bad: attacks.robust_accuracy(model, X, bad, attack, [0.1]),
    )
    fuzz.check_every(
        "robust_accuracy",
        "epsilons",
        {"empty": [], "number": 0.1},
        lambda bad: attacks.robust_accuracy(model, X, Y, attack, bad),
    )


@pytest.mark.parametrize(
    "kind, bad",
    [
        ("negative", [-0.1]),
        ("NaN", [np.nan]),
        ("str list", ["a"]),
        ("str", "abc"),
        ("None", None),
    ],
)
def test_robust_accuracy_invalid_budgets_raise_clear_error(fuzz, model, kind, bad):
    fuzz.clear_error(
        "robust_accuracy",
        "epsilons",
        lambda: attacks.robust_accuracy(
            model, X, Y, attacks.FGSM(input_range=(0, 1)), bad
        ),
    )


@pytest.mark.parametrize("kind, bad", [("None", None), ("unknown", "foo"), ("int", 3)])
def test_robust_accuracy_invalid_attack_raises_clear_error(fuzz, model, kind, bad):
    fuzz.clear_error(
        "robust_accuracy",
        "attack",
        lambda: attacks.robust_accuracy(model, X, Y, bad, [0.1]),
    )


@pytest.mark.parametrize("kind", ["empty", "str array", "NaN", "dict"])
def test_robust_accuracy_unchecked_inputs_raise_clear_error(fuzz, kind):
    bad = early_bad_inputs()[kind]
    fuzz.clear_error(
        "robust_accuracy",
        "x",
        lambda: attacks.robust_accuracy(
            linear_model(), bad, Y, attacks.FGSM(input_range=(0, 1)), [0.1]
        ),
    )
