"""APGD and Square Attack on the digits classifier.

APGD is checked against its budget, its checkpoint schedule (Croce & Hein's
reference implementation), its never-lose-ground rule and PGD of the same
cost; Square Attack against its budget and the vertex structure of its
perturbations, its schedule, its image layouts, and a model that masks its
gradients, which it must still break.
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability import registry
from keras_reliability.attacks import APGD
from keras_reliability.attacks import PGD
from keras_reliability.attacks import SquareAttack
from keras_reliability.attacks.apgd import checkpoints
from keras_reliability.attacks.square import margin
from keras_reliability.attacks.square import square_fraction

RANGE = (0.0, 1.0)
NUM_CLASSES = 10
# Float32 slack of the budget checks.
ATOL = 1e-6


def build_mlp(weights, image=False, stop_gradient=False, softmax=False, channels_first=False):
    """The digits MLP on flat vectors or on 8x8 images (flattened first).

    `stop_gradient` cuts the gradient between the hidden and the output
    layer (the forward pass is unchanged): gradient attacks see zeros.
    """
    if image:
        shape = (1, 8, 8) if channels_first else (8, 8, 1)
        layers = [keras.Input(shape), keras.layers.Flatten()]
    else:
        layers = [keras.Input((64,))]
    layers.append(keras.layers.Dense(weights[1].shape[0], activation="relu"))
    if stop_gradient:
        layers.append(keras.layers.Lambda(lambda t: ops.stop_gradient(t)))
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax" if softmax else None))
    model = keras.Sequential(layers)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    dense[0].set_weights(weights[:2])
    dense[1].set_weights(weights[2:])
    return model


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def np_losses(model, x, y):
    logits = np.asarray(model.predict(x, verbose=0), np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y], logits.argmax(axis=1) != y


@pytest.fixture(scope="module")
def model(digits_mlp_weights):
    return build_mlp(digits_mlp_weights)


@pytest.fixture(scope="module")
def image_model(digits_mlp_weights):
    return build_mlp(digits_mlp_weights, image=True)


@pytest.fixture(scope="module")
def x(digits_split):
    return digits_split[2]


@pytest.fixture(scope="module")
def y(digits_split):
    return digits_split[3]


@pytest.fixture(scope="module")
def images(x):
    return x.reshape(-1, 8, 8, 1)


# -------------------------------------------------------------------- APGD


def test_apgd_checkpoints_follow_the_reference_schedule():
    # Croce & Hein's code: first interval 22% of the steps, shrinking by 3%
    # of the steps per checkpoint, never below 6%.
    assert list(checkpoints(100)) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert list(checkpoints(100).values()) == [22, 19, 16, 13, 10, 7, 6, 6]
    assert list(checkpoints(10)) == list(range(2, 11))
    assert checkpoints(1) == {1: 1}


@pytest.mark.parametrize("norm, epsilon", [("linf", 0.1), ("l2", 1.0)])
def test_apgd_stays_in_ball_and_input_range(model, x, y, norm, epsilon):
    x_adv = APGD(epsilon, steps=10, norm=norm, input_range=RANGE, seed=0).generate(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.sqrt((delta**2).sum(axis=1))
    assert np.all(size <= epsilon * (1 + 1e-5) + ATOL)
    # A step-size-free attack still uses its budget.
    assert np.median(size) > 0.5 * epsilon


def test_apgd_never_loses_ground(model, x, y):
    # From x itself, the result is a misclassified point or one whose loss
    # is at least the clean loss: the best point so far is kept.
    clean_loss, _ = np_losses(model, x, y)
    x_adv = APGD(0.05, steps=12, random_start=False, input_range=RANGE).generate(model, x, y)
    loss, fooled = np_losses(model, x_adv, y)
    assert np.all(fooled | (loss >= clean_loss - 1e-5))
    assert np.mean(loss > clean_loss) > 0.9


def test_apgd_is_at_least_as_strong_as_pgd_of_the_same_cost(model, x, y):
    steps = 20
    pgd = PGD(0.08, steps=steps, input_range=RANGE, seed=0).generate(model, x, y)
    apgd = APGD(0.08, steps=steps, input_range=RANGE, seed=0).generate(model, x, y)
    clean = accuracy(model, x, y)
    pgd_accuracy, apgd_accuracy = accuracy(model, pgd, y), accuracy(model, apgd, y)
    assert pgd_accuracy < clean
    assert apgd_accuracy <= pgd_accuracy
    # Where neither fools, APGD's best point has the higher loss on most.
    pgd_loss, pgd_fooled = np_losses(model, pgd, y)
    apgd_loss, apgd_fooled = np_losses(model, apgd, y)
    both = ~pgd_fooled & ~apgd_fooled
    assert np.mean(apgd_loss[both] >= pgd_loss[both] - 1e-4) > 0.8


def test_apgd_seed_fixes_the_result_and_restarts_only_help(model, x, y):
    first = APGD(0.08, steps=8, input_range=RANGE, seed=3).generate(model, x, y)
    again = APGD(0.08, steps=8, input_range=RANGE, seed=3).generate(model, x, y)
    np.testing.assert_array_equal(first, again)
    restarted = APGD(0.08, steps=8, restarts=3, input_range=RANGE, seed=3).generate(model, x, y)
    # The first run is one of the three: per example, never a better fit.
    _, first_fooled = np_losses(model, first, y)
    _, restarted_fooled = np_losses(model, restarted, y)
    assert np.all(restarted_fooled[first_fooled])


def test_apgd_zero_budget_returns_the_inputs(model, x, y):
    np.testing.assert_array_equal(APGD(0.0, steps=3, input_range=RANGE).generate(model, x, y), x)


# ------------------------------------------------------------------ Square


def test_square_schedule_halves_p_at_the_reference_points():
    assert square_fraction(0.8, 0, 10000) == 0.8
    assert square_fraction(0.8, 10, 10000) == 0.8
    assert square_fraction(0.8, 11, 10000) == 0.4
    assert square_fraction(0.8, 201, 10000) == 0.1
    assert square_fraction(0.8, 9999, 10000) == 0.8 / 512
    # Rescaled to shorter runs: query 10 of 1000 is at 100 of 10000.
    assert square_fraction(0.8, 10, 1000) == 0.2


def test_margin_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7)).astype("float32")
    labels = rng.integers(0, 7, size=50).astype("int32")
    others = np.where(np.eye(7, dtype=bool)[labels], -np.inf, logits).max(axis=1)
    expected = logits[np.arange(50), labels] - others
    actual = ops.convert_to_numpy(
        margin(ops.convert_to_tensor(logits), ops.convert_to_tensor(labels))
    )
    np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_square_perturbations_sit_on_the_vertices_of_the_ball(image_model, images, y):
    epsilon = 0.2
    attack = SquareAttack(epsilon, queries=60, input_range=RANGE, seed=0)
    x_adv = attack.generate(image_model, images, y)
    assert x_adv.shape == images.shape and x_adv.dtype == np.float32
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    delta = x_adv.astype(np.float64) - images
    assert np.abs(delta).max() <= epsilon + ATOL
    # Every value moved by exactly +-epsilon, unless clipping stopped it.
    unclipped = (x_adv > 0) & (x_adv < 1)
    np.testing.assert_allclose(np.abs(delta[unclipped]), epsilon, atol=ATOL)


def test_square_lowers_accuracy_and_beats_random_vertices(image_model, images, y):
    epsilon = 0.15
    clean = accuracy(image_model, images, y)
    x_adv = SquareAttack(epsilon, queries=150, input_range=RANGE, seed=0).generate(
        image_model, images, y
    )
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=images.shape)
    noisy = np.clip(images + epsilon * signs, 0, 1).astype("float32")
    square_accuracy = accuracy(image_model, x_adv, y)
    assert square_accuracy < accuracy(image_model, noisy, y) - 0.1
    assert square_accuracy < clean - 0.2
    # An example the attack fooled stays fooled: only unfooled ones move.
    _, fooled = np_losses(image_model, x_adv, y)
    more = SquareAttack(epsilon, queries=300, input_range=RANGE, seed=0).generate(
        image_model, images, y
    )
    _, fooled_more = np_losses(image_model, more, y)
    assert np.mean(fooled_more) >= np.mean(fooled)


def test_square_breaks_a_model_that_masks_its_gradients(digits_mlp_weights, images, y):
    masked = build_mlp(digits_mlp_weights, image=True, stop_gradient=True)
    clean = accuracy(masked, images, y)
    with pytest.warns(UserWarning, match="SquareAttack"):
        pgd = PGD(0.15, steps=5, input_range=RANGE, random_start=False).generate(masked, images, y)
    assert accuracy(masked, pgd, y) == clean
    square = SquareAttack(0.15, queries=150, input_range=RANGE, seed=0).generate(masked, images, y)
    assert accuracy(masked, square, y) < clean - 0.2


def test_square_reads_channels_first_images(digits_mlp_weights, images, y):
    last = SquareAttack(0.2, queries=30, input_range=RANGE, seed=5).generate(
        build_mlp(digits_mlp_weights, image=True), images, y
    )
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        first_model = build_mlp(digits_mlp_weights, image=True, channels_first=True)
        first = SquareAttack(0.2, queries=30, input_range=RANGE, seed=5).generate(
            first_model, images.transpose(0, 3, 1, 2), y
        )
    finally:
        keras.config.set_image_data_format(previous)
    # One channel: the same squares whatever the layout.
    np.testing.assert_array_equal(first.transpose(0, 2, 3, 1), last)


class SoftmaxInCall(keras.Model):
    """The image MLP with its softmax inside `call`: no logits to recover."""

    def __init__(self, weights, **kwargs):
        super().__init__(**kwargs)
        self.mlp = build_mlp(weights, image=True)

    def call(self, inputs):
        return ops.softmax(self.mlp(inputs), axis=-1)


def test_square_on_probabilities_needs_no_logits(digits_mlp_weights, image_model, images, y):
    probabilities = SoftmaxInCall(digits_mlp_weights)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x_adv = SquareAttack(0.2, queries=40, input_range=RANGE, seed=1).generate(
            probabilities, images, y
        )
    # No gradient-masking warning: margins of log-probabilities equal those
    # of the logits, so the black-box attack is unaffected.
    assert not [w for w in record if str(w.message).startswith("SquareAttack")]
    with pytest.warns(UserWarning, match="probabilities"):
        PGD(0.2, steps=1, input_range=RANGE).generate(probabilities, images, y)
    on_logits = SquareAttack(0.2, queries=40, input_range=RANGE, seed=1).generate(
        image_model, images, y
    )
    assert abs(accuracy(image_model, x_adv, y) - accuracy(image_model, on_logits, y)) <= 2 / len(y)


def test_square_single_query_is_the_stripe_start(image_model, images, y):
    x_adv = SquareAttack(0.1, queries=1, input_range=RANGE, seed=0).generate(image_model, images, y)
    delta = x_adv - images
    unclipped = (x_adv > 0) & (x_adv < 1)
    signs = np.where(unclipped, np.sign(delta), 0)
    # Vertical stripes: one sign per column, shared by every unclipped row.
    for column in range(8):
        values = signs[:, :, column, 0]
        for row_values in values:
            assert len(set(row_values[row_values != 0])) <= 1


def test_square_without_seed_follows_keras_set_random_seed(image_model, images, y):
    def attack_after(global_seed):
        keras.utils.set_random_seed(global_seed)
        attack = SquareAttack(0.15, queries=40, input_range=RANGE)
        return attack.generate(image_model, images, y)

    first = attack_after(7)
    # Square positions and signs both replay: the same adversarial inputs.
    np.testing.assert_array_equal(attack_after(7), first)
    other = attack_after(8)
    assert np.mean(np.any(other != first, axis=(1, 2, 3))) > 0.5


def test_square_seed_overrides_the_global_seed(image_model, images, y):
    keras.utils.set_random_seed(1)
    first = SquareAttack(0.15, queries=40, input_range=RANGE, seed=3).generate(
        image_model, images, y
    )
    keras.utils.set_random_seed(2)
    again = SquareAttack(0.15, queries=40, input_range=RANGE, seed=3).generate(
        image_model, images, y
    )
    np.testing.assert_array_equal(again, first)


def test_square_needs_image_batches(model, x, y):
    with pytest.raises(ValueError, match="rank 4"):
        SquareAttack(0.1, queries=2, input_range=RANGE).generate(model, x, y)


# ------------------------------------------- arguments, registry, configs


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: APGD(-0.1), "epsilon"),
        (lambda: APGD(0.1, steps=0), "steps"),
        (lambda: APGD(0.1, rho=0), "rho"),
        (lambda: APGD(0.1, rho=1.5), "rho"),
        (lambda: APGD(0.1, restarts=0), "restarts"),
        (lambda: APGD(0.1, norm="l1"), "norm"),
        (lambda: SquareAttack(-1.0), "epsilon"),
        (lambda: SquareAttack(0.1, queries=0), "queries"),
        (lambda: SquareAttack(0.1, p_init=0), "p_init"),
        (lambda: SquareAttack(0.1, p_init=1.2), "p_init"),
        (lambda: SquareAttack(0.1, input_range=(1, 1)), "input_range"),
    ],
)
def test_bad_arguments_raise_naming_them(build, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        build()


@pytest.mark.parametrize(
    "attack",
    [
        APGD(
            0.2,
            steps=33,
            norm="l2",
            rho=0.5,
            restarts=2,
            random_start=False,
            input_range=(-1, 1),
            batch_size=7,
            seed=4,
            name="my_apgd",
        ),
        SquareAttack(
            0.05,
            queries=77,
            p_init=0.3,
            input_range=(0, 255),
            use_predicted_labels=True,
            seed=9,
            name="my_square",
        ),
    ],
    ids=["apgd", "square"],
)
def test_config_round_trips_and_registry(attack):
    config = attack.get_config()
    assert type(attack).from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(attack))
    assert type(restored) is type(attack) and restored.get_config() == config
    assert (
        registry.get(
            "attack", {"class_name": attack.registered_name, "config": config}
        ).get_config()
        == config
    )
    assert isinstance(registry.get("attack", attack.registered_name), type(attack))
    assert {"apgd", "square"} <= set(registry.available("attack"))
