"""FGSM, PGD and robust accuracy on a small digits classifier.

The classifier is a 64-32-10 ReLU MLP on scikit-learn's digits (8x8 images
scaled to [0, 1]); its weights come from scikit-learn's `MLPClassifier`, so
the same model loads on every backend in about a second. FGSM is checked
against a direct computation whose input gradient comes from the backend's
own autodiff (`tf.GradientTape`, `jax.grad`, `torch.autograd`), PGD against
its budget, its determinism, its seed and its restart rule, and every
argument check against its message.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability import registry
from keras_reliability.attacks import Attack
from keras_reliability.attacks import FGSM
from keras_reliability.attacks import PGD
from keras_reliability.attacks import robust_accuracy
from keras_reliability.attacks.attack import cross_entropy

BACKEND = keras.backend.backend()
NUM_CLASSES = 10
HIDDEN = 32
RANGE = (0.0, 1.0)
# Float32 slack of the budget checks.
ATOL = 1e-6


# ----------------------------------------------------------------- helpers


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def losses_and_fooled(model, x, y):
    """Per-example cross-entropy (float64) and misclassification of `model` on `x`."""
    logits = np.asarray(model.predict(x, verbose=0), np.float64)
    loss = -np_log_softmax(logits)[np.arange(len(y)), y]
    return loss, logits.argmax(axis=1) != y


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def reference_gradient(model, x, y):
    """Gradient of sum_i CE(softmax(model(x_i)), y_i) w.r.t. x, by the backend's autodiff."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            logits = model(inputs, training=False)
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.constant(y), logits=logits)
            )
        return tape.gradient(loss, inputs).numpy()
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        labels = jnp.asarray(y)

        def loss(inputs):
            log_probs = jax.nn.log_softmax(model(inputs, training=False), axis=-1)
            return -jnp.sum(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))

        return np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(x)))
    if BACKEND == "torch":
        import torch

        inputs = ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        labels = torch.as_tensor(y, dtype=torch.long, device=inputs.device)
        with torch.enable_grad():
            logits = model(inputs, training=False)
            loss = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
            (gradient,) = torch.autograd.grad(loss, inputs)
        return gradient.detach().cpu().numpy()
    pytest.skip(f"no reference input gradient for backend {BACKEND!r}")


def assert_same_sign_steps(actual, expected, gradient):
    """Sign steps agree, except where the gradient is at rounding level.

    Two correct computations of one gradient (compiled and eager, or through
    logits recovered from a softmax) may differ in the last bits, which flips
    the sign of coordinates whose gradient is ~0; nowhere else.
    """
    actual = np.asarray(actual)
    assert actual.shape == expected.shape
    scale = np.abs(gradient).reshape(len(gradient), -1).max(axis=1)
    tiny = np.abs(gradient) <= 1e-4 * scale.reshape((-1,) + (1,) * (gradient.ndim - 1))
    close = np.isclose(actual, expected, rtol=0, atol=ATOL)
    assert np.all(close | tiny), f"{np.sum(~close & ~tiny)} coordinates differ"
    assert np.mean(close) > 0.99


def linf(a, b):
    return np.abs(np.asarray(a, np.float64) - b).reshape(len(a), -1).max(axis=1)


def l2(a, b):
    return np.sqrt(np.square(np.asarray(a, np.float64) - b).reshape(len(a), -1).sum(axis=1))


def library_warnings(record, owner):
    return [str(w.message) for w in record if str(w.message).startswith(f"{owner}:")]


def build_mlp(kind="linear"):
    """The 64-32-10 MLP: "linear" (logits), "softmax" (softmax on the last
    Dense), "image" (takes (8, 8, 1) images and flattens them), "zero_grad"
    (a stop_gradient between the hidden and the output layer)."""
    if kind == "image":
        layers = [keras.Input((8, 8, 1)), keras.layers.Flatten()]
    else:
        layers = [keras.Input((64,))]
    layers.append(keras.layers.Dense(HIDDEN, activation="relu", name="hidden"))
    if kind == "zero_grad":
        layers.append(keras.layers.Lambda(lambda t: ops.stop_gradient(t), name="stop"))
    activation = "softmax" if kind == "softmax" else None
    layers.append(keras.layers.Dense(NUM_CLASSES, activation=activation, name="classifier"))
    return keras.Sequential(layers, name=f"{kind}_mlp")


def with_weights(model, weights):
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    for layer, start in zip(dense, range(0, len(weights), 2)):
        layer.set_weights(weights[start : start + 2])
    return model


class SoftmaxInCall(keras.Model):
    """Subclassed MLP whose `call` ends in a softmax: no logits to recover."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(HIDDEN, activation="relu")
        self.classifier = keras.layers.Dense(NUM_CLASSES)

    def call(self, inputs):
        return ops.softmax(self.classifier(self.hidden(inputs)), axis=-1)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(digits_split):
    """`(x_train, y_train, x_test, y_test)`: digits as flat 64-vectors in [0, 1]."""
    return digits_split


@pytest.fixture(scope="module")
def weights(digits_mlp_weights):
    """Trained MLP weights `[W1, b1, W2, b2]`."""
    return digits_mlp_weights


@pytest.fixture(scope="module")
def model(weights, data):
    """The trained MLP ending in a linear Dense (logits)."""
    built = with_weights(build_mlp("linear"), weights)
    assert accuracy(built, data[2], data[3]) > 0.9
    return built


@pytest.fixture(scope="module")
def x(data):
    return data[2]


@pytest.fixture(scope="module")
def y(data):
    return data[3]


@pytest.fixture(scope="module")
def fgsm():
    """One FGSM(0.1) shared by the tests that attack `model` with it: an
    attack compiles its gradient function once per model, so sharing saves
    a compilation per test (FGSM has no state between calls)."""
    return FGSM(0.1, input_range=RANGE)


@pytest.fixture(scope="module")
def fgsm_adv(fgsm, model, x, y):
    """FGSM(0.1) adversarial examples of the test inputs for `model`."""
    return fgsm.generate(model, x, y)


@pytest.fixture(scope="module")
def gradient(model, x, y):
    """The reference input gradient of the cross-entropy at the test inputs."""
    return reference_gradient(model, x, y)


# ------------------------------------------------------------ budget checks


@pytest.mark.parametrize("epsilon", [0.03, 0.3])
def test_fgsm_stays_in_linf_ball_and_input_range(model, x, y, epsilon):
    x_adv = FGSM(epsilon, input_range=RANGE).generate(model, x, y)
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert np.all(linf(x_adv, x) <= epsilon + ATOL)
    assert x_adv.min() >= RANGE[0] and x_adv.max() <= RANGE[1]
    # Every value moves by exactly epsilon unless the range stops it.
    moved = np.abs(x_adv - x)
    free = (x + epsilon <= RANGE[1]) & (x - epsilon >= RANGE[0])
    assert free.sum() > 100
    assert np.allclose(moved[free], epsilon, atol=ATOL)


# Every pair of (epsilon, random_start, restarts) values occurs once.
PAIRWISE = [(0, True, 1), (0, False, 3), (1, True, 3), (1, False, 1)]


@pytest.mark.parametrize(
    "epsilon, random_start, restarts", [((0.05, 0.3)[e], r, n) for e, r, n in PAIRWISE]
)
def test_pgd_linf_stays_in_ball_and_input_range(model, x, y, epsilon, random_start, restarts):
    attack = PGD(
        epsilon,
        steps=3,
        random_start=random_start,
        restarts=restarts,
        input_range=RANGE,
        seed=1,
    )
    x_adv = attack.generate(model, x, y)
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert np.all(linf(x_adv, x) <= epsilon + ATOL)
    assert x_adv.min() >= RANGE[0] and x_adv.max() <= RANGE[1]
    # It actually uses the budget: the largest move reaches epsilon.
    assert linf(x_adv, x).max() >= epsilon - ATOL
    assert accuracy(model, x_adv, y) < accuracy(model, x, y)


@pytest.mark.parametrize(
    "epsilon, random_start, restarts", [((0.5, 2.0)[e], r, n) for e, r, n in PAIRWISE]
)
def test_pgd_l2_stays_in_ball_and_input_range(model, x, y, epsilon, random_start, restarts):
    attack = PGD(
        epsilon,
        steps=3,
        norm="l2",
        random_start=random_start,
        restarts=restarts,
        input_range=RANGE,
        seed=2,
    )
    x_adv = attack.generate(model, x, y)
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    distances = l2(x_adv, x)
    assert np.all(distances <= epsilon * (1 + 1e-5) + ATOL), distances.max()
    assert x_adv.min() >= RANGE[0] and x_adv.max() <= RANGE[1]
    assert distances.max() >= 0.5 * epsilon
    assert accuracy(model, x_adv, y) < accuracy(model, x, y)


def test_zero_budget_returns_the_inputs(model, x, y):
    for attack in (FGSM(0.0, input_range=RANGE), PGD(0.0, input_range=RANGE, seed=0)):
        np.testing.assert_array_equal(attack.generate(model, x, y), x)


# ------------------------------------------------------- exact computations


def test_fgsm_equals_direct_computation(fgsm_adv, x, gradient):
    expected = np.clip(x + 0.1 * np.sign(gradient), *RANGE)
    assert_same_sign_steps(fgsm_adv, expected, gradient)


def test_fgsm_is_batch_size_independent_and_accepts_one_hot(fgsm, fgsm_adv, model, x, y, gradient):
    batched = FGSM(0.1, input_range=RANGE, batch_size=48).generate(model, x, y)
    one_hot = fgsm.generate(model, x, np.eye(NUM_CLASSES)[y])
    column = fgsm.generate(model, x, y.reshape(-1, 1))
    for other in (batched, one_hot, column):
        assert_same_sign_steps(other, fgsm_adv, gradient)


def test_pgd_single_step_without_random_start_is_fgsm(fgsm_adv, model, x, y):
    pgd = PGD(0.1, steps=1, step_size=0.1, random_start=False, input_range=RANGE)
    np.testing.assert_allclose(pgd.generate(model, x, y), fgsm_adv, atol=ATOL)


def test_pgd_default_step_size_is_madry_rule(model, x, y):
    default = PGD(0.2, steps=4, random_start=False, input_range=RANGE)
    assert default.step_size is None
    assert default.effective_step_size == pytest.approx(2.5 * 0.2 / 4)
    explicit = PGD(0.2, steps=4, step_size=2.5 * 0.2 / 4, random_start=False, input_range=RANGE)
    x_explicit = explicit.generate(model, x, y)
    np.testing.assert_array_equal(default.generate(model, x, y), x_explicit)
    # A different step size gives a different attack (the argument is used).
    other = PGD(0.2, steps=4, step_size=0.01, random_start=False, input_range=RANGE)
    assert not np.array_equal(other.generate(model, x, y), x_explicit)


# --------------------------------------------------- determinism and seeds


def test_pgd_without_random_start_is_deterministic(model, x, y):
    attack = PGD(0.1, steps=5, random_start=False, restarts=1, input_range=RANGE)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = attack.generate(model, x, y)
    # A linear head, a stated range and inputs inside it: nothing to warn about.
    assert library_warnings(record, "PGD") == []
    np.testing.assert_array_equal(first, attack.generate(model, x, y))
    fresh = PGD(0.1, steps=5, random_start=False, restarts=1, input_range=RANGE, seed=99)
    np.testing.assert_array_equal(first, fresh.generate(model, x, y))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_seed_fixes_the_random_start(model, x, y, norm):
    epsilon = 0.1 if norm == "linf" else 1.0

    def run(seed):
        attack = PGD(epsilon, steps=1, norm=norm, restarts=2, input_range=RANGE, seed=seed)
        return attack.generate(model, x, y)

    first = run(3)
    np.testing.assert_array_equal(first, run(3))
    assert not np.array_equal(first, run(4))


# ------------------------------------------------------------ attack strength


def test_more_pgd_steps_are_never_weaker(model, x, y):
    def run(steps):
        attack = PGD(0.1, steps=steps, step_size=0.02, random_start=False, input_range=RANGE)
        return attack.generate(model, x, y)

    one, twenty = run(1), run(20)
    clean_loss, _ = losses_and_fooled(model, x, y)
    loss_1, fooled_1 = losses_and_fooled(model, one, y)
    loss_20, fooled_20 = losses_and_fooled(model, twenty, y)
    assert accuracy(model, twenty, y) <= accuracy(model, one, y) <= accuracy(model, x, y)
    assert np.mean(fooled_20) > np.mean(fooled_1)
    assert loss_20.mean() > loss_1.mean() > clean_loss.mean()


def test_robust_accuracy_starts_at_clean_accuracy_and_decreases(model, x, y):
    attack = PGD(0.1, steps=5, input_range=RANGE, seed=0)
    epsilons = [0, 0.05, 0.3]
    result = robust_accuracy(model, x, y, attack, epsilons)
    assert list(result) == epsilons
    assert all(isinstance(value, float) for value in result.values())
    assert result[0] == accuracy(model, x, y)
    values = [result[e] for e in epsilons]
    assert all(later <= earlier for earlier, later in zip(values, values[1:])), values
    assert values[-1] < values[0]
    # The attack itself is left unchanged.
    assert attack.epsilon == 0.1


def test_robust_accuracy_accepts_config_dict_and_one_hot(fgsm_adv, model, x, y):
    config = {"class_name": "fgsm", "config": {"epsilon": 0.1, "input_range": RANGE}}
    by_config = robust_accuracy(model, x, np.eye(NUM_CLASSES)[y], config, [0.0, 0.1], batch_size=32)
    by_instance = robust_accuracy(model, x, y, FGSM(0.5, input_range=RANGE), [0.0, 0.1])
    assert by_config == by_instance
    assert by_config[0.1] == accuracy(model, fgsm_adv, y)
    with pytest.raises(ValueError, match="epsilons"):
        robust_accuracy(model, x, y, FGSM(0.1, input_range=RANGE), [])


def test_verbose_shows_a_progress_bar_per_budget(model, x, y, capsys):
    attack = FGSM(0.1, input_range=RANGE, batch_size=64)
    quiet = robust_accuracy(model, x, y, attack, [0.0, 0.1, 0.2])
    assert capsys.readouterr().out == ""
    loud = robust_accuracy(model, x, y, attack, [0.0, 0.1, 0.2], verbose=1)
    printed = capsys.readouterr().out
    assert loud == quiet
    # One bar for each attacked budget, counting every example.
    assert printed.count(f"{len(x)}/{len(x)}") == 2
    assert "fgsm, epsilon 0.1" in printed and "fgsm, epsilon 0.2" in printed


def test_robust_accuracy_accepts_a_name(model, x, y):
    # robust_accuracy's docstring: "A name builds the attack with its defaults".
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the inferred input range
        result = robust_accuracy(model, x, y, "pgd", [0.0, 0.1])
    assert result[0] == accuracy(model, x, y)


def test_restarts_keep_the_worst_case_per_example(model, x, y):
    """Worst case over restarts, per example.

    With one batch, run k of `restarts=3` starts from the k-th draw of the
    seed generator, which is what the k-th `generate` of a single-run
    attack with the same seed draws. Guaranteed by construction: the first
    single run is run 1 of the restarts, and a restart only replaces an
    example by one that is fooled where it was not, or (same fooled state)
    has a higher loss. So per example the result is one of the runs: a
    fooled one if any is, else the one with the highest loss.
    """
    kwargs = dict(steps=2, step_size=0.02, input_range=RANGE, seed=7, batch_size=len(x))
    single = PGD(0.08, restarts=1, **kwargs)
    runs = np.stack([single.generate(model, x, y) for _ in range(3)])
    multi = PGD(0.08, restarts=3, **kwargs).generate(model, x, y)
    stats = [losses_and_fooled(model, run, y) for run in runs]
    losses = np.stack([loss for loss, _ in stats])
    fooled = np.stack([f for _, f in stats])
    loss_3, fooled_3 = losses_and_fooled(model, multi, y)

    # Against the single run with the same (first) seed.
    assert np.all(fooled_3 >= fooled[0])
    same = fooled_3 == fooled[0]
    assert np.all(loss_3[same] >= losses[0, same] - 1e-4 * (1 + losses[0, same]))
    assert accuracy(model, multi, y) <= accuracy(model, runs[0], y)
    assert not np.array_equal(runs[0], multi)  # the restarts did something

    # Against all three runs.
    np.testing.assert_array_equal(fooled_3, fooled.any(axis=0))
    for i in range(len(x)):
        matches = [k for k in range(3) if np.allclose(runs[k, i], multi[i], atol=ATOL)]
        assert matches, f"example {i} is none of the runs"
        candidates = fooled[:, i] if fooled[:, i].any() else np.ones(3, bool)
        assert loss_3[i] >= losses[candidates, i].max() - 1e-4 * (1 + loss_3[i])


# -------------------------------------------------------------- labels


def test_predicted_labels_need_no_y(fgsm, model, x, y):
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    assert np.any(predicted != y)  # so the two label sets differ somewhere
    predicting = FGSM(0.1, input_range=RANGE, use_predicted_labels=True)
    by_prediction = predicting.generate(model, x)
    by_labels = fgsm.generate(model, x, predicted)
    assert_same_sign_steps(by_prediction, by_labels, reference_gradient(model, x, predicted))
    # A given y is ignored in favour of the predictions.
    ignored = predicting.generate(model, x, (y + 1) % 10)
    np.testing.assert_array_equal(ignored, by_prediction)
    pgd = PGD(0.1, steps=2, input_range=RANGE, use_predicted_labels=True, seed=0).generate(model, x)
    assert pgd.shape == x.shape


@pytest.mark.parametrize("attack", [FGSM(0.1, input_range=RANGE), PGD(0.1, input_range=RANGE)])
def test_missing_labels_raise(model, x, attack):
    with pytest.raises(ValueError, match="`y`"):
        attack.generate(model, x)


@pytest.mark.parametrize("bad", [-1, NUM_CLASSES, 2.5])
def test_labels_out_of_range_raise(model, x, y, bad):
    labels = y.astype("float32").copy()
    labels[3] = bad
    with pytest.raises(
        ValueError, match=r"`y` (holds the label .*, outside \[0, 9\]|must hold integer class labels)"
    ):
        FGSM(0.1, input_range=RANGE).generate(model, x, labels)


def test_mismatched_label_count_raises(model, x, y):
    with pytest.raises(ValueError, match=r"`y` has 95 labels"):
        FGSM(0.1, input_range=RANGE).generate(model, x, y[:-1])


# ------------------------------------------------- logits and gradient masking


def test_softmax_dense_model_attacks_its_logits(fgsm_adv, weights, x, y, gradient):
    softmax_model = with_weights(build_mlp("softmax"), weights)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x_soft = FGSM(0.1, input_range=RANGE).generate(softmax_model, x, y)
    # Logits are recovered: no warning about probabilities or masking.
    assert library_warnings(record, "FGSM") == []
    assert_same_sign_steps(x_soft, fgsm_adv, gradient)


def test_pgd_on_softmax_model_matches_linear_model(model, weights, x, y):
    softmax_model = with_weights(build_mlp("softmax"), weights)
    kwargs = dict(steps=3, step_size=0.02, random_start=False, input_range=RANGE)
    x_soft = PGD(0.06, **kwargs).generate(softmax_model, x, y)
    x_lin = PGD(0.06, **kwargs).generate(model, x, y)
    assert np.mean(np.isclose(x_soft, x_lin, atol=ATOL)) > 0.95
    assert accuracy(model, x_soft, y) == pytest.approx(accuracy(model, x_lin, y), abs=0.03)


def test_softmax_inside_call_warns_about_probabilities(weights, x, y):
    subclassed = SoftmaxInCall(name="softmax_in_call")
    subclassed(np.zeros((1, 64), "float32"))
    subclassed.classifier.set_weights(weights[2:])
    subclassed.hidden.set_weights(weights[:2])
    with pytest.warns(UserWarning, match="probabilities") as record:
        x_adv = FGSM(0.1, input_range=RANGE).generate(subclassed, x, y)
    assert any("mask" in message for message in library_warnings(record, "FGSM"))
    assert np.all(linf(x_adv, x) <= 0.1 + ATOL)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_zero_last_kernel_warns_about_gradient_masking(weights, x, y):
    dead = with_weights(build_mlp("linear"), weights[:2] + [np.zeros_like(weights[2]), weights[3]])
    attacks = (
        FGSM(0.1, input_range=RANGE),
        PGD(0.1, steps=2, random_start=False, input_range=RANGE),
    )
    for attack in attacks:
        with pytest.warns(UserWarning, match="gradient is exactly zero") as record:
            x_adv = attack.generate(dead, x, y)
        assert any("100%" in m for m in library_warnings(record, type(attack).__name__))
        # No gradient, no step.
        np.testing.assert_array_equal(x_adv, x)


def test_stop_gradient_warns_about_gradient_masking(weights, x, y):
    masked = with_weights(build_mlp("zero_grad"), weights)
    with pytest.warns(UserWarning, match="gradient is exactly zero"):
        x_adv = FGSM(0.1, input_range=RANGE).generate(masked, x, y)
    np.testing.assert_array_equal(x_adv, x)


# ------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: FGSM(-0.1), "epsilon"),
        (lambda: PGD(-1e-3), "epsilon"),
        (lambda: FGSM(float("nan")), "epsilon"),
        (lambda: PGD(0.1, step_size=0.0), "step_size"),
        (lambda: PGD(0.1, step_size=-0.1), "step_size"),
        (lambda: PGD(0.1, steps=0), "steps"),
        (lambda: PGD(0.1, steps=2.5), "steps"),
        (lambda: PGD(0.1, restarts=0), "restarts"),
        (lambda: PGD(0.1, norm="l1"), "norm"),
        (lambda: PGD(0.1, norm="Linf"), "norm"),
        (lambda: FGSM(0.1, input_range=(1, 0)), "input_range"),
        (lambda: FGSM(0.1, input_range=(0.5, 0.5)), "input_range"),
        (lambda: PGD(0.1, input_range=(0, 1, 2)), "input_range"),
        (lambda: PGD(0.1, input_range=(0,)), "input_range"),
        (lambda: FGSM(0.1, batch_size=0), "batch_size"),
    ],
)
def test_bad_arguments_raise_naming_them(build, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        build()


def test_integer_inputs_raise(model, x, y):
    images = np.round(x * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=r"`x`.*uint8"):
        FGSM(0.1, input_range=RANGE).generate(model, images, y)
    with pytest.raises(ValueError, match="`x`"):
        PGD(0.1, input_range=RANGE).generate(model, np.where(x > 0.5, np.nan, x), y)


def test_inputs_outside_input_range_warn_and_are_clipped(model, x, y):
    wide = x * 1.4 - 0.2
    for attack in (FGSM(0.05, input_range=RANGE), PGD(0.05, steps=2, input_range=RANGE, seed=0)):
        with pytest.warns(UserWarning, match="input_range") as record:
            x_adv = attack.generate(model, wide, y)
        assert any("outside" in m for m in library_warnings(record, type(attack).__name__))
        assert x_adv.min() >= RANGE[0] and x_adv.max() <= RANGE[1]


def test_missing_input_range_is_inferred_with_a_warning(model, x, y):
    shifted = 0.1 + 0.5 * x  # range (0.1, 0.6)
    with pytest.warns(UserWarning, match="input_range") as record:
        x_adv = FGSM(0.2).generate(model, shifted, y)
    messages = library_warnings(record, "FGSM")
    assert any("(0.1, 0.6)" in m for m in messages), messages
    assert x_adv.min() >= shifted.min() and x_adv.max() <= shifted.max()
    assert x_adv.min() == pytest.approx(0.1) and x_adv.max() == pytest.approx(0.6)
    with pytest.raises(ValueError, match="input_range"):
        FGSM(0.1).generate(model, np.full_like(x, 0.5), y)


# ------------------------------------------------ registry and serialization


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "fgsm", "config": {"epsilon": 0.2, "input_range": RANGE}},
        {"class_name": "PGD", "config": {"epsilon": 0.2, "steps": 3, "norm": "l2"}},
    ],
)
def test_registry_builds_from_config(config):
    attack = registry.get("attack", config)
    assert isinstance(attack, Attack)
    assert type(attack).__name__.lower() == config["class_name"].lower()
    assert attack.epsilon == 0.2
    assert registry.get("attack", attack) is attack
    assert {"fgsm", "pgd"} <= set(registry.available("attack"))
    assert registry.get_object("attack", "FGSM") is FGSM


@pytest.mark.parametrize("name, cls", [("fgsm", FGSM), ("pgd", PGD)])
def test_registry_builds_from_name(name, cls):
    attack = registry.get("attack", name)
    assert isinstance(attack, cls)
    assert attack.epsilon > 0


def custom_attacks():
    return [
        FGSM(0.25, input_range=(-1, 1), use_predicted_labels=True, batch_size=17, name="my_fgsm"),
        PGD(
            0.5,
            steps=7,
            step_size=0.1,
            norm="l2",
            random_start=False,
            restarts=2,
            input_range=(0, 255),
            batch_size=9,
            seed=11,
            name="my_pgd",
        ),
        PGD(0.03),
    ]


@pytest.mark.parametrize("attack", custom_attacks(), ids=["fgsm", "pgd_l2", "pgd_default"])
def test_config_round_trips(attack):
    config = attack.get_config()
    rebuilt = type(attack).from_config(config)
    assert rebuilt.get_config() == config
    identifier = {"class_name": attack.registered_name, "config": config}
    assert registry.get("attack", identifier).get_config() == config
    serialized = keras.saving.serialize_keras_object(attack)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(attack)
    assert restored.get_config() == config
    assert repr(restored) == repr(attack)


@pytest.mark.parametrize("attack", custom_attacks(), ids=["fgsm", "pgd_l2", "pgd_default"])
def test_with_epsilon_copies_with_a_new_budget(attack):
    copy = attack.with_epsilon(0.07)
    assert type(copy) is type(attack) and copy is not attack
    assert copy.epsilon == 0.07
    assert attack.epsilon != 0.07
    assert {**copy.get_config(), "epsilon": attack.epsilon} == attack.get_config()
    with pytest.raises(ValueError, match="epsilon"):
        attack.with_epsilon(-1)


# ----------------------------------------------------------- image inputs


def test_image_shaped_inputs_match_flat_inputs(fgsm_adv, weights, x, y, gradient):
    image_model = with_weights(build_mlp("image"), weights)
    images = x.reshape(-1, 8, 8, 1)
    flat = fgsm_adv
    image = FGSM(0.1, input_range=RANGE).generate(image_model, images, y)
    assert image.shape == images.shape and image.dtype == np.float32
    assert_same_sign_steps(image.reshape(len(x), -1), flat, gradient)


def test_conv2d_model(x, y):
    keras.utils.set_random_seed(0)
    conv = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="small_cnn",
    )
    images = x.reshape(-1, 8, 8, 1)
    clean_loss, _ = losses_and_fooled(conv, images, y)
    # L2 on 4-D inputs: per-example norms over (H, W, C), (N, 1, 1, 1) radii.
    attack = PGD(0.5, steps=2, norm="l2", input_range=RANGE, seed=0)
    x_adv = attack.generate(conv, images, y)
    assert x_adv.shape == images.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    distances = l2(x_adv, images)
    assert np.all(distances <= 0.5 * (1 + 1e-5) + ATOL)
    # Per-example budgets, not one budget for the whole batch.
    assert np.mean(distances > 0.25) > 0.5
    loss, _ = losses_and_fooled(conv, x_adv, y)
    # A first-order attack raises the loss of (nearly) every example.
    assert np.mean(loss > clean_loss) > 0.9


def test_cross_entropy_matches_numpy():
    logits = np.random.default_rng(0).normal(size=(6, 4)).astype("float32") * 5
    labels = np.array([0, 1, 2, 3, 0, 1], "int32")
    value = cross_entropy(ops.convert_to_tensor(logits), ops.convert_to_tensor(labels))
    value = ops.convert_to_numpy(value)
    expected = -np_log_softmax(logits)[np.arange(6), labels]
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
