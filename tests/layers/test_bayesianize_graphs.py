"""`bayesianize` on graphs beyond plain Dense/Conv2D stacks.

Functional graphs with raw tensor operations (`ReLU()(z + 3.0)`), the
`keras.applications` models, and the layers `bayesianize` cannot make
Bayesian (depthwise and separable convolutions), which it must name.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_reliability.layers import Conv2DFlipout
from keras_reliability.layers import DenseFlipout
from keras_reliability.layers import DenseReparameterization
from keras_reliability.layers import MCDropout
from keras_reliability.layers import VariationalLayer
from keras_reliability.layers import bayesianize

FLIPOUT = {keras.layers.Dense: DenseFlipout, keras.layers.Conv2D: Conv2DFlipout}


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _leaves(model):
    """The non-model, non-input layers of `model`, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            yield layer


def _raw_operations(model):
    """The nodes of `model`'s graph that are `keras.ops` operations, not layers."""
    return [op for op in model.operations if not isinstance(op, keras.layers.Layer)]


def _forward(model, x):
    """One eager inference pass, as numpy (no per-model compilation on JAX)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


def _deterministic(model):
    """Makes every Bayesian layer of `model` use its posterior means at inference."""
    layers = [layer for layer in _leaves(model) if isinstance(layer, VariationalLayer)]
    for layer in layers:
        layer.sample_at_inference = False
    return len(layers)


def _predict(model, x):
    """One inference pass of an application, as numpy.

    On JAX a compiled `predict`: eager, each of the hundreds of operations
    compiles on its own (minutes in all; no random op runs in it here).
    Elsewhere eager: TensorFlow's graph optimizer fuses a Conv2D and its bias
    differently from a Bayesian twin, which moves the logits by ~1e-4.
    """
    if keras.backend.backend() == "jax":
        return model.predict(x, batch_size=len(x), verbose=0)
    return _forward(model, x)


def _bayesianize_recording(model, **kwargs):
    """`bayesianize(model, **kwargs)` and the UserWarnings it emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        new_model = bayesianize(model, **kwargs)
    messages = [
        str(w.message)
        for w in caught
        if issubclass(w.category, UserWarning) and "bayesianize" in str(w.message)
    ]
    return new_model, messages


def _check_swapped(old_model, new_model, classes=FLIPOUT):
    """Replaced layers hold the old kernels and biases, the others the old weights.

    Returns the number of layers replaced.
    """
    old_layers, new_layers = list(_leaves(old_model)), list(_leaves(new_model))
    assert [layer.name for layer in new_layers] == [layer.name for layer in old_layers]
    replaced = 0
    for old, new in zip(old_layers, new_layers):
        if type(old) in classes:
            replaced += 1
            assert type(new) is classes[type(old)], (old.name, type(new).__name__)
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(new.kernel_loc), keras.ops.convert_to_numpy(old.kernel)
            )
            if old.use_bias:
                np.testing.assert_array_equal(
                    keras.ops.convert_to_numpy(new.bias_loc), keras.ops.convert_to_numpy(old.bias)
                )
        else:
            assert type(new) is type(old), old.name
            old_weights, new_weights = old.get_weights(), new.get_weights()
            assert len(new_weights) == len(old_weights), old.name
            for a, b in zip(old_weights, new_weights):
                np.testing.assert_array_equal(b, a)
    return replaced


# ----------------------------------------------------------------------------
# Raw tensor operations in a functional graph
# ----------------------------------------------------------------------------


def _raw_op_model(shift=3.0):
    inputs = keras.Input((4,))
    z = keras.layers.Dense(8, name="first")(inputs)
    h = keras.layers.ReLU(name="relu")(z + shift) if shift else keras.layers.ReLU(name="relu")(z)
    h = keras.layers.Dropout(0.2, name="drop")(h * 0.5)
    outputs = keras.layers.Dense(3, activation="softmax", name="last")(h)
    model = keras.Model(inputs, outputs, name="raw_ops")
    rng = np.random.default_rng(0)
    # Random biases (Keras starts them at zero) so that a lost copy shows.
    model.set_weights(
        [rng.normal(0.0, 0.5, w.shape).astype("float32") for w in model.get_weights()]
    )
    return model


def _inputs(n=6, features=4, seed=1):
    return np.random.default_rng(seed).normal(0.0, 2.0, (n, features)).astype("float32")


@pytest.mark.parametrize("method", ["flipout", "reparameterization"])
def test_raw_tensor_ops_graph_keeps_predictions(method):
    model = _raw_op_model()
    assert {type(op).__name__ for op in _raw_operations(model)} == {"Add", "Multiply"}
    x = _inputs()
    original = _forward(model, x)
    new_model, messages = _bayesianize_recording(model, method=method, seed=0)
    assert messages == []  # nothing with a kernel is left deterministic
    classes = {
        keras.layers.Dense: DenseFlipout if method == "flipout" else DenseReparameterization
    }
    assert _check_swapped(model, new_model, classes) == 2
    # The raw operations are rebuilt, not shared with the original graph.
    new_ops = _raw_operations(new_model)
    assert sorted(type(op).__name__ for op in new_ops) == ["Add", "Multiply"]
    assert not {id(op) for op in new_ops} & {id(op) for op in _raw_operations(model)}
    # At the posterior means the new model computes exactly what the old one did.
    assert _deterministic(new_model) == 2
    np.testing.assert_allclose(_forward(new_model, x), original, rtol=1e-6, atol=1e-6)
    # ... which is not trivial: without the `+ 3.0` the same weights predict otherwise.
    unshifted = _raw_op_model(shift=None)
    assert np.abs(_forward(unshifted, x) - original).max() > 1e-2


def test_raw_tensor_ops_in_a_nested_model():
    inner = _raw_op_model()
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(inner(inputs) - 0.5)
    model = keras.Model(inputs, outputs, name="outer")
    x = _inputs(seed=2)
    original = _forward(model, x)
    new_model = bayesianize(model)
    assert _check_swapped(model, new_model) == 3
    assert _deterministic(new_model) == 3
    np.testing.assert_allclose(_forward(new_model, x), original, rtol=1e-6, atol=1e-6)


def test_raw_tensor_ops_with_mc_dropout():
    model = _raw_op_model()
    new_model = bayesianize(model, method="mc_dropout")
    assert type(new_model.get_layer("drop")) is MCDropout
    for name in ("first", "last"):
        assert type(new_model.get_layer(name)) is keras.layers.Dense
        old_weights = model.get_layer(name).get_weights()
        for a, b in zip(old_weights, new_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(b, a)
    x = _inputs()
    assert np.abs(_forward(new_model, x) - _forward(new_model, x)).max() > 1e-4


def test_raw_tensor_ops_graph_saves_and_loads(tmp_path):
    model = _raw_op_model()
    new_model = bayesianize(model, seed=5)
    path = tmp_path / "raw_ops.keras"
    new_model.save(path)
    loaded = keras.models.load_model(path)
    assert sorted(type(op).__name__ for op in _raw_operations(loaded)) == ["Add", "Multiply"]
    assert _deterministic(loaded) == 2
    x = _inputs()
    np.testing.assert_allclose(_forward(loaded, x), _forward(model, x), rtol=1e-6, atol=1e-6)


def test_adapted_normalization_is_copied_into_its_state():
    # Normalization computes with tensors made from its weights (after
    # `adapt` or loading); a plain copy of the weights would leave the
    # clone normalizing with zeros and ones on TensorFlow and JAX.
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Normalization(name="norm")(inputs))
    model = keras.Model(inputs, outputs)
    norm = model.get_layer("norm")
    norm.adapt(np.random.default_rng(0).normal(5.0, 2.0, (64, 4)).astype("float32"))
    x = _inputs(seed=3) + 5.0
    expected = _forward(norm, x)
    assert np.abs(expected - x).max() > 1.0  # it does normalize
    new_model = bayesianize(model)
    copied = _forward(new_model.get_layer("norm"), x)
    np.testing.assert_allclose(copied, expected, rtol=1e-6, atol=1e-6)
    _deterministic(new_model)
    np.testing.assert_allclose(_forward(new_model, x), _forward(model, x), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------
# Layers left deterministic
# ----------------------------------------------------------------------------


def _depthwise_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw_a")(inputs)
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(x)
    x = keras.layers.DepthwiseConv2D(2, depth_multiplier=2, name="dw_b")(x)
    x = keras.layers.Conv2D(3, 1, name="pointwise")(x)
    x = keras.layers.SpatialDropout2D(0.2, name="spatial_drop")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.Dropout(0.1, name="drop")(x))
    return keras.Model(inputs, outputs, name="depthwise")


def test_one_warning_names_every_layer_left_deterministic_by_type():
    model = _depthwise_model()
    x = np.random.default_rng(3).normal(size=(2, 6, 6, 2)).astype("float32")
    original = _forward(model, x)
    new_model, messages = _bayesianize_recording(model)
    assert len(messages) == 1
    message = messages[0]
    assert "3 layer(s)" in message
    assert "DepthwiseConv2D (2): 'dw_a', 'dw_b'" in message
    assert "SeparableConv2D (1): 'sep'" in message
    for replaced in ("'pointwise'", "'logits'"):
        assert replaced not in message
    assert _check_swapped(model, new_model) == 2
    for name in ("dw_a", "sep", "dw_b"):
        assert type(new_model.get_layer(name)) is type(model.get_layer(name))
    assert _deterministic(new_model) == 2
    np.testing.assert_allclose(_forward(new_model, x), original, rtol=1e-5, atol=1e-6)


def test_naming_the_layers_silences_the_warning():
    model = _depthwise_model()
    new_model, messages = _bayesianize_recording(model, layers=["pointwise", "logits"])
    assert messages == []
    assert isinstance(new_model.get_layer("pointwise"), Conv2DFlipout)


@pytest.mark.parametrize("name, kind", [("dw_b", "DepthwiseConv2D"), ("sep", "SeparableConv2D")])
def test_naming_a_depthwise_or_separable_layer_raises(name, kind):
    expected = rf"`layers` names '{name}', a {kind}; method 'flipout' replaces Dense or Conv2D"
    with pytest.raises(ValueError, match=expected):
        bayesianize(_depthwise_model(), layers=["logits", name])


def test_mc_dropout_warns_about_other_dropout_layers():
    model = _depthwise_model()
    new_model, messages = _bayesianize_recording(model, method="mc_dropout")
    assert len(messages) == 1
    assert "SpatialDropout2D (1): 'spatial_drop'" in messages[0]
    assert "inactive at inference" in messages[0]
    assert "'drop'" not in messages[0]
    assert type(new_model.get_layer("drop")) is MCDropout
    assert type(new_model.get_layer("spatial_drop")) is keras.layers.SpatialDropout2D


def test_plain_models_give_no_warning():
    inputs = keras.Input((5,))
    hidden = keras.layers.BatchNormalization()(keras.layers.Dense(4)(inputs))
    outputs = keras.layers.Dense(2)(hidden)
    _, messages = _bayesianize_recording(keras.Model(inputs, outputs))
    assert messages == []


# ----------------------------------------------------------------------------
# keras.applications
# ----------------------------------------------------------------------------


def _perturb_state(model, seed=0):
    """Random biases, BN and Normalization statistics; kernels keep their init.

    Keras starts these at 0 / 1, which a copy that forgets them would also
    produce; the kernels are random already.
    """
    rng = np.random.default_rng(seed)
    for layer in _leaves(model):
        if not layer.weights:
            continue
        values = []
        for weight in layer.weights:
            value = keras.ops.convert_to_numpy(weight)
            shape = value.shape
            if weight.name in ("kernel", "depthwise_kernel", "count"):
                values.append(value)
            elif weight.name in ("moving_variance", "gamma"):
                values.append(rng.uniform(0.7, 1.3, shape).astype(value.dtype))
            elif weight.name == "variance":  # Normalization, after a 1/255 rescaling
                values.append(rng.uniform(0.04, 0.09, shape).astype(value.dtype))
            elif weight.name == "mean":
                values.append(rng.uniform(0.3, 0.6, shape).astype(value.dtype))
            else:  # bias, beta, moving_mean
                values.append(rng.normal(0.0, 0.1, shape).astype(value.dtype))
        layer.set_weights(values)
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


APPS = {
    # name: (constructor, raw keras.ops nodes expected, DepthwiseConv2D expected)
    "MobileNetV3Small": (keras.applications.MobileNetV3Small, True, True),
    "ResNet50V2": (keras.applications.ResNet50V2, False, False),
    "EfficientNetB0": (keras.applications.EfficientNetB0, False, True),
}


@pytest.mark.slow  # builds three keras.applications models
@pytest.mark.parametrize("name", sorted(APPS))
def test_keras_applications_keep_their_predictions(name):
    if keras.backend.backend() == "jax" and name != "MobileNetV3Small":
        # Building ResNet50V2 or EfficientNetB0 compiles an initializer per
        # weight shape on JAX (minutes on 2 CPUs); the swap itself is
        # backend-independent and runs here on TensorFlow and PyTorch.
        pytest.skip("ResNet50V2 and EfficientNetB0 are built on TensorFlow and PyTorch only")
    constructor, has_raw_ops, has_depthwise = APPS[name]
    model = constructor(
        input_shape=(32, 32, 3), weights=None, classes=3, classifier_activation=None
    )
    _perturb_state(model)
    assert bool(_raw_operations(model)) == has_raw_ops
    x = np.random.default_rng(4).uniform(0.0, 255.0, (2, 32, 32, 3)).astype("float32")
    original = _predict(model, x)
    assert np.isfinite(original).all() and np.abs(original).max() > 1e-3

    new_model, messages = _bayesianize_recording(model, seed=0)

    expected = sum(type(layer) in FLIPOUT for layer in _leaves(model))
    assert expected >= 20
    assert _check_swapped(model, new_model) == expected
    depthwise = [
        layer.name for layer in _leaves(model) if isinstance(layer, keras.layers.DepthwiseConv2D)
    ]
    assert bool(depthwise) == has_depthwise
    if has_depthwise:
        # One warning, naming every depthwise layer (and nothing else).
        assert len(messages) == 1
        assert f"{len(depthwise)} layer(s)" in messages[0]
        assert f"DepthwiseConv2D ({len(depthwise)}): " in messages[0]
        for layer_name in depthwise:
            assert f"'{layer_name}'" in messages[0]
    else:
        assert messages == []
    # At the posterior means the predictions are the original ones.
    assert _deterministic(new_model) == expected
    scale = float(np.abs(original).max())
    predicted = _predict(new_model, x)
    np.testing.assert_allclose(predicted, original, rtol=1e-5, atol=1e-5 * max(scale, 1.0))
