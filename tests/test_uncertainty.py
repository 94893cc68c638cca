"""Tests of `keras_reliability.uncertainty`: PredictiveUncertainty and
predict_with_uncertainty."""

import collections
import contextlib
import math
import warnings

import keras
import numpy as np
import pytest

from keras_reliability.layers import Conv2DFlipout
from keras_reliability.layers import DenseFlipout
from keras_reliability.layers import DenseReparameterization
from keras_reliability.layers import MCDropout
from keras_reliability.uncertainty import PredictiveUncertainty
from keras_reliability.uncertainty import predict_with_uncertainty

# ----------------------------------------------------------------------------
# Independent reference computations (plain Python loops over numpy rows)
# ----------------------------------------------------------------------------


def _entropy_nats(p):
    return -sum(float(q) * math.log(float(q)) for q in p if q > 0)


def _kl_nats(p, q):
    return sum(float(a) * math.log(float(a) / float(b)) for a, b in zip(p, q) if a > 0)


def _softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _hand_made_samples():
    """(N=6, T=21, C=4) probabilities, with exact zeros and a one-hot row."""
    rng = np.random.default_rng(0)
    samples = rng.dirichlet([0.7, 1.0, 1.5, 0.5], size=(6, 21))
    samples[0, 3] = [0.0, 1.0, 0.0, 0.0]
    samples[1, :, 3] = 0.0  # class 3 never has mass in example 1
    samples[1] /= samples[1].sum(axis=-1, keepdims=True)
    samples[2] = samples[2, 0]  # example 2: all samples identical
    return samples


# ----------------------------------------------------------------------------
# PredictiveUncertainty
# ----------------------------------------------------------------------------


def test_statistics_match_independent_formulas():
    samples = _hand_made_samples()
    result = PredictiveUncertainty(samples)
    n, t, c = samples.shape
    assert len(result) == n and result.num_samples == t
    for i in range(n):
        mean = [sum(samples[i, s, k] for s in range(t)) / t for k in range(c)]
        np.testing.assert_allclose(result.mean[i], mean, rtol=1e-12)
        total = _entropy_nats(mean)
        expected_aleatoric = sum(_entropy_nats(samples[i, s]) for s in range(t)) / t
        # The mutual information, written as the mean KL of each sample from
        # the mean (an identity, not the library's formula).
        expected_epistemic = sum(_kl_nats(samples[i, s], mean) for s in range(t)) / t
        votes = collections.Counter(int(np.argmax(samples[i, s])) for s in range(t))
        assert result.predictive_entropy[i] == pytest.approx(total, rel=1e-10)
        assert result.aleatoric[i] == pytest.approx(expected_aleatoric, rel=1e-10)
        assert result.epistemic[i] == pytest.approx(expected_epistemic, rel=1e-8, abs=1e-12)
        assert result.variation_ratio[i] == pytest.approx(1 - max(votes.values()) / t)
        assert result.predicted_class[i] == max(range(c), key=lambda k: mean[k])
        assert result.confidence[i] == pytest.approx(max(mean))
    assert np.all(result.epistemic >= 0)
    assert np.all(np.isfinite(result.predictive_entropy))
    for name in ("predictive_entropy", "aleatoric", "epistemic", "variation_ratio"):
        assert getattr(result, name).shape == (n,)
    assert result.mean.shape == (n, c)


def test_identical_samples_have_no_epistemic_uncertainty():
    row = np.array([0.1, 0.6, 0.3])
    result = PredictiveUncertainty(np.tile(row, (3, 5, 1)))
    # H(mean) - mean H(p_t) of equal terms: zero up to float64 rounding.
    np.testing.assert_allclose(result.epistemic, 0.0, atol=1e-12)
    np.testing.assert_array_equal(result.variation_ratio, 0.0)
    np.testing.assert_allclose(result.aleatoric, _entropy_nats(row), rtol=1e-12)
    np.testing.assert_allclose(result.predictive_entropy, _entropy_nats(row), rtol=1e-12)


def test_one_hot_samples_entropy_zero_log_zero():
    # Half the samples say class 0, half class 1, each with certainty: no
    # aleatoric part, log(2) nats of epistemic uncertainty.
    samples = np.zeros((1, 4, 3))
    samples[0, :2, 0] = 1.0
    samples[0, 2:, 1] = 1.0
    result = PredictiveUncertainty(samples)
    assert result.aleatoric[0] == 0.0
    assert result.epistemic[0] == pytest.approx(math.log(2))
    assert result.variation_ratio[0] == pytest.approx(0.5)
    assert result.confidence[0] == pytest.approx(0.5)


def test_interval_is_central_quantile():
    samples = _hand_made_samples()
    result = PredictiveUncertainty(samples)
    lower, upper = result.interval(0.9)
    np.testing.assert_allclose(lower, np.quantile(samples, 0.05, axis=1))
    np.testing.assert_allclose(upper, np.quantile(samples, 0.95, axis=1))
    # With T = 21 the 5% / 95% quantiles fall exactly on the second smallest
    # and second largest of the sorted samples ((21 - 1) * 0.05 = 1).
    ordered = np.sort(samples, axis=1)
    np.testing.assert_allclose(lower, ordered[:, 1], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(upper, ordered[:, -2], rtol=1e-12, atol=1e-15)
    assert lower.shape == upper.shape == (6, 4)
    assert np.all(lower <= upper)
    narrow_lower, narrow_upper = result.interval(0.5)
    assert np.all(narrow_lower >= lower - 1e-15) and np.all(narrow_upper <= upper + 1e-15)
    # The default level is 0.95.
    default = result.interval()
    np.testing.assert_allclose(default[0], np.quantile(samples, 0.025, axis=1))


@pytest.mark.parametrize("level", [0, 1, 1.5, -0.1, True, "0.9", None, float("nan")])
def test_interval_rejects_bad_level(level):
    result = PredictiveUncertainty(_hand_made_samples())
    with pytest.raises(ValueError, match="level"):
        result.interval(level)


def test_interval_accepts_numpy_float_level():
    result = PredictiveUncertainty(_hand_made_samples())
    level = np.float32(0.9)  # 0.89999998 as a float
    lower, _ = result.interval(level)
    tail = (1.0 - float(level)) / 2.0
    np.testing.assert_allclose(lower, np.quantile(result.samples, tail, axis=1), rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 5), (5,)])
def test_samples_must_be_three_dimensional(shape):
    with pytest.raises(ValueError, match="samples"):
        PredictiveUncertainty(np.full(shape, 0.5))


# ----------------------------------------------------------------------------
# predict_with_uncertainty: models that sample
# ----------------------------------------------------------------------------


def _x(n, dim=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype("float32")


@pytest.fixture(scope="module")
def dropout_model():
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(16, activation="tanh"),
            MCDropout(0.5),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _check_sampled(result, n, t, c, all_distinct):
    assert isinstance(result, PredictiveUncertainty)
    assert result.samples.shape == (n, t, c)
    np.testing.assert_allclose(result.samples.sum(axis=-1), 1.0, rtol=1e-5)
    assert np.all(result.samples >= 0)
    np.testing.assert_allclose(result.mean, result.samples.mean(axis=1), rtol=1e-12)
    # The T predictions of every example differ; with weight noise (no dead
    # units: tanh hidden layer) they are all distinct.
    assert np.all(np.ptp(result.samples, axis=1).max(axis=-1) > 0)
    if all_distinct:
        for i in range(n):
            assert len(np.unique(result.samples[i], axis=0)) == t, i
    assert np.mean(result.epistemic > 1e-7) > 0.9


def test_mc_dropout_samples(dropout_model):
    with warnings.catch_warnings():
        # A model that samples is not warned about.
        warnings.simplefilter("error", UserWarning)
        result = predict_with_uncertainty(dropout_model, _x(20), num_samples=8)
    _check_sampled(result, 20, 8, 3, all_distinct=False)


@pytest.mark.parametrize("layer_class", [DenseFlipout, DenseReparameterization])
def test_bayesian_layer_samples(layer_class):
    # The last layer is the only source of randomness and has no per-example
    # noise in the grouped pass: distinct samples of one example prove that
    # every stacked copy got its own weight sample.
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(8, activation="tanh"),
            layer_class(3, activation="softmax", seed=1),
        ]
    )
    result = predict_with_uncertainty(model, _x(12), num_samples=6)
    _check_sampled(result, 12, 6, 3, all_distinct=True)


def _conv2d_same(x, kernel):
    """Stride-1 'same' convolution, channels last, in numpy."""
    kh, kw = kernel.shape[:2]
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for i in range(kh):
        for j in range(kw):
            window = padded[:, i : i + height, j : j + width]
            out += np.einsum("nhwc,cf->nhwf", window, kernel[i, j])
    return out


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable).astype(np.float64)


def test_grouped_sampling_keeps_examples_in_place():
    """With near-zero posterior scales every Monte-Carlo copy of an example
    must reproduce the posterior-mean output of that same example: this
    catches any mix-up of examples and samples in the stacked pass (grouped
    convolution, per-group bias, reshapes), and checks that batch
    normalisation runs in inference mode."""
    tiny = keras.initializers.Constant(-30.0)  # std = eps + softplus(-30)
    conv = Conv2DFlipout(
        3,
        3,
        padding="same",
        activation="relu",
        bayesian_bias=True,
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.5, seed=2),
        kernel_untransformed_scale_initializer=tiny,
        bias_untransformed_scale_initializer=tiny,
    )
    dense = DenseReparameterization(
        4,
        bias_initializer=keras.initializers.RandomNormal(0.0, 0.5, seed=3),
        kernel_untransformed_scale_initializer=tiny,
    )
    bn = keras.layers.BatchNormalization()
    model = keras.Sequential([keras.Input((5, 4, 2)), conv, bn, keras.layers.Flatten(), dense])
    rng = np.random.default_rng(1)
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    moving_mean, moving_variance = rng.normal(size=3), rng.uniform(0.5, 2.0, 3)
    bn.set_weights([v.astype("float32") for v in (gamma, beta, moving_mean, moving_variance)])
    x = rng.normal(size=(8, 5, 4, 2)).astype("float32")

    # The posterior-mean forward pass, in numpy.
    hidden = _conv2d_same(x.astype(np.float64), _numpy(conv.kernel_loc)) + _numpy(conv.bias_loc)
    hidden = np.maximum(hidden, 0.0)
    hidden = gamma * (hidden - moving_mean) / np.sqrt(moving_variance + bn.epsilon) + beta
    logits = hidden.reshape(8, -1) @ _numpy(dense.kernel_loc) + _numpy(dense.bias_loc)
    reference = _softmax(logits)
    # The examples are far apart, so a mix-up would be visible.
    assert np.abs(reference[:, None] - reference[None]).max() > 0.1

    result = predict_with_uncertainty(model, x, num_samples=5)
    assert result.samples.shape == (8, 5, 4)
    expected = np.broadcast_to(reference[:, None], result.samples.shape)
    np.testing.assert_allclose(result.samples, expected, atol=2e-3)


# ----------------------------------------------------------------------------
# Deterministic models
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("with_dropout", [False, True])
def test_deterministic_model_warns(with_dropout):
    # 8 examples x 4 samples: 32 stacked rows, a multiple of the SIMD block
    # (see test_deterministic_one_column_model_warns for the other case).
    layers = [keras.Input((5,)), keras.layers.Dense(6, activation="relu")]
    if with_dropout:
        layers.append(keras.layers.Dropout(0.5))  # inactive at inference
    layers.append(keras.layers.Dense(3, activation="softmax"))
    model = keras.Sequential(layers)
    with pytest.warns(UserWarning, match="same output"):
        result = predict_with_uncertainty(model, _x(8), num_samples=4)
    assert result.samples.shape == (8, 4, 3)
    np.testing.assert_allclose(result.epistemic, 0.0, atol=1e-9)
    np.testing.assert_array_equal(result.variation_ratio, 0.0)
    np.testing.assert_allclose(result.aleatoric, result.predictive_entropy, rtol=1e-12)


def test_deterministic_one_column_model_warns():
    layer = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Sequential([keras.Input((5,)), layer])
    rng = np.random.default_rng(8)
    x = rng.normal(size=(7, 5)).astype("float32")  # 14 stacked rows
    for _ in range(20):
        kernel, bias = rng.normal(size=(5, 1)), rng.normal(size=1)
        layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
        with pytest.warns(UserWarning, match="same output"):
            result = predict_with_uncertainty(model, x, num_samples=2)
        # The stacked copies may round differently in the last place (torch),
        # so the check is up to rounding, and so is the epistemic part.
        np.testing.assert_allclose(result.samples[:, 0], result.samples[:, 1], atol=1e-6)
        assert result.epistemic.max() < 1e-9


# ----------------------------------------------------------------------------
# Logits and probabilities
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def _no_deterministic_warning():
    # These models are deterministic; the warning is tested elsewhere.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*same output", category=UserWarning)
        yield


def test_linear_last_layer_gets_softmax():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    x = _x(9, seed=3)
    logits = keras.ops.convert_to_numpy(model(x))
    with _no_deterministic_warning():
        result = predict_with_uncertainty(model, x, num_samples=3)
    np.testing.assert_allclose(result.samples.sum(axis=-1), 1.0, rtol=1e-12)
    expected = np.broadcast_to(_softmax(logits)[:, None], (9, 3, 4))
    np.testing.assert_allclose(result.samples, expected, rtol=1e-5, atol=1e-7)
    # Explicit from_logits=True agrees.
    with _no_deterministic_warning():
        explicit = predict_with_uncertainty(model, x, num_samples=3, from_logits=True)
    np.testing.assert_allclose(explicit.samples, expected, rtol=1e-5, atol=1e-7)


def test_softmax_model_outputs_used_as_they_are():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax")])
    x = _x(9, seed=4)
    probabilities = keras.ops.convert_to_numpy(model(x)).astype(np.float64)
    expected = np.broadcast_to(probabilities[:, None], (9, 2, 4))
    for from_logits in (None, False):
        with _no_deterministic_warning():
            result = predict_with_uncertainty(model, x, num_samples=2, from_logits=from_logits)
        np.testing.assert_allclose(result.samples, expected, rtol=1e-5, atol=1e-7)
    # from_logits=True contradicts the model's softmax: refused, not applied.
    with pytest.raises(ValueError, match=r"`from_logits=True`.*probabilities \(softmax\)"):
        predict_with_uncertainty(model, x, num_samples=2, from_logits=True)


def test_sigmoid_column_becomes_two_classes():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, activation="sigmoid")])
    x = _x(7, seed=5)
    p = keras.ops.convert_to_numpy(model(x))[:, 0].astype(np.float64)
    with _no_deterministic_warning():
        result = predict_with_uncertainty(model, x, num_samples=2)
    assert result.samples.shape == (7, 2, 2)
    expected = np.stack([1 - p, p], axis=-1)
    np.testing.assert_allclose(result.samples[:, 0], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.samples[:, 1], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(result.predicted_class, (p > 0.5).astype(int))


@pytest.mark.parametrize("declared_by", ["loss", "from_logits"])
def test_single_logit_column_gets_sigmoid(declared_by):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    kwargs = {}
    if declared_by == "loss":
        model.compile(loss=keras.losses.BinaryCrossentropy(from_logits=True))
    else:
        kwargs["from_logits"] = True
    x = _x(7, seed=6)
    z = keras.ops.convert_to_numpy(model(x))[:, 0].astype(np.float64)
    with _no_deterministic_warning():
        result = predict_with_uncertainty(model, x, num_samples=2, **kwargs)
    p = 1 / (1 + np.exp(-z))
    expected = np.stack([1 - p, p], axis=-1)
    np.testing.assert_allclose(result.samples[:, 0], expected, rtol=1e-5, atol=1e-7)


def test_single_linear_column_of_unknown_kind_is_refused():
    # A logit or a regression value? Neither graph nor loss says: refused.
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="one column.*Pass `from_logits`"):
        predict_with_uncertainty(model, _x(7, seed=6), num_samples=2)


@pytest.mark.parametrize("loss", ["mse", "mae", keras.losses.Huber()])
def test_regression_model_is_refused_before_any_pass(loss):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    model.compile(loss=loss)
    with pytest.raises(ValueError, match="regression values, not class scores"):
        predict_with_uncertainty(model, _x(7, seed=6), num_samples=2)


def test_from_logits_that_contradicts_the_model_is_refused():
    logits = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="`from_logits=False`.*ends in logits"):
        predict_with_uncertainty(logits, _x(7, seed=6), num_samples=2, from_logits=False)
    softmax = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="`from_logits=True`.*probabilities \\(softmax\\)"):
        predict_with_uncertainty(softmax, _x(7, seed=6), num_samples=2, from_logits=True)


def test_functional_ops_softmax_is_not_applied_twice():
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.ops.softmax(keras.layers.Dense(3)(inputs)))
    x = _x(7, seed=6)
    with _no_deterministic_warning():
        result = predict_with_uncertainty(model, x, num_samples=2)
    np.testing.assert_allclose(
        result.mean, keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-7
    )


# ----------------------------------------------------------------------------
# One forward pass per batch
# ----------------------------------------------------------------------------


def test_samples_come_from_one_vectorised_pass():
    class Counting(keras.layers.Layer):
        calls = 0

        def call(self, inputs):
            Counting.calls += 1
            return inputs

    model = keras.Sequential(
        [
            keras.Input((5,)),
            Counting(),
            keras.layers.Dense(32, activation="tanh"),
            MCDropout(0.5),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    before = Counting.calls
    result = predict_with_uncertainty(model, _x(64), num_samples=32, batch_size=64)
    calls = Counting.calls - before
    # A loop over the 32 samples would call the layer 32 times; a stacked pass
    # calls it once per batch (or per trace).
    assert 1 <= calls <= 4, calls
    assert result.samples.shape == (64, 32, 3)
    assert np.all(np.ptp(result.samples, axis=1).max(axis=-1) > 0)
    # Dropout masks are drawn per stacked row: with 32 tanh units two masks
    # (and so two predictions) of an example almost never coincide.
    distinct = [len(np.unique(result.samples[i], axis=0)) for i in range(64)]
    assert np.mean(distinct) > 31


def test_batch_size_smaller_than_data(dropout_model):
    x = _x(50, seed=7)
    result = predict_with_uncertainty(dropout_model, x, num_samples=8, batch_size=16)
    assert result.samples.shape == (50, 8, 3)
    np.testing.assert_allclose(result.samples.sum(axis=-1), 1.0, rtol=1e-5)
    # Every example, including those of the last partial batch, was sampled.
    assert np.all(np.ptp(result.samples, axis=1).max(axis=-1) > 0)


def test_repeated_calls_draw_new_samples(dropout_model):
    x = _x(20)
    first = predict_with_uncertainty(dropout_model, x, num_samples=8)
    second = predict_with_uncertainty(dropout_model, x, num_samples=8)
    assert first.samples.shape == second.samples.shape == (20, 8, 3)
    assert np.abs(first.samples - second.samples).max() > 1e-3
    other = predict_with_uncertainty(dropout_model, x, num_samples=3)
    assert other.samples.shape == (20, 3, 3)


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def softmax_model():
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_samples": 0}, r"num_samples.*0"),
        ({"num_samples": 2.5}, r"num_samples.*2\.5"),
        ({"num_samples": True}, r"num_samples.*True"),
        ({"batch_size": 0}, r"batch_size.*0"),
        ({"batch_size": -4}, r"batch_size.*-4"),
    ],
)
def test_bad_arguments_raise(softmax_model, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        predict_with_uncertainty(softmax_model, _x(4), **kwargs)


@pytest.mark.parametrize("model", [lambda x: x, keras.layers.Dense(3), None])
def test_not_a_model_raises(model):
    with pytest.raises(ValueError, match="keras.Model"):
        predict_with_uncertainty(model, _x(4))


def test_two_output_model_raises():
    inputs = keras.Input((5,))
    model = keras.Model(
        inputs,
        [keras.layers.Dense(3, activation="softmax")(inputs), keras.layers.Dense(2)(inputs)],
    )
    with pytest.raises(ValueError, match=r"has 2 outputs .*; pass `output=`"):
        predict_with_uncertainty(model, _x(4), num_samples=2)


def test_nan_outputs_raise():
    layer = keras.layers.Dense(3, activation="softmax")
    model = keras.Sequential([keras.Input((5,)), layer])
    layer.kernel.assign(np.full((5, 3), np.nan, dtype="float32"))
    with pytest.raises(ValueError, match="NaN"):
        predict_with_uncertainty(model, _x(4), num_samples=2)
