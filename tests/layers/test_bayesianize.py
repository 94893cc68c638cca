"""Tests of `keras_reliability.layers.bayesianize`."""

import math

import keras
import numpy as np
import pytest

from keras_reliability.layers import Conv2DFlipout
from keras_reliability.layers import Conv2DReparameterization
from keras_reliability.layers import DenseFlipout
from keras_reliability.layers import DenseReparameterization
from keras_reliability.layers import MCDropout
from keras_reliability.layers import NormalPrior
from keras_reliability.layers import bayesianize

FLIPOUT = {keras.layers.Dense: DenseFlipout, keras.layers.Conv2D: Conv2DFlipout}
REPARAMETERIZATION = {
    keras.layers.Dense: DenseReparameterization,
    keras.layers.Conv2D: Conv2DReparameterization,
}
SCALE_FLOOR = float(np.finfo(np.float32).eps)  # as in tfp.layers


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _randomize(model, seed=0):
    """Gives every weight a random value (BN moving variances positive).

    Keras initialises biases to zero and BN statistics to 0 / 1, which would
    let a copy that forgets them pass; random values make every copy visible.
    """
    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        values = []
        for weight in layer.weights:
            shape = tuple(weight.shape)
            if weight.name in ("moving_variance", "gamma"):
                values.append(rng.uniform(0.5, 1.5, shape).astype("float32"))
            else:
                values.append(rng.normal(0.0, 0.3, shape).astype("float32"))
        if values:
            layer.set_weights(values)
    return model


def _leaves(model):
    """The non-model, non-input layers of `model`, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _sequential():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu", name="hidden"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Dropout(0.3, name="drop"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="seq",
    )
    return _randomize(model, 1)


def _conv_functional():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(
        4, 3, strides=2, padding="same", activation="relu", name="conv_a"
    )(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    x = keras.layers.Conv2D(
        5, (2, 3), strides=(1, 2), padding="valid", use_bias=False, name="conv_b"
    )(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dropout(0.2, name="conv_drop")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="conv_out")(x)
    return _randomize(keras.Model(inputs, outputs, name="conv_functional"), 2)


def _nested():
    inner = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="tanh", name="inner_dense"),
            keras.layers.BatchNormalization(name="inner_bn"),
            keras.layers.Dropout(0.25, name="inner_drop"),
        ],
        name="inner",
    )
    inputs = keras.Input((6,))
    outputs = keras.layers.Dense(3, activation="softmax", name="outer_dense")(inner(inputs))
    return _randomize(keras.Model(inputs, outputs, name="nested"), 3)


BUILDERS = {"sequential": _sequential, "conv": _conv_functional, "nested": _nested}


def _forward(model, x):
    """One inference forward pass, as numpy.

    Eager calls rather than `predict`: on JAX every new model's `predict`
    compiles its random ops anew (seconds each), while eager ops are cached.
    """
    return keras.ops.convert_to_numpy(model(x, training=False))


def _input_for(model, n, seed=0):
    shape = (n,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _softplus(x):
    x = np.asarray(x, dtype=np.float64)
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _activation_name(layer):
    return keras.activations.serialize(layer.activation)


def _check_bayesianized(old_model, new_model, classes, initial_scale, kl_weight, prior):
    """Every Dense/Conv2D of `old_model` became its Bayesian twin, the rest copied."""
    old_layers, new_layers = list(_leaves(old_model)), list(_leaves(new_model))
    assert [layer.name for layer in new_layers] == [layer.name for layer in old_layers]
    replaced = 0
    for old, new in zip(old_layers, new_layers):
        assert new is not old
        if type(old) in classes:
            replaced += 1
            assert type(new) is classes[type(old)], (old.name, type(new))
            assert _activation_name(new) == _activation_name(old)
            assert new.use_bias == old.use_bias
            if isinstance(old, keras.layers.Dense):
                assert new.units == old.units
            else:
                assert new.filters == old.filters
                assert tuple(new.kernel_size) == tuple(old.kernel_size)
                assert tuple(new.strides) == tuple(old.strides)
                assert new.padding == old.padding
                assert tuple(new.dilation_rate) == tuple(old.dilation_rate)
            old_kernel = keras.ops.convert_to_numpy(old.kernel)
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(new.kernel_loc), old_kernel)
            if old.use_bias:
                np.testing.assert_array_equal(
                    keras.ops.convert_to_numpy(new.bias_loc),
                    keras.ops.convert_to_numpy(old.bias),
                )
            else:
                assert new.bias_loc is None
            assert new.bias_untransformed_scale is None  # bias stays deterministic
            rho = keras.ops.convert_to_numpy(new.kernel_untransformed_scale)
            assert rho.shape == old_kernel.shape
            # Independent of the library: the posterior std is eps + softplus(rho).
            np.testing.assert_allclose(SCALE_FLOOR + _softplus(rho), initial_scale, rtol=1e-4)
            assert new.kl_weight == kl_weight
            assert isinstance(new.kernel_prior, type(prior))
            assert new.kernel_prior.get_config() == prior.get_config()
        else:
            assert type(new) is type(old)
            old_weights, new_weights = old.get_weights(), new.get_weights()
            assert len(new_weights) == len(old_weights)
            for a, b in zip(old_weights, new_weights):
                np.testing.assert_array_equal(b, a)
            if isinstance(old, keras.layers.Dropout):
                assert new.rate == old.rate
    return replaced


# ----------------------------------------------------------------------------
# Structure and weights
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_flipout_replaces_dense_and_conv_keeping_weights(kind):
    model = BUILDERS[kind]()
    old_weights = [w.copy() for w in model.get_weights()]
    old_types = [type(layer) for layer in _leaves(model)]
    new_model = bayesianize(model, kl_weight=0.25)
    expected = sum(type(layer) in FLIPOUT for layer in _leaves(model))
    assert expected >= 2
    replaced = _check_bayesianized(model, new_model, FLIPOUT, 1e-3, 0.25, NormalPrior(0.0, 1.0))
    assert replaced == expected
    # The original model is untouched.
    assert [type(layer) for layer in _leaves(model)] == old_types
    for a, b in zip(old_weights, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not {id(v) for v in model.weights} & {id(v) for v in new_model.weights}
    assert new_model.output_shape == model.output_shape


def test_reparameterization_custom_scale_and_prior():
    model = _conv_functional()
    prior = NormalPrior(0.5, 0.2)
    new_model = bayesianize(
        model, method="reparameterization", kl_weight=0.0, initial_scale=0.01, kernel_prior=prior
    )
    replaced = _check_bayesianized(model, new_model, REPARAMETERIZATION, 0.01, 0.0, prior)
    assert replaced == 3


def test_original_layers_stay_keras_layers():
    model = _nested()
    bayesianize(model)
    assert [type(layer).__name__ for layer in _leaves(model)] == [
        "Dense",
        "BatchNormalization",
        "Dropout",
        "Dense",
    ]


def test_nested_sequential_is_rebuilt_as_a_model():
    model = _nested()
    new_model = bayesianize(model)
    inner = [layer for layer in new_model.layers if isinstance(layer, keras.Model)]
    assert len(inner) == 1 and inner[0].name == "inner"
    assert inner[0] is not model.get_layer("inner")
    assert isinstance(inner[0].get_layer("inner_dense"), DenseFlipout)


# ----------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------


def _max_logit_std_bound(model, x, initial_scale):
    """A rough bound on the std of the output-layer pre-activations.

    Each replaced layer adds noise of std `initial_scale * ||input row||` to
    each output unit; summing the per-layer norms over layers (times a
    generous factor 3 for the propagation through later layers) bounds it.
    """
    norms = []
    for layer in _leaves(model):
        if type(layer) in FLIPOUT:
            sub = keras.Model(model.inputs[0], layer.input)
            inputs = keras.ops.convert_to_numpy(sub(x, training=False))
            fan = int(np.prod(layer.kernel.shape[:-1]))
            # Conv: a window has fan_in inputs; bound its norm by sqrt(fan) * max|input|.
            norms.append(
                min(
                    np.sqrt(fan) * np.abs(inputs).max(),
                    np.linalg.norm(inputs.reshape(len(x), -1), axis=1).max(),
                )
            )
    return 3.0 * initial_scale * float(np.sum(norms))


def test_monte_carlo_mean_matches_original():
    # The conv model (Conv2D, BN, Flatten, Dropout, Dense); the dense-only
    # Sequential model by test_same_seed_gives_same_first_predictions_and_layers_sample.
    model = _conv_functional()
    x = _input_for(model, 8)
    original = _forward(model, x)
    new_model = bayesianize(model, seed=11)
    samples = np.stack([_forward(new_model, x) for _ in range(16)], axis=1)
    assert samples.shape == (8, 16, 3)
    # Softmax moves by at most half the largest logit change (its Jacobian has
    # inf-norm <= 1/2); one sample stays within 5 std of the logits, and the
    # first-order noise of the mean of T = 16 samples is 4 times smaller.
    logit_std = _max_logit_std_bound(model, x, 1e-3)
    assert logit_std < 0.1  # so that the tolerances below mean something
    single_atol = 0.5 * 5 * logit_std
    expected = np.broadcast_to(original[:, None], samples.shape)
    np.testing.assert_allclose(samples, expected, atol=single_atol)
    np.testing.assert_allclose(samples.mean(axis=1), original, atol=single_atol / 4)
    # The layers do sample: the T predictions of an example are not all equal.
    assert np.all(np.ptp(samples, axis=1).max(axis=-1) > 0)


def test_tiny_scale_single_predict_matches_original():
    model = _conv_functional()
    x = _input_for(model, 8, seed=4)
    original = _forward(model, x)
    new_model = bayesianize(model, initial_scale=2e-5)
    predicted = _forward(new_model, x)
    np.testing.assert_allclose(predicted, original, atol=1e-3)


# ----------------------------------------------------------------------------
# Choosing layers
# ----------------------------------------------------------------------------


def test_layers_by_name_replaces_only_that_layer():
    model = _sequential()
    new_model = bayesianize(model, layers=["out"])
    assert isinstance(new_model.get_layer("out"), DenseFlipout)
    assert type(new_model.get_layer("hidden")) is keras.layers.Dense
    old_hidden, new_hidden = model.get_layer("hidden"), new_model.get_layer("hidden")
    for a, b in zip(old_hidden.get_weights(), new_hidden.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_layers_by_object_and_single_string():
    model = _nested()
    by_object = bayesianize(model, layers=[model.get_layer("inner").get_layer("inner_dense")])
    assert isinstance(by_object.get_layer("inner").get_layer("inner_dense"), DenseFlipout)
    assert type(by_object.get_layer("outer_dense")) is keras.layers.Dense
    by_string = bayesianize(model, layers="outer_dense", method="reparameterization")
    assert isinstance(by_string.get_layer("outer_dense"), DenseReparameterization)
    assert type(by_string.get_layer("inner").get_layer("inner_dense")) is keras.layers.Dense


def test_unknown_layer_name_raises():
    with pytest.raises(ValueError, match="no_such_layer"):
        bayesianize(_sequential(), layers=["no_such_layer"])


def test_foreign_layer_object_raises():
    other = keras.layers.Dense(3, name="foreign_dense")
    with pytest.raises(ValueError, match="foreign_dense"):
        bayesianize(_sequential(), layers=[other])


@pytest.mark.parametrize(
    "name, cls",
    [("flat", "Flatten"), ("conv_drop", "Dropout"), ("conv_bn", "BatchNormalization")],
)
def test_wrong_layer_type_raises_naming_class(name, cls):
    with pytest.raises(ValueError, match=cls):
        bayesianize(_conv_functional(), layers=[name])


def test_mc_dropout_replaces_dropout_only():
    model = _nested()
    new_model = bayesianize(model, method="mc_dropout")
    dropout = new_model.get_layer("inner").get_layer("inner_drop")
    assert type(dropout) is MCDropout
    assert dropout.rate == 0.25
    assert dropout.active_at_inference
    for name in ("outer_dense",):
        assert type(new_model.get_layer(name)) is keras.layers.Dense
        old_weights = model.get_layer(name).get_weights()
        for a, b in zip(old_weights, new_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert type(new_model.get_layer("inner").get_layer("inner_dense")) is keras.layers.Dense
    # Dropout now acts at inference: two predictions differ, the original's do not.
    x = _input_for(model, 8)
    a, b = _forward(new_model, x), _forward(new_model, x)
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_array_equal(_forward(model, x), _forward(model, x))


def test_mc_dropout_rejects_dense_by_name():
    with pytest.raises(ValueError, match="Dense"):
        bayesianize(_sequential(), layers=["hidden"], method="mc_dropout")


def test_mc_dropout_without_dropout_raises():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="Dropout"):
        bayesianize(model, method="mc_dropout")


# ----------------------------------------------------------------------------
# Argument errors
# ----------------------------------------------------------------------------


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="bogus"):
        bayesianize(_sequential(), method="bogus")


@pytest.mark.parametrize("value", [-1, float("nan"), "1"])
def test_bad_kl_weight_raises(value):
    with pytest.raises(ValueError, match="kl_weight"):
        bayesianize(_sequential(), kl_weight=value)


@pytest.mark.parametrize("value", [0, -1e-3, float("inf")])
def test_bad_initial_scale_raises(value):
    with pytest.raises(ValueError, match="initial_scale"):
        bayesianize(_sequential(), initial_scale=value)


@pytest.mark.parametrize("value", [float(np.finfo(np.float32).eps), 1e-8])
def test_initial_scale_at_or_below_floor_raises(value):
    with pytest.raises(ValueError, match="float32 eps"):
        bayesianize(_sequential(), initial_scale=value)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("seed", "abc"),
        ("seed", -1),
        ("seed", 1.5),
        ("seed", True),
        ("kl_weight", -1),
        ("initial_scale", 0),
        ("method", None),
        ("method", "Flipout"),
        ("kernel_prior", "normal"),
        ("layers", 5),
        ("layers", []),
    ],
)
def test_bad_argument_error_names_argument_and_value(argument, value):
    with pytest.raises(ValueError) as info:
        bayesianize(_sequential(), **{argument: value})
    message = str(info.value)
    assert f"`{argument}`" in message
    assert repr(value) in message
    assert "subclassed" not in message  # not mistaken for a model Keras cannot clone


def test_model_none_raises_naming_model_and_value():
    with pytest.raises(ValueError, match=r"`model` must be a keras.Model; received None"):
        bayesianize(None)


def test_layer_type_instead_of_name_raises_with_hint():
    with pytest.raises(ValueError) as info:
        bayesianize(_sequential(), layers="dense")
    message = str(info.value)
    assert "`layers` names 'dense'" in message
    assert "not layer types" in message and "layers=None" in message
    # A name that is not a type gets no hint, but the list of layers.
    with pytest.raises(ValueError) as info:
        bayesianize(_sequential(), layers=["hiden"])
    assert "not layer types" not in str(info.value)
    assert "['bn', 'drop', 'hidden', 'out']" in str(info.value)


def test_non_layer_item_in_layers_raises():
    with pytest.raises(ValueError, match=r"`layers` must hold layer names or layers; it holds 3"):
        bayesianize(_sequential(), layers=["out", 3])


def test_model_without_dense_or_conv_raises():
    model = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.1)]
    )
    with pytest.raises(ValueError, match="Dense or Conv2D"):
        bayesianize(model)


def test_unbuilt_sequential_raises():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="built"):
        bayesianize(model)


def test_not_a_model_raises():
    with pytest.raises(ValueError, match="keras.Model"):
        bayesianize(keras.layers.Dense(3))


def test_subclassed_model_raises():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    model = Subclassed()
    model(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="subclassed") as info:
        bayesianize(model)
    assert "Subclassed" in str(info.value)


def test_grouped_conv_raises():
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(4, 3, groups=2, name="grouped")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ValueError, match="groups=2"):
        bayesianize(model)
    # Leaving it out works.
    new_model = bayesianize(model, layers=[model.layers[-1].name])
    assert type(new_model.get_layer("grouped")) is keras.layers.Conv2D


# ----------------------------------------------------------------------------
# Losses, saving, training
# ----------------------------------------------------------------------------


def _kl_normal(loc, scale, prior_loc, prior_scale):
    """KL(N(loc, scale) || N(prior_loc, prior_scale)), elementwise, float64."""
    loc, scale = np.asarray(loc, np.float64), np.asarray(scale, np.float64)
    return (
        math.log(prior_scale)
        - np.log(scale)
        + (scale**2 + (loc - prior_loc) ** 2) / (2 * prior_scale**2)
        - 0.5
    )


def test_one_kl_loss_per_replaced_layer():
    model = _conv_functional()
    prior = NormalPrior(0.0, 0.5)
    new_model = bayesianize(model, kl_weight=1e-3, initial_scale=0.02, kernel_prior=prior)
    new_model(_input_for(model, 8))
    assert len(new_model.losses) == 3
    expected = []
    for layer in _leaves(model):
        if type(layer) in FLIPOUT:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            expected.append(1e-3 * _kl_normal(kernel, 0.02, 0.0, 0.5).sum())
    losses = sorted(float(keras.ops.convert_to_numpy(loss)) for loss in new_model.losses)
    np.testing.assert_allclose(losses, sorted(expected), rtol=1e-4)


def test_save_and_load_round_trip(tmp_path):
    model = _conv_functional()
    new_model = bayesianize(model, seed=7, kl_weight=0.1, kernel_prior=NormalPrior(0.0, 0.3))
    path = tmp_path / "b.keras"
    new_model.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in new_model.layers]
    assert len(loaded.weights) == len(new_model.weights)
    for a, b in zip(new_model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), keras.ops.convert_to_numpy(a))
    for a, b in zip(new_model.layers, loaded.layers):
        assert b.get_config() == a.get_config()
    seeds = [
        layer.seed for layer in loaded.layers if isinstance(layer, (Conv2DFlipout, DenseFlipout))
    ]
    assert len(seeds) == 3 and len(set(seeds)) == 3 and all(s >= 7 for s in seeds)
    conv_b = loaded.get_layer("conv_b")
    assert conv_b.kernel_prior.get_config() == {"loc": 0.0, "scale": 0.3}
    assert conv_b.kl_weight == 0.1
    # Seeded and not yet called, the saved and the loaded model draw the same
    # weights in their first forward pass.
    x = _input_for(model, 8)
    first = _forward(new_model, x)
    np.testing.assert_allclose(_forward(loaded, x), first, rtol=1e-6, atol=1e-7)
    # (which is not trivial: the next draw differs by far more than that)
    assert np.abs(_forward(new_model, x) - first).max() > 1e-5


def test_same_seed_gives_same_first_predictions_and_layers_sample():
    model = _sequential()
    x = _input_for(model, 8)
    a = bayesianize(model, seed=3, initial_scale=0.3)
    b = bayesianize(model, seed=3, initial_scale=0.3)
    c = bayesianize(model, seed=4, initial_scale=0.3)
    pa, pb, pc = (_forward(m, x) for m in (a, b, c))
    np.testing.assert_allclose(pa, pb, rtol=1e-6, atol=1e-7)
    assert np.abs(pa - pc).max() > 1e-4
    # With a large scale the layers visibly sample: a second call differs
    # from the first, and both from the original model.
    again = _forward(a, x)
    assert np.abs(again - pa).max() > 1e-3
    assert np.abs(pa - _forward(model, x)).max() > 1e-3
    np.testing.assert_allclose(pa.sum(axis=1), 1.0, rtol=1e-5)


def test_new_model_trains_and_original_is_unchanged():
    kind = "nested"
    model = BUILDERS[kind]()
    before = [w.copy() for w in model.get_weights()]
    new_model = bayesianize(model, kl_weight=1 / 16)
    x = _input_for(model, 16)
    y = np.random.default_rng(1).integers(0, 3, size=16)
    new_model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = new_model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Training moved the new model's copies away from the original weights,
    # BN moving statistics included.
    name = "hidden" if kind == "sequential" else "outer_dense"
    old_kernel = keras.ops.convert_to_numpy(model.get_layer(name).kernel)
    new_kernel = keras.ops.convert_to_numpy(new_model.get_layer(name).kernel_loc)
    assert np.abs(new_kernel - old_kernel).max() > 0
    bn_old, bn_new = (
        next(layer for layer in _leaves(m) if isinstance(layer, keras.layers.BatchNormalization))
        for m in (model, new_model)
    )
    moving_old = keras.ops.convert_to_numpy(bn_old.moving_mean)
    assert np.abs(keras.ops.convert_to_numpy(bn_new.moving_mean) - moving_old).max() > 0
