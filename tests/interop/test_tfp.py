"""Tests for `keras_reliability.interop.tfp.from_tfp`.

References are TensorFlow Probability itself: the `tfp.layers` model being
converted (its posterior variables, the KL losses it adds, its Monte-Carlo
predictions) and `tfd.kl_divergence` for the Normal KL. Monte-Carlo means
are compared within a few standard errors estimated from the samples.
"""

import sys

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip(
        "the from_tfp tests run on the TensorFlow backend only (they run tf_keras models "
        "alongside the converted Keras 3 ones)",
        allow_module_level=True,
    )
tfp = pytest.importorskip("tensorflow_probability")
tf_keras = pytest.importorskip("tf_keras")

import tensorflow as tf  # noqa: E402

from keras_reliability import layers as kr_layers  # noqa: E402
from keras_reliability.interop.tfp import from_tfp  # noqa: E402

tfd = tfp.distributions
BAYESIAN_CONVOLUTIONS = (
    tfp.layers.Convolution2DFlipout,
    tfp.layers.Convolution2DReparameterization,
)
# TFP's own deprecation and initializer warnings, raised while it builds layers.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`layer.add_variable` is deprecated:UserWarning",
    "ignore:The initializer RandomNormal is unseeded:UserWarning",
)
NUM_EXAMPLES = 500
# Standard errors a Monte-Carlo mean may be off by (two-sided p ~ 3e-5 each).
Z = 4.2


def kl_over_n(q, p, _):
    return tfd.kl_divergence(q, p) / NUM_EXAMPLES


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    tf_keras.utils.set_random_seed(1234)


def _randomize(model, seed=0):
    """Random posterior parameters and weights, so that copies are not trivial."""
    rng = np.random.default_rng(seed)
    for variable in model.variables:
        shape = tuple(variable.shape)
        if "untransformed_scale" in variable.name:
            value = rng.uniform(-4.0, -1.0, shape)  # posterior std 0.018 .. 0.31
        elif "moving_variance" in variable.name:
            value = rng.uniform(0.5, 2.0, shape)
        else:
            value = rng.normal(0.0, 0.4, shape)
        variable.assign(value.astype(variable.dtype.as_numpy_dtype))
    return model


def _mlp():
    return _randomize(
        tf_keras.Sequential(
            [
                tf_keras.layers.InputLayer(input_shape=(4, 3)),
                tf_keras.layers.Flatten(),
                tfp.layers.DenseFlipout(16, activation="relu", kernel_divergence_fn=kl_over_n),
                tf_keras.layers.Dropout(0.25),
                tfp.layers.DenseReparameterization(
                    8, activation="tanh", kernel_divergence_fn=kl_over_n
                ),
                tf_keras.layers.Dense(3, activation="softmax"),
            ],
            name="tfp_mlp",
        )
    )


def _posterior(tfp_layer, which="kernel"):
    distribution = getattr(tfp_layer, f"{which}_posterior").distribution
    scale = getattr(distribution, "scale", None)
    return np.asarray(distribution.loc), None if scale is None else np.asarray(scale)


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _normal_kl_reference(loc, scale, prior_loc=0.0, prior_scale=1.0):
    kl = tfd.kl_divergence(tfd.Normal(loc, scale), tfd.Normal(prior_loc, prior_scale))
    return float(tf.reduce_sum(kl))


# 1. Conversion.


def test_converts_layers_and_copies_every_variable():
    old = _mlp()
    new = from_tfp(old)
    assert isinstance(new, keras.Sequential) and new.name == "tfp_mlp"
    assert [type(layer) for layer in new.layers] == [
        keras.layers.Flatten,
        kr_layers.DenseFlipout,
        keras.layers.Dropout,
        kr_layers.DenseReparameterization,
        keras.layers.Dense,
    ]
    assert [layer.name for layer in new.layers] == [layer.name for layer in old.layers]
    activations = [keras.activations.serialize(new.layers[i].activation) for i in (1, 3, 4)]
    assert activations == ["relu", "tanh", "softmax"]
    assert new.layers[2].rate == 0.25

    for index in (1, 3):
        tfp_layer, ours = old.layers[index], new.layers[index]
        loc, scale = _posterior(tfp_layer)
        bias, bias_scale = _posterior(tfp_layer, "bias")
        assert bias_scale is None and not ours.bayesian_bias
        np.testing.assert_array_equal(_np(ours.kernel_loc), loc)
        np.testing.assert_array_equal(_np(ours.bias_loc), bias)
        # The posterior standard deviations agree to float32 rounding.
        np.testing.assert_allclose(_np(ours.kernel_scale), scale, rtol=1e-6, atol=0)
        assert ours.kernel_prior.get_config() == {"loc": 0.0, "scale": 1.0}
        assert ours.kl_weight == pytest.approx(1 / NUM_EXAMPLES, rel=1e-5)
        assert ours.sample_at_inference
    for ours, theirs in zip(new.layers[4].weights, old.layers[4].weights):
        np.testing.assert_array_equal(_np(ours), theirs.numpy())
    # The original model is untouched and the copies are independent.
    new.layers[1].kernel_loc.assign(np.zeros(new.layers[1].kernel_loc.shape, "float32"))
    assert np.any(_posterior(old.layers[1])[0] != 0)


def test_untransformed_scale_is_copied_one_to_one():
    old = _mlp()
    new = from_tfp(old)
    raw = old.layers[1].kernel_posterior.distribution.scale.pretransformed_input.numpy()
    np.testing.assert_array_equal(_np(new.layers[1].kernel_untransformed_scale), raw)


def test_explicit_kl_weight_and_seed():
    old = _mlp()
    new = from_tfp(old, kl_weight=0.25, seed=7)
    assert new.layers[1].kl_weight == 0.25 and new.layers[3].kl_weight == 0.25
    assert new.layers[1].seed == 8 and new.layers[3].seed == 10
    assert from_tfp(old, kl_weight=0).layers[1].kl_weight == 0.0


def test_functional_chain_and_nested_sequential():
    inputs = tf_keras.Input((5,))
    hidden = tfp.layers.DenseFlipout(4, activation="relu", kernel_divergence_fn=kl_over_n)(inputs)
    block = tf_keras.Sequential([tf_keras.layers.Dense(3), tf_keras.layers.Activation("softmax")])
    old = _randomize(tf_keras.Model(inputs, block(hidden), name="chain"))
    new = from_tfp(old)
    assert [type(layer) for layer in new.layers] == [
        kr_layers.DenseFlipout,
        keras.layers.Dense,
        keras.layers.Activation,
    ]
    np.testing.assert_array_equal(_np(new.layers[1].kernel), block.layers[0].kernel.numpy())
    assert new.layers[0].kl_weight == pytest.approx(1 / NUM_EXAMPLES, rel=1e-5)


# 2. KL divergence.


def test_kl_matches_tfp_losses_and_normal_kl():
    old = _mlp()
    new = from_tfp(old)
    x = np.random.default_rng(1).normal(size=(2, 4, 3)).astype("float32")
    old(x)
    new(x)
    theirs = sum(float(loss) for loss in old.losses)
    ours = sum(float(loss) for loss in new.losses)
    assert len(new.losses) == 2
    assert ours == pytest.approx(theirs, rel=2e-6)
    for index in (1, 3):
        layer = new.layers[index]
        reference = _normal_kl_reference(layer.kernel_loc.value, layer.kernel_scale)
        assert float(layer.losses[0]) == pytest.approx(reference / NUM_EXAMPLES, rel=2e-6)
        (tfp_loss,) = old.layers[index].losses
        assert float(layer.losses[0]) == pytest.approx(float(tfp_loss), rel=2e-6)


def _normal_prior_fn(loc, scale):
    def prior_fn(dtype, shape, name, trainable, add_variable_fn):
        del name, trainable, add_variable_fn
        normal = tfd.Normal(
            loc=tf.fill(shape, tf.constant(loc, dtype)), scale=tf.constant(scale, dtype)
        )
        return tfd.Independent(normal, reinterpreted_batch_ndims=len(shape))

    return prior_fn


def test_bayesian_bias_and_non_standard_priors():
    old = _randomize(
        tf_keras.Sequential(
            [
                tf_keras.layers.InputLayer(input_shape=(6,)),
                tfp.layers.DenseReparameterization(
                    5,
                    kernel_prior_fn=_normal_prior_fn(0.1, 0.5),
                    kernel_divergence_fn=lambda q, p, _: tfd.kl_divergence(q, p) * 0.02,
                    bias_posterior_fn=tfp.layers.util.default_mean_field_normal_fn(),
                    bias_prior_fn=_normal_prior_fn(-0.2, 2.0),
                    bias_divergence_fn=lambda q, p, _: 0.02 * tfd.kl_divergence(q, p),
                ),
            ]
        )
    )
    (layer,) = from_tfp(old).layers
    assert layer.bayesian_bias
    assert layer.kernel_prior.get_config() == {"loc": pytest.approx(0.1), "scale": 0.5}
    assert layer.bias_prior.get_config() == {"loc": pytest.approx(-0.2), "scale": 2.0}
    assert layer.kl_weight == pytest.approx(0.02, rel=1e-5)
    bias, bias_scale = _posterior(old.layers[0], "bias")
    np.testing.assert_array_equal(_np(layer.bias_loc), bias)
    np.testing.assert_allclose(_np(layer.bias_scale), bias_scale, rtol=1e-6)

    x = np.ones((3, 6), "float32")
    old(x)
    layer(x)
    theirs = sum(float(loss) for loss in old.layers[0].losses)
    assert float(layer.losses[0]) == pytest.approx(theirs, rel=2e-6)
    loc, scale = _posterior(old.layers[0])
    reference = _normal_kl_reference(loc, scale, 0.1, 0.5) + _normal_kl_reference(
        bias, bias_scale, -0.2, 2.0
    )
    assert float(layer.losses[0]) == pytest.approx(0.02 * reference, rel=2e-6)


def test_layer_without_prior_gets_zero_kl_weight():
    old = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer(input_shape=(3,)),
            tfp.layers.DenseFlipout(2, kernel_prior_fn=None),
        ]
    )
    for kl_weight in ("infer", 0.5):
        (layer,) = from_tfp(old, kl_weight=kl_weight).layers
        assert layer.kl_weight == 0.0
        layer(np.ones((1, 3), "float32"))
        assert float(layer.losses[0]) == 0.0


# 3. Predictive means.


def _mc_samples_tiled(model, x, copies):
    """`copies` samples of `model(x)` from one call on a tiled batch."""
    outputs = np.asarray(model(np.tile(x, (copies,) + (1,) * (x.ndim - 1)), training=False))
    return outputs.reshape((copies,) + x.shape[:1] + outputs.shape[1:])


def _mean_and_se(samples):
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(len(samples))


def test_mc_mean_of_linear_last_layer_matches_exact_mean():
    old = _randomize(
        tf_keras.Sequential(
            [
                tf_keras.layers.InputLayer(input_shape=(5,)),
                tf_keras.layers.Dense(8, activation="relu"),
                tfp.layers.DenseFlipout(3, kernel_divergence_fn=kl_over_n),
            ]
        ),
        seed=3,
    )
    new = from_tfp(old, seed=11)
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    dense, flipout = old.layers
    hidden = np.maximum(x @ dense.kernel.numpy() + dense.bias.numpy(), 0.0).astype(np.float64)
    loc, _ = _posterior(flipout)
    bias, _ = _posterior(flipout, "bias")
    exact = hidden @ loc.astype(np.float64) + bias

    # Flipout rows of one call share the perturbation but flip its signs per
    # row: they are uncorrelated, so the usual standard error applies.
    for model in (old, new):
        mean, se = _mean_and_se(_mc_samples_tiled(model, x, 2000))
        assert np.all(se > 0) and np.mean(se) > 1e-3  # the posterior is not a point mass
        np.testing.assert_array_less(np.abs(mean - exact), Z * se)

    new.layers[-1].sample_at_inference = False
    deterministic = _np(new(x, training=False))
    np.testing.assert_allclose(deterministic, exact, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_np(new(x, training=False)), deterministic)


def test_mc_means_of_deeper_model_agree():
    old = _mlp()
    new = from_tfp(old, seed=5)
    x = np.random.default_rng(4).normal(size=(4, 4, 3)).astype("float32")
    draws, copies = 400, 5
    # DenseReparameterization draws one kernel per call, shared by the rows of
    # the call: TFP's samples are per-call means, independent across calls.
    step = tf.function(lambda batch: old(batch, training=False))
    tiled = np.tile(x, (copies, 1, 1))
    theirs = np.stack(
        [np.asarray(step(tiled)).reshape(copies, 4, 3).mean(0) for _ in range(draws)]
    )
    # Ours: one call in which every copy of the batch gets its own weights.
    with kr_layers.sample_groups(draws):
        ours = _mc_samples_tiled(new, x, draws)
    mean_theirs, se_theirs = _mean_and_se(theirs)
    mean_ours, se_ours = _mean_and_se(ours)
    assert np.all(se_ours > 1e-4) and np.all(se_theirs > 1e-4)
    np.testing.assert_array_less(
        np.abs(mean_ours - mean_theirs), Z * np.sqrt(se_ours**2 + se_theirs**2)
    )


# 4. Convolutions.


def test_conv_model_conversion():
    old = _randomize(
        tf_keras.Sequential(
            [
                tf_keras.layers.InputLayer(input_shape=(8, 8, 2)),
                tfp.layers.Convolution2DFlipout(
                    4, 3, padding="same", activation="relu", kernel_divergence_fn=kl_over_n
                ),
                tf_keras.layers.MaxPooling2D(2),
                tf_keras.layers.BatchNormalization(),
                tfp.layers.Convolution2DReparameterization(
                    3, (3, 2), strides=(1, 2), kernel_divergence_fn=kl_over_n
                ),
                tf_keras.layers.Conv2D(2, 1, activation="elu"),
                tf_keras.layers.Flatten(),
                tf_keras.layers.Dense(3, activation="softmax"),
            ]
        ),
        seed=5,
    )
    new = from_tfp(old)
    assert [type(layer) for layer in new.layers] == [
        kr_layers.Conv2DFlipout,
        keras.layers.MaxPooling2D,
        keras.layers.BatchNormalization,
        kr_layers.Conv2DReparameterization,
        keras.layers.Conv2D,
        keras.layers.Flatten,
        keras.layers.Dense,
    ]
    conv = new.layers[3]
    assert conv.kernel_size == (3, 2) and conv.strides == (1, 2) and conv.padding == "valid"
    for index in (0, 3):
        loc, scale = _posterior(old.layers[index])
        assert tuple(new.layers[index].kernel_loc.shape) == loc.shape
        np.testing.assert_array_equal(_np(new.layers[index].kernel_loc), loc)
        np.testing.assert_allclose(_np(new.layers[index].kernel_scale), scale, rtol=1e-6)
        np.testing.assert_array_equal(
            _np(new.layers[index].bias_loc), _posterior(old.layers[index], "bias")[0]
        )

    x = np.random.default_rng(6).normal(size=(3, 8, 8, 2)).astype("float32")
    old(x)
    new(x)
    theirs = sum(float(loss) for loss in old.losses)
    assert sum(float(loss) for loss in new.losses) == pytest.approx(theirs, rel=2e-6)

    # With the posterior means, the output is that of plain convolutions with
    # the TFP posterior means as kernels: the kernel layouts agree.
    twin = tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer(input_shape=(8, 8, 2)),
            tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            tf_keras.layers.MaxPooling2D(2),
            tf_keras.layers.BatchNormalization(),
            tf_keras.layers.Conv2D(3, (3, 2), strides=(1, 2)),
            tf_keras.layers.Conv2D(2, 1, activation="elu"),
            tf_keras.layers.Flatten(),
            tf_keras.layers.Dense(3, activation="softmax"),
        ]
    )
    for twin_layer, old_layer in zip(twin.layers, old.layers):
        if isinstance(old_layer, BAYESIAN_CONVOLUTIONS):
            twin_layer.set_weights([_posterior(old_layer)[0], _posterior(old_layer, "bias")[0]])
        else:
            twin_layer.set_weights(old_layer.get_weights())
    for index in (0, 3):
        new.layers[index].sample_at_inference = False
    np.testing.assert_allclose(
        _np(new(x, training=False)), twin(x, training=False).numpy(), rtol=1e-5, atol=1e-6
    )


# 5. Errors.


@pytest.mark.parametrize("kl_weight", [-1, float("nan"), float("inf"), "auto", True, None])
def test_invalid_kl_weight(kl_weight):
    pattern = r"`kl_weight`.*received " + repr(kl_weight).replace("(", r"\(")
    with pytest.raises(ValueError, match=pattern):
        from_tfp(_mlp(), kl_weight=kl_weight)


def test_invalid_seed():
    with pytest.raises(ValueError, match=r"`seed`.*'a'"):
        from_tfp(_mlp(), seed="a")


@pytest.mark.parametrize(
    "make_layer, class_name",
    [
        (lambda: tf_keras.layers.GaussianNoise(0.1), "GaussianNoise"),
        (lambda: tfp.layers.DenseLocalReparameterization(3), "DenseLocalReparameterization"),
    ],
)
def test_unsupported_layer(make_layer, class_name):
    old = tf_keras.Sequential([tf_keras.layers.InputLayer(input_shape=(3,)), make_layer()])
    name = old.layers[0].name
    pattern = rf"{name}'.*{class_name}.*Supported layers: .*DenseFlipout"
    with pytest.raises(ValueError, match=pattern):
        from_tfp(old)


def test_branching_functional_and_subclassed_models_are_rejected():
    inputs = tf_keras.Input((4,))
    left = tfp.layers.DenseFlipout(2)(inputs)
    right = tf_keras.layers.Dense(2)(inputs)
    branching = tf_keras.Model(inputs, tf_keras.layers.Add()([left, right]))
    with pytest.raises(ValueError, match="single chain"):
        from_tfp(branching)

    class Subclassed(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = tfp.layers.DenseFlipout(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    with pytest.raises(ValueError, match="subclassed"):
        from_tfp(model)
    model(np.ones((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        from_tfp(model)


def test_not_a_tf_keras_model_or_not_built():
    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="tf_keras model.*bayesianize"):
        from_tfp(keras_model)
    with pytest.raises(ValueError, match="tf_keras model"):
        from_tfp("model")
    with pytest.raises(ValueError, match="not built"):
        from_tfp(tf_keras.Sequential([tfp.layers.DenseFlipout(2)]))


def _single(**kwargs):
    return tf_keras.Sequential(
        [
            tf_keras.layers.InputLayer(input_shape=(3,)),
            tfp.layers.DenseReparameterization(2, **kwargs),
        ]
    )


def test_stochastic_divergence_needs_explicit_kl_weight():
    monte_carlo = lambda q, p, w: (q.log_prob(w) - p.log_prob(w)) / NUM_EXAMPLES  # noqa: E731
    old = _single(kernel_divergence_fn=monte_carlo)
    with pytest.raises(ValueError, match="Monte-Carlo.*Pass `kl_weight` explicitly"):
        from_tfp(old)
    (layer,) = from_tfp(old, kl_weight=1 / NUM_EXAMPLES).layers
    assert layer.kl_weight == 1 / NUM_EXAMPLES


def test_non_proportional_divergence_is_rejected():
    old = _single(kernel_divergence_fn=lambda q, p, _: tfd.kl_divergence(q, p) / NUM_EXAMPLES + 1.0)
    with pytest.raises(ValueError, match="not a constant multiple.*kl_weight"):
        from_tfp(old)


def test_non_normal_prior_is_rejected():
    def laplace_prior(dtype, shape, name, trainable, add_variable_fn):
        return tfd.Independent(tfd.Laplace(tf.zeros(shape, dtype), 1.0), len(shape))

    old = _single(kernel_prior_fn=laplace_prior, kernel_divergence_fn=lambda q, p, w: 0.0)
    pattern = r"dense_reparameterization.*\(DenseReparameterization\).*Laplace"
    with pytest.raises(ValueError, match=pattern):
        from_tfp(old, kl_weight=0.1)


def test_activation_that_differs_in_keras_3_is_rejected():
    # tf_keras' hard_sigmoid is clip(0.2 x + 0.5); Keras 3's is relu6(x + 3) / 6.
    with pytest.raises(ValueError, match="hard_sigmoid.*different function"):
        from_tfp(_single(activation="hard_sigmoid"))


def test_missing_tfp_raises_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_probability", None)
    with pytest.raises(ImportError, match=r"pip install keras-reliability\[tfp\]"):
        from_tfp(object())


# 6. Training and saving.


def test_converted_model_trains_saves_and_loads(tmp_path):
    new = from_tfp(_mlp(), seed=3)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 4, 3)).astype("float32")
    y = rng.integers(0, 3, size=64)
    new.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    before = _np(new.layers[1].kernel_loc).copy()
    history = new.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(_np(new.layers[1].kernel_loc), before)

    path = tmp_path / "converted.keras"
    new.save(path)
    loaded = keras.models.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in new.layers]
    for ours, theirs in zip(loaded.weights, new.weights):
        np.testing.assert_array_equal(_np(ours), _np(theirs))
    for model in (new, loaded):
        for index in (1, 3):
            model.layers[index].sample_at_inference = False
    np.testing.assert_allclose(_np(loaded(x[:5])), _np(new(x[:5])), rtol=1e-6, atol=1e-7)
    assert loaded.layers[3].kl_weight == new.layers[3].kl_weight
