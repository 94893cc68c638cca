"""Tests for the Bayesian layers: DenseFlipout, DenseReparameterization,
Conv2DFlipout and Conv2DReparameterization.

Reference values are computed independently here in float64 numpy (posterior
means, closed-form and Monte-Carlo KL divergences, Flipout moments) or with
`keras.layers.Conv2D` holding the same kernel; nothing is copied from a run.
"""

import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability.layers import Conv2DFlipout
from keras_reliability.layers import Conv2DReparameterization
from keras_reliability.layers import DenseFlipout
from keras_reliability.layers import DenseReparameterization
from keras_reliability.layers import NormalPrior
from keras_reliability.layers import ScaleMixturePrior
from keras_reliability.layers import VariationalLayer
from keras_reliability.layers import sample_groups
from keras_reliability.layers import sampling
from keras_reliability.layers import variational

BACKEND = keras.backend.backend()

DENSE = (DenseFlipout, DenseReparameterization)
CONV = (Conv2DFlipout, Conv2DReparameterization)
ALL = DENSE + CONV


def _ids(classes):
    return [cls.__name__ for cls in classes]


# --------------------------------------------------------------------------
# Independent helpers.
# --------------------------------------------------------------------------


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


EPS32 = float(np.finfo(np.float32).eps)


def _f64(x):
    return _np(x).astype(np.float64)


def _scale_of(untransformed):
    """eps + softplus(rho) (float32 eps, as in tfp.layers), in float64 numpy."""
    return EPS32 + np.logaddexp(0.0, _f64(untransformed))


def _untransformed(scale):
    """Inverse of `_scale_of`."""
    return np.log(np.expm1(np.asarray(scale, np.float64) - EPS32))


def _kl_normal(mq, sq, mp, sp):
    """Summed KL(Normal(mq, sq) || Normal(mp, sp))."""
    return float(np.sum(np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2.0 * sp**2) - 0.5))


def _normal_logpdf(w, loc, scale):
    return -0.5 * ((w - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2.0 * np.pi)


def _mixture_logpdf(w, pi, sigma_1, sigma_2):
    return np.logaddexp(
        np.log(pi) + _normal_logpdf(w, 0.0, sigma_1),
        np.log1p(-pi) + _normal_logpdf(w, 0.0, sigma_2),
    )


def _make(cls, **kwargs):
    """A small layer of `cls`: 3 units, or 2 filters with a 3x3 window."""
    if cls in DENSE:
        return cls(3, **kwargs)
    kwargs.setdefault("kernel_size", 3)
    kwargs.setdefault("padding", "same")
    return cls(2, **kwargs)


def _inputs(cls, batch=4, seed=0, data_format="channels_last"):
    rng = np.random.default_rng(seed)
    if cls in DENSE:
        shape = (batch, 4)
    elif data_format == "channels_last":
        shape = (batch, 6, 7, 2)
    else:
        shape = (batch, 2, 6, 7)
    return rng.normal(size=shape).astype("float32")


def _conv_reference(layer, kernel, bias, x):
    """keras.layers.Conv2D with the layer's geometry and the given weights."""
    reference = keras.layers.Conv2D(
        layer.filters,
        layer.kernel_size,
        strides=layer.strides,
        padding=layer.padding,
        data_format=layer.data_format,
        dilation_rate=layer.dilation_rate,
        use_bias=bias is not None,
    )
    reference.build(x.shape)
    reference.set_weights([kernel] + ([bias] if bias is not None else []))
    return _f64(reference(x))


def _posterior_mean_output(layer, x):
    loc = _f64(layer.kernel_loc)
    bias = _f64(layer.bias_loc) if layer.use_bias else None
    if isinstance(layer, DENSE):
        out = x.astype(np.float64) @ loc
        return out + bias if bias is not None else out
    return _conv_reference(layer, loc.astype("float32"), None if bias is None else bias.astype("float32"), x)


def _model(**kwargs):
    """One Bayesian layer of each class, then a plain Dense (one compile for
    all four). Kernel shapes match `_make`'s, so that the jax backend
    compiles each initializer once."""
    return keras.Sequential(
        [
            keras.Input((6, 7, 2)),
            Conv2DFlipout(2, 3, padding="same", activation="tanh", **kwargs),
            Conv2DReparameterization(2, 3, padding="same", activation="tanh", **kwargs),
            keras.layers.GlobalAveragePooling2D(),
            DenseFlipout(4, activation="tanh", **kwargs),
            DenseReparameterization(3, **kwargs),
            keras.layers.Dense(2),
        ]
    )


def _model_data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 7, 2)).astype("float32"), rng.normal(size=(n, 2)).astype("float32")


def _bayesian_layers(model):
    return [layer for layer in model.layers if isinstance(layer, VariationalLayer)]


# --------------------------------------------------------------------------
# 1. Sampling vs posterior mean.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_outputs_are_sampled_in_training_and_at_inference_by_default(cls):
    layer = _make(cls, bias_initializer="random_normal")
    x = _inputs(cls)
    for training in (True, False):
        first = _np(layer(x, training=training))
        second = _np(layer(x, training=training))
        assert first.shape == second.shape == tuple(layer.compute_output_shape(x.shape))
        assert not np.allclose(first, second, atol=1e-4)
        # The samples scatter around the posterior-mean output.
        mean = _posterior_mean_output(layer, x)
        assert not np.allclose(first, mean, atol=1e-4)
        assert np.max(np.abs(first - mean)) < 2.0


def _skip_channels_first_on_tensorflow_cpu(data_format):
    # TensorFlow 2.21's CPU kernels implement NHWC convolutions only; Keras'
    # own Conv2D fails there the same way ("UnimplementedError").
    if data_format != "channels_first" or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow's CPU kernels do not implement channels_first convolutions")


CONV_GEOMETRIES = [
    {"kernel_size": 3, "strides": (2, 1), "padding": "same"},
    {"kernel_size": 3, "dilation_rate": (1, 2), "padding": "valid"},
    {"kernel_size": 3, "padding": "same", "data_format": "channels_first"},
]


def _cases_with_geometry():
    cases = [pytest.param(cls, {}, id=cls.__name__) for cls in DENSE]
    for cls in CONV:
        for i, geometry in enumerate(CONV_GEOMETRIES):
            cases.append(pytest.param(cls, geometry, id=f"{cls.__name__}-geometry{i}"))
    return cases


@pytest.mark.parametrize("cls, geometry", _cases_with_geometry())
def test_posterior_mean_without_sampling_at_inference(cls, geometry):
    _skip_channels_first_on_tensorflow_cpu(geometry.get("data_format"))
    layer = _make(cls, sample_at_inference=False, bias_initializer="random_normal", **geometry)
    x = _inputs(cls, data_format=geometry.get("data_format", "channels_last"))
    first = _np(layer(x, training=False))
    second = _np(layer(x))
    np.testing.assert_array_equal(first, second)
    assert first.shape == tuple(layer.compute_output_shape(x.shape))
    np.testing.assert_allclose(first, _posterior_mean_output(layer, x), rtol=1e-5, atol=1e-5)
    # Training still samples.
    assert not np.allclose(_np(layer(x, training=True)), first, atol=1e-4)


@pytest.mark.parametrize("cls", DENSE, ids=_ids(DENSE))
def test_dense_on_three_dimensional_inputs(cls):
    layer = cls(3, sample_at_inference=False, bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    out = _np(layer(x))
    assert out.shape == (2, 5, 3)
    np.testing.assert_allclose(out, _posterior_mean_output(layer, x), rtol=1e-5, atol=1e-5)
    assert _np(layer(x, training=True)).shape == (2, 5, 3)


def test_untransformed_scale_inverts_the_softplus_parameterisation():
    scale = np.array([2e-5, 0.01, 0.05, 1.0, 30.0])
    rho = variational.untransformed_scale(scale)
    np.testing.assert_allclose(_scale_of(rho), scale, rtol=1e-12)
    np.testing.assert_allclose(rho, _untransformed(scale), rtol=1e-10)
    with pytest.raises(ValueError, match=re.escape("A posterior scale must be > 1.19e-07 (float32 eps); received")):
        variational.untransformed_scale([0.5, 1e-8])


# --------------------------------------------------------------------------
# 2. Seeds.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_same_seed_gives_same_samples(cls):
    x = _inputs(cls)

    def built(seed):
        layer = _make(cls, seed=seed, bayesian_bias=True)
        layer.build(x.shape)
        return layer

    source = built(7)
    twin = built(7)
    other = built(8)
    twin.set_weights(source.get_weights())
    other.set_weights(source.get_weights())
    for training in (True, False, True):
        expected = _np(source(x, training=training))
        np.testing.assert_array_equal(_np(twin(x, training=training)), expected)
        assert not np.allclose(_np(other(x, training=training)), expected, atol=1e-4)
    assert source.get_config()["seed"] == 7


# --------------------------------------------------------------------------
# 3. One loss per Bayesian layer.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_model_has_one_loss_per_bayesian_layer(kind):
    # Two Bayesian layers and a plain Dense: two losses.
    first, second = (DENSE if kind == "dense" else CONV)
    x = _inputs(first)
    layers = [keras.Input(x.shape[1:]), _make(first)]
    if kind == "dense":
        layers += [keras.layers.Dense(4), _make(second)]
    else:
        layers += [_make(second), keras.layers.Flatten(), keras.layers.Dense(2)]
    model = keras.Sequential(layers)
    for _ in range(2):  # each call replaces the losses, it does not accumulate them
        model(x)
        assert len(model.losses) == 2
        for layer, loss in zip(_bayesian_layers(model), model.losses):
            assert len(layer.losses) == 1
            assert float(_np(loss)) == float(_np(layer.losses[0]))
    plain = [l for l in model.layers if isinstance(l, keras.layers.Dense)]
    assert len(plain) == 1 and len(plain[0].losses) == 0


# --------------------------------------------------------------------------
# 4. KL divergence.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("bayesian_bias", [False, True], ids=["plain-bias", "bayesian-bias"])
@pytest.mark.parametrize("prior", [(0.0, 1.0), (0.5, 2.0)], ids=["N(0,1)", "N(0.5,2)"])
@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_kl_matches_closed_form(cls, prior, bayesian_bias):
    kl_weight = 0.3
    layer = _make(
        cls,
        kernel_prior=NormalPrior(*prior),
        bias_prior=NormalPrior(*prior),
        bayesian_bias=bayesian_bias,
        bias_initializer="random_normal",
        kernel_untransformed_scale_initializer=keras.initializers.RandomUniform(-3.0, 1.0),
        bias_untransformed_scale_initializer=keras.initializers.RandomUniform(-3.0, 1.0),
        kl_weight=kl_weight,
    )
    layer(_inputs(cls))
    expected = _kl_normal(_f64(layer.kernel_loc), _scale_of(layer.kernel_untransformed_scale), *prior)
    if bayesian_bias:
        expected += _kl_normal(_f64(layer.bias_loc), _scale_of(layer.bias_untransformed_scale), *prior)
    assert len(layer.losses) == 1
    assert float(_np(layer.losses[0])) == pytest.approx(kl_weight * expected, rel=1e-5)
    # The closed form does not depend on the sample: a second call agrees.
    layer(_inputs(cls, seed=1), training=True)
    assert float(_np(layer.losses[0])) == pytest.approx(kl_weight * expected, rel=1e-5)


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_kl_matches_tensorflow_probability(cls):
    if BACKEND != "tensorflow":
        pytest.skip("the tensorflow_probability comparison needs the tensorflow backend")
    tfp = pytest.importorskip("tensorflow_probability")
    layer = _make(cls, kernel_untransformed_scale_initializer=keras.initializers.RandomUniform(-3.0, 1.0))
    layer(_inputs(cls))
    tfd = tfp.distributions
    reference = tfd.kl_divergence(tfd.Normal(layer.kernel_loc, layer.kernel_scale), tfd.Normal(0.0, 1.0))
    assert float(_np(layer.losses[0])) == pytest.approx(float(np.sum(_np(reference))), rel=1e-5)


def _mixture_kl_samples(loc, scale, mixture, num, seed):
    """Numpy one-sample KL estimates sum(log q(w) - log p(w)), w ~ q."""
    eps = np.random.default_rng(seed).normal(size=(num,) + loc.shape)
    w = loc + scale * eps
    log_q = _normal_logpdf(eps, 0.0, 1.0) - np.log(scale)
    log_p = _mixture_logpdf(w, mixture.pi, mixture.sigma_1, mixture.sigma_2)
    return np.sum((log_q - log_p).reshape(num, -1), axis=1)


def _mixture_layer(cls, mixture, kl_weight, **kwargs):
    return _make(
        cls,
        kernel_prior=mixture,
        bias_prior=mixture,
        bayesian_bias=True,
        bias_initializer=keras.initializers.RandomNormal(stddev=0.3),
        kernel_untransformed_scale_initializer=keras.initializers.RandomUniform(-2.5, -1.0),
        bias_untransformed_scale_initializer=keras.initializers.RandomUniform(-2.5, -1.0),
        kl_weight=kl_weight,
        **kwargs,
    )


def _numpy_mixture_kl(layer, mixture, num=20000):
    """Numpy Monte-Carlo mean and per-sample sd of the layer's KL."""
    samples = _mixture_kl_samples(
        _f64(layer.kernel_loc), _scale_of(layer.kernel_untransformed_scale), mixture, num, seed=1
    ) + _mixture_kl_samples(_f64(layer.bias_loc), _scale_of(layer.bias_untransformed_scale), mixture, num, seed=2)
    return samples.mean(), samples.std(), num


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_scale_mixture_kl_is_an_unbiased_monte_carlo_estimate(cls):
    mixture = ScaleMixturePrior(pi=0.25, sigma_1=1.5, sigma_2=0.1)
    kl_weight = 0.5
    calls = 200
    layer = _mixture_layer(cls, mixture, kl_weight, seed=3)
    x = _inputs(cls)
    estimates = []
    for _ in range(calls):
        layer(x, training=True)
        estimates.append(float(_np(layer.losses[0])) / kl_weight)
    estimates = np.array(estimates)
    reference, sd, num = _numpy_mixture_kl(layer, mixture)
    standard_error = sd * math.sqrt(1.0 / calls + 1.0 / num)
    assert abs(estimates.mean() - reference) < 5 * standard_error
    # The layer's estimates have the spread of one-sample estimates (not a
    # fixed number): sd within 30% (sampling sd of an sd from 200 draws ~5%).
    assert estimates.std() == pytest.approx(sd, rel=0.3)


@pytest.mark.parametrize("cls", DENSE, ids=_ids(DENSE))
def test_scale_mixture_kl_in_sample_groups_averages_the_groups(cls):
    mixture = ScaleMixturePrior(pi=0.25, sigma_1=1.5, sigma_2=0.1)
    groups = 4000
    layer = _mixture_layer(cls, mixture, kl_weight=1.0, seed=4)
    layer.build((None, 4))
    with sample_groups(groups):
        layer(np.ones((groups, 4), dtype="float32"))
    reference, sd, num = _numpy_mixture_kl(layer, mixture)
    standard_error = sd * math.sqrt(1.0 / groups + 1.0 / num)
    assert abs(float(_np(layer.losses[0])) - reference) < 5 * standard_error


# --------------------------------------------------------------------------
# 5-6. Training (jit_compile=True on jax and tensorflow).
# --------------------------------------------------------------------------


def test_data_loss_gradient_reaches_loc_and_scale():
    # kl_weight=0: whatever moves the posterior comes from the data loss,
    # through the sampled weights (or the Flipout perturbation). Compiled
    # with XLA on jax and tensorflow (jit_compile=True means torch.compile on
    # torch, which is not tested; the KL step test below covers the default).
    jit_compile = BACKEND != "torch"
    model = _model(kl_weight=0.0)
    x, y = _model_data()
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", jit_compile=jit_compile
    )
    layers = _bayesian_layers(model)
    assert sorted(type(l).__name__ for l in layers) == sorted(_ids(ALL))
    before = [(_np(l.kernel_loc), _np(l.kernel_untransformed_scale)) for l in layers]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for layer, (loc, rho) in zip(layers, before):
        assert np.max(np.abs(_np(layer.kernel_loc) - loc)) > 1e-6, layer.name
        assert np.max(np.abs(_np(layer.kernel_untransformed_scale) - rho)) > 1e-6, layer.name
    # Compiled prediction samples too: two predict calls differ.
    first, second = model.predict(x, verbose=0), model.predict(x, verbose=0)
    assert first.shape == (len(x), 2) and np.all(np.isfinite(first))
    assert not np.allclose(first, second, atol=1e-6)


def _zero_data_loss(y_true, y_pred):
    return 0.0 * ops.mean(y_pred)


def test_kl_gradient_step_matches_analytic_gradient():
    # With a data loss of zero gradient, one SGD step moves every posterior
    # parameter by -lr * kl_weight * dKL/dparam, written out here:
    #   dKL/dloc = (loc - m) / s_p^2,
    #   dKL/drho = (scale / s_p^2 - 1 / scale) * sigmoid(rho).
    lr, kl_weight, prior_loc, prior_scale = 0.1, 0.5, 0.5, 2.0
    model = _model(
        kl_weight=kl_weight,
        kernel_prior=NormalPrior(prior_loc, prior_scale),
        bias_prior=NormalPrior(prior_loc, prior_scale),
        bayesian_bias=True,
        kernel_untransformed_scale_initializer=keras.initializers.RandomUniform(-3.0, 1.0),
        bias_untransformed_scale_initializer=keras.initializers.RandomUniform(-3.0, 1.0),
    )
    x, y = _model_data()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr), loss=_zero_data_loss)
    layers = _bayesian_layers(model)
    names = ("kernel_loc", "kernel_untransformed_scale", "bias_loc", "bias_untransformed_scale")
    before = [{n: _f64(getattr(l, n)) for n in names} for l in layers]
    plain_before = [_np(w) for w in model.layers[-1].weights]
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    for layer, old in zip(layers, before):
        for prefix in ("kernel", "bias"):
            loc, rho = old[f"{prefix}_loc"], old[f"{prefix}_untransformed_scale"]
            scale = _scale_of(rho)
            grad_loc = (loc - prior_loc) / prior_scale**2
            grad_rho = (scale / prior_scale**2 - 1.0 / scale) / (1.0 + np.exp(-rho))
            np.testing.assert_allclose(
                _f64(getattr(layer, f"{prefix}_loc")) - loc,
                -lr * kl_weight * grad_loc,
                rtol=1e-4,
                atol=2e-6,
                err_msg=f"{layer.name} {prefix}_loc",
            )
            np.testing.assert_allclose(
                _f64(getattr(layer, f"{prefix}_untransformed_scale")) - rho,
                -lr * kl_weight * grad_rho,
                rtol=1e-4,
                atol=2e-6,
                err_msg=f"{layer.name} {prefix}_untransformed_scale",
            )
    # The plain Dense gets no gradient from the KL.
    for old, new in zip(plain_before, model.layers[-1].weights):
        np.testing.assert_array_equal(_np(new), old)


# --------------------------------------------------------------------------
# 7. Serialization.
# --------------------------------------------------------------------------


def _configured(cls, **overrides):
    kwargs = dict(
        activation="relu",
        bayesian_bias=True,
        kernel_prior=NormalPrior(0.5, 2.0),
        bias_prior=ScaleMixturePrior(0.3, 1.5, 0.2),
        kl_weight=0.25,
        sample_at_inference=False,
        seed=3,
        bias_initializer="random_normal",
        name="bayes",
    )
    kwargs.update(overrides)
    if cls in DENSE:
        return cls(3, **kwargs)
    return cls(2, 3, strides=(1, 2), padding="same", **kwargs)


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_save_and_load_round_trip(cls, tmp_path):
    layer = _configured(cls)
    x = _inputs(cls)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    expected = _np(model(x))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    restored = loaded.get_layer("bayes")
    assert type(restored) is cls
    assert restored.get_config() == layer.get_config()
    config = restored.get_config()
    assert config["kl_weight"] == 0.25
    assert config["kernel_prior"]["class_name"] == "NormalPrior"
    assert config["kernel_prior"]["config"] == {"loc": 0.5, "scale": 2.0}
    assert isinstance(restored.bias_prior, ScaleMixturePrior)
    assert restored.bias_prior.get_config() == {"pi": 0.3, "sigma_1": 1.5, "sigma_2": 0.2}
    assert len(restored.weights) == len(layer.weights) == 4
    for new, old in zip(restored.weights, layer.weights):
        assert new.path.split("/")[-1] == old.path.split("/")[-1]
        np.testing.assert_array_equal(_np(new), _np(old))
    np.testing.assert_array_equal(_np(loaded(x)), expected)
    # The restored layer still adds its (closed-form kernel + MC bias) KL.
    assert len(loaded.losses) == 1 and np.isfinite(float(_np(loaded.losses[0])))


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_from_config_round_trip(cls):
    layer = _configured(cls)
    x = _inputs(cls)
    expected = _np(layer(x))
    clone = cls.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(_np(clone(x)), expected)


# --------------------------------------------------------------------------
# 8. Mixed precision.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_mixed_precision_keeps_kl_in_float32(cls):
    # Big enough that the summed KL exceeds the float16 maximum 65504.
    if cls in DENSE:
        layer = cls(512, dtype="mixed_float16")
        x = np.random.default_rng(0).normal(size=(2, 512)).astype("float32")
    else:
        layer = cls(64, 3, padding="same", dtype="mixed_float16")
        x = np.random.default_rng(0).normal(size=(2, 5, 5, 64)).astype("float32")
    out = layer(x, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    assert np.all(np.isfinite(_np(out)))
    assert keras.backend.standardize_dtype(layer.kernel_loc.dtype) == "float32"
    assert keras.backend.standardize_dtype(layer.kernel_untransformed_scale.dtype) == "float32"
    loss = layer.losses[0]
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    value = float(_np(loss))
    assert np.isfinite(value) and value > 65504.0
    expected = _kl_normal(_f64(layer.kernel_loc), _scale_of(layer.kernel_untransformed_scale), 0.0, 1.0)
    assert value == pytest.approx(expected, rel=1e-4)


def test_mixed_precision_training_step():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _model(kl_weight=1e-2)
        x, y = _model_data()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
        layers = _bayesian_layers(model)
        assert all(l.compute_dtype == "float16" for l in layers)
        before = [_np(l.kernel_loc) for l in layers]
        history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert keras.config.dtype_policy().name == "float32"
    assert np.all(np.isfinite(history.history["loss"]))
    for layer, loc in zip(layers, before):
        assert keras.backend.standardize_dtype(layer.kernel_loc.dtype) == "float32"
        assert np.max(np.abs(_np(layer.kernel_loc) - loc)) > 0, layer.name


# --------------------------------------------------------------------------
# 9. Sample groups.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL, ids=_ids(ALL))
def test_sample_groups_draw_one_sample_per_copy(cls):
    groups = 3
    x = _inputs(cls, batch=2)
    tiled = np.concatenate([x] * groups)
    layer = _make(cls, bayesian_bias=True)
    with sample_groups(groups):
        out = _np(layer(tiled))
    copies = out.reshape((groups, len(x)) + out.shape[1:])
    for a in range(groups):
        for b in range(a + 1, groups):
            assert not np.allclose(copies[a], copies[b], atol=1e-4)

    frozen = _make(cls, bayesian_bias=True, sample_at_inference=False)
    expected = _np(frozen(x))
    with sample_groups(groups):
        grouped = _np(frozen(tiled))
    for t in range(groups):
        np.testing.assert_allclose(grouped[t * len(x) : (t + 1) * len(x)], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cls", DENSE, ids=_ids(DENSE))
def test_dense_sample_groups_use_one_kernel_and_bias_per_group(cls):
    # Per group the inputs are the identity rows, 3 random rows and 2 zero
    # rows: outputs are K_t + b_t, A @ K_t + b_t and b_t, for ONE kernel K_t
    # and bias b_t per group, drawn from the posterior.
    groups, d, units = 40, 4, 3
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, d))
    block = np.concatenate([np.eye(d), a, np.zeros((2, d))]).astype("float32")
    layer = cls(units, bayesian_bias=True, bias_initializer="random_normal", seed=5)
    with sample_groups(groups):
        out = _f64(layer(np.concatenate([block] * groups)))
    out = out.reshape(groups, len(block), units)
    biases = out[:, -1, :]
    np.testing.assert_array_equal(out[:, -2, :], biases)
    kernels = out[:, :d, :] - biases[:, None, :]
    np.testing.assert_allclose(out[:, d : d + 3, :], a @ kernels + biases[:, None, :], rtol=1e-4, atol=1e-5)
    # The groups differ, and their kernels/biases are posterior draws.
    assert len({tuple(k.ravel().round(5)) for k in kernels}) == groups
    z_kernel = (kernels - _f64(layer.kernel_loc)) / _scale_of(layer.kernel_untransformed_scale)
    z_bias = (biases - _f64(layer.bias_loc)) / _scale_of(layer.bias_untransformed_scale)
    for z in (z_kernel.ravel(), z_bias.ravel()):
        assert abs(z.mean()) < 5 / math.sqrt(z.size)
        assert abs(z.var() - 1.0) < 5 * math.sqrt(2.0 / z.size)


@pytest.mark.parametrize("cls", DENSE, ids=_ids(DENSE))
def test_dense_sample_groups_on_three_dimensional_inputs(cls):
    # Same seed and weights: the noise draws match, so a (T*B, L, d) call and
    # the same data flattened to (T*B*L, d) give the same grouped outputs.
    groups = 3
    x = np.random.default_rng(1).normal(size=(groups * 2, 5, 4)).astype("float32")
    first = cls(3, seed=21)
    second = cls(3, seed=21)
    first.build((None, 5, 4))
    second.build((None, 4))
    second.set_weights(first.get_weights())
    with sample_groups(groups):
        out3 = _np(first(x))
        out2 = _np(second(x.reshape(-1, 4)))
    assert out3.shape == (groups * 2, 5, 3)
    np.testing.assert_allclose(out3.reshape(-1, 3), out2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("cls", CONV, ids=_ids(CONV))
def test_conv_sample_groups_use_one_kernel_and_bias_per_group(cls, data_format):
    _skip_channels_first_on_tensorflow_cpu(data_format)
    # Probe images recover each group's kernel: with "valid" padding the
    # output at (0, 0) of a one-hot image at (i, j, c) is K_t[i, j, c] + b_t,
    # and of a zero image b_t. Random images must then match Conv2D(K_t, b_t).
    groups, kh, kw, channels, filters, size = 3, 3, 3, 2, 2, (6, 7)
    layer = cls(
        filters, (kh, kw), padding="valid", data_format=data_format, bayesian_bias=True, bias_initializer="random_normal"
    )
    probes = []
    for i in range(kh):
        for j in range(kw):
            for c in range(channels):
                image = np.zeros(size + (channels,), dtype="float32")
                image[i, j, c] = 1.0
                probes.append(image)
    probes.append(np.zeros(size + (channels,), dtype="float32"))
    rng = np.random.default_rng(0)
    randoms = rng.normal(size=(2,) + size + (channels,)).astype("float32")
    block = np.concatenate([np.stack(probes), randoms])
    if data_format == "channels_first":
        block = block.transpose(0, 3, 1, 2)
    with sample_groups(groups):
        out = _f64(layer(np.concatenate([block] * groups)))
    if data_format == "channels_first":
        out = out.transpose(0, 2, 3, 1)
    out = out.reshape((groups, len(block)) + out.shape[1:])
    n_probes = kh * kw * channels
    kernels = []
    for t in range(groups):
        bias = out[t, n_probes, 0, 0]
        np.testing.assert_allclose(out[t, n_probes], np.broadcast_to(bias, out[t, n_probes].shape), atol=1e-6)
        kernel = (out[t, :n_probes, 0, 0] - bias).reshape(kh, kw, channels, filters)
        kernels.append(kernel)
        reference = _conv_reference(layer, kernel.astype("float32"), bias.astype("float32"), block[n_probes + 1 :])
        if data_format == "channels_first":
            reference = reference.transpose(0, 2, 3, 1)
        np.testing.assert_allclose(out[t, n_probes + 1 :], reference, rtol=1e-4, atol=1e-5)
    for a in range(groups):
        for b in range(a + 1, groups):
            assert not np.allclose(kernels[a], kernels[b], atol=1e-4)
    z = (np.stack(kernels) - _f64(layer.kernel_loc)) / _scale_of(layer.kernel_untransformed_scale)
    assert np.max(np.abs(z)) < 6.0


def test_sample_groups_argument_and_context():
    for bad in (0, -1, 2.5, True, "2"):
        with pytest.raises(ValueError, match=re.escape(f"`num_groups` must be a positive integer; received {bad!r}")):
            with sample_groups(bad):
                pass
    assert sampling.num_sample_groups() == 1
    with sample_groups(4):
        assert sampling.num_sample_groups() == 4
        with sample_groups(2):
            assert sampling.num_sample_groups() == 2
        assert sampling.num_sample_groups() == 4
    assert sampling.num_sample_groups() == 1
    with pytest.raises(RuntimeError):
        with sample_groups(3):
            raise RuntimeError("inside")
    assert sampling.num_sample_groups() == 1


def test_sample_groups_accepts_numpy_integers():
    with sample_groups(np.int64(3)):
        assert sampling.num_sample_groups() == 3


# --------------------------------------------------------------------------
# 10. Flipout statistics.
# --------------------------------------------------------------------------


def test_dense_flipout_matches_the_posterior_mean_and_variance():
    # For a fixed input x, the Flipout output of unit j has mean x @ loc + b
    # and variance v_j = sum_i x_i^2 scale_ij^2. The per-call empirical
    # variance w (over N examples, around the known mean) has
    # Var(w) = 2 sum_i x_i^4 s_ij^4 + (2 v_j^2 - 2 sum_i x_i^4 s_ij^4) / N
    # (one perturbation dW per call, fresh signs per example).
    d, units, n, calls = 16, 32, 4000, 25
    rng = np.random.default_rng(0)
    loc = rng.normal(scale=0.3, size=(d, units))
    scale = rng.uniform(0.05, 0.5, size=(d, units))
    bias = rng.normal(size=units)
    layer = DenseFlipout(units, seed=13)
    layer.build((None, d))
    layer.set_weights([loc.astype("float32"), _untransformed(scale).astype("float32"), bias.astype("float32")])
    x = rng.normal(size=d)
    mean = x @ loc + bias
    variance = (x**2) @ scale**2
    fourth = (x**4) @ scale**4
    batch = np.tile(x.astype("float32"), (n, 1))

    outputs = np.stack([_f64(layer(batch, training=True)) for _ in range(calls)])
    assert outputs.shape == (calls, n, units)
    # Means: per call and pooled.
    assert np.all(np.abs(outputs[0].mean(axis=0) - mean) < 5 * np.sqrt(variance / n))
    assert np.all(np.abs(outputs.mean(axis=(0, 1)) - mean) < 5 * np.sqrt(variance / (n * calls)))
    # Variances.
    per_call = np.mean((outputs - mean) ** 2, axis=1)
    standard_error = np.sqrt((2 * fourth + (2 * variance**2 - 2 * fourth) / n) / calls)
    z = (per_call.mean(axis=0) - variance) / standard_error
    assert np.all(np.abs(z) < 5)
    assert abs(z.sum() / math.sqrt(units)) < 5
    # Examples in one call are decorrelated: the within-call variance is not
    # zero (as it would be with one shared perturbation and no sign flips).
    assert np.all(outputs[0].var(axis=0) > 0.05 * variance)


# --------------------------------------------------------------------------
# 11. Argument errors.
# --------------------------------------------------------------------------


BAD_ARGUMENTS = [
    (DenseFlipout, {"units": 0}, "DenseFlipout: `units` must be a positive integer; received 0"),
    (DenseReparameterization, {"units": -3}, "`units` must be a positive integer; received -3"),
    (DenseFlipout, {"units": 2.5}, "`units` must be a positive integer; received 2.5"),
    (Conv2DFlipout, {"filters": 0, "kernel_size": 3}, "Conv2DFlipout: `filters` must be a positive integer; received 0"),
    (DenseReparameterization, {"units": 3, "kl_weight": -1}, "`kl_weight` must be a number >= 0; received -1"),
    (Conv2DReparameterization, {"filters": 2, "kernel_size": 3, "kl_weight": float("nan")}, "`kl_weight` must be a number >= 0; received nan"),
    (DenseFlipout, {"units": 3, "bayesian_bias": True, "use_bias": False}, "DenseFlipout: `bayesian_bias=True` needs `use_bias=True`"),
    (Conv2DFlipout, {"filters": 2, "kernel_size": 3, "padding": "full"}, "`padding` must be 'valid' or 'same'; received 'full'"),
    (Conv2DReparameterization, {"filters": 2, "kernel_size": (3, 3, 3)}, "`kernel_size` must be an int or a tuple of 2 ints; received (3, 3, 3)"),
    (Conv2DReparameterization, {"filters": 2, "kernel_size": (3, 0)}, "`kernel_size` must be a positive integer; received 0"),
    (Conv2DFlipout, {"filters": 2, "kernel_size": 3, "strides": 0}, "`strides` must be a positive integer; received 0"),
    (Conv2DFlipout, {"filters": 2, "kernel_size": 3, "data_format": "nchw"}, "`data_format` must be 'channels_last' or 'channels_first'; received 'nchw'"),
    (DenseFlipout, {"units": 3, "kernel_prior": "normal"}, "received 'normal'"),
    (Conv2DFlipout, {"filters": 2, "kernel_size": 3, "kernel_prior": 3.0}, "received 3.0"),
    (DenseReparameterization, {"units": 3, "bias_prior": "laplace"}, "received 'laplace'"),
]


@pytest.mark.parametrize(
    "cls, kwargs, message", BAD_ARGUMENTS, ids=[f"{c.__name__}-{'-'.join(map(str, k.items()))}" for c, k, _ in BAD_ARGUMENTS]
)
def test_argument_errors(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


def test_prior_error_names_the_argument():
    with pytest.raises(ValueError, match="kernel_prior"):
        DenseFlipout(3, kernel_prior="normal")


def test_kl_weight_zero_is_accepted_and_gives_zero_loss():
    layer = DenseFlipout(3, kl_weight=0)
    layer(_inputs(DenseFlipout))
    assert layer.kl_weight == 0.0
    assert float(_np(layer.losses[0])) == 0.0


def test_wrong_input_width_is_rejected_after_build():
    layer = DenseReparameterization(3)
    layer(np.zeros((2, 4), dtype="float32"))
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value 4"):
        layer(np.zeros((2, 5), dtype="float32"))
