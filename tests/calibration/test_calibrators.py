"""Tests for the post-hoc calibrators (`keras_reliability.calibration`).

Reference numbers come from Kull et al.'s DenseNet-40 CIFAR-10 logits
(`shared/data/markus93_densenet40_c10_logits`, README there): temperature
scaling fitted by NLL on the 5000 validation logits gives T = 2.8826 and, on
the 10000 test logits, ECE 0.009463 and NLL 0.225086 (both published by
markus93/NN_calibration and the Dirichlet-calibration notebooks for exactly
this file). Class-wise ECE 0.004048 (mean over classes, 15 bins) and Brier
0.010997 (mean over N x K) were measured here with numpy and agree across the
three backends to < 1e-5.

Optimality is checked against objectives written out independently here in
float64 numpy (not through the library's `softmax_nll`), with the penalties as
the class docstrings define them.
"""

import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability import registry
from keras_reliability.calibration import Calibrator
from keras_reliability.calibration import MatrixScaling
from keras_reliability.calibration import TemperatureScaling
from keras_reliability.calibration import VectorScaling
from keras_reliability.metrics import brier_score
from keras_reliability.metrics import classwise_calibration_error
from keras_reliability.metrics import expected_calibration_error
from keras_reliability.metrics import negative_log_likelihood

# Published / measured reference values (see the module docstring).
DENSENET_T = 2.8826
DENSENET_TS_TEST_ECE = 0.009463
DENSENET_TS_TEST_NLL = 0.225086
DENSENET_TS_TEST_CLASSWISE_ECE = 0.004048
DENSENET_TS_TEST_BRIER = 0.010997
DENSENET_UNCAL_TEST_ECE = 0.055003
DENSENET_UNCAL_TEST_NLL = 0.430059  # exact from logits (README's NLL caveat)
DENSENET_TEST_ERROR = 0.0758


# --------------------------------------------------------------------------
# Independent float64 helpers.
# --------------------------------------------------------------------------


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax(z):
    return np.exp(_log_softmax(z))


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def _nll(z, labels):
    return float(-np.mean(_log_softmax(z)[np.arange(len(labels)), labels]))


def _vector_objective(params, logits, labels, bias_l2):
    k = logits.shape[1]
    scale, bias = params[:k], params[k:]
    z = np.asarray(logits, np.float64) * scale + bias
    return _nll(z, labels) + bias_l2 * np.mean(bias**2)


def _matrix_objective(params, logits, labels, off_diagonal_l2, bias_l2):
    k = logits.shape[1]
    kernel = params[: k * k].reshape(k, k)
    bias = params[k * k :]
    z = np.asarray(logits, np.float64) @ kernel + bias
    off = kernel[~np.eye(k, dtype=bool)]
    return (
        _nll(z, labels)
        + off_diagonal_l2 * np.mean(off**2)
        + bias_l2 * np.mean(bias**2)
    )


def _vector_params(layer):
    return np.concatenate([_np(layer.scale), _np(layer.bias)]).astype(np.float64)


def _matrix_params(layer):
    return np.concatenate([_np(layer.kernel).ravel(), _np(layer.bias)]).astype(
        np.float64
    )


def _central_difference(objective, params, index, step=1e-5):
    up, down = params.copy(), params.copy()
    up[index] += step
    down[index] -= step
    return (objective(up) - objective(down)) / (2 * step)


# Fitting vector/matrix scaling on 5000 x 10 logits takes ~1.5 s; fit each
# configuration once per session and keep the numpy results.
_FIT_CACHE = {}


def _fit_cached(cls, val, y_val, **kwargs):
    key = (cls.__name__, tuple(sorted(kwargs.items())))
    if key not in _FIT_CACHE:
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            layer = cls(**kwargs).fit(val, y_val)
        params = _vector_params(layer) if cls is VectorScaling else _matrix_params(
            layer
        )
        _FIT_CACHE[key] = {
            "params": params,
            "val_out": _np(layer(val)),
            "layer": layer,
            "warnings": [
                w for w in record if issubclass(w.category, RuntimeWarning)
            ],
        }
    return _FIT_CACHE[key]


def _ts_val_nll(val, y_val):
    return _nll(np.asarray(val, np.float64) / TemperatureScaling().fit(
        val, y_val
    ).temperature, y_val)


def _predict(model, x):
    """Eager forward pass (avoids compiling a predict function per model)."""
    return _np(model(x, training=False))


def _library_warnings(record, text):
    return [
        w
        for w in record
        if issubclass(w.category, UserWarning) and text in str(w.message)
    ]


# --------------------------------------------------------------------------
# 1. Temperature scaling on DenseNet-40 / CIFAR-10.
# --------------------------------------------------------------------------


def test_temperature_densenet40_reference_temperature_and_test_metrics(
    densenet40_logits,
):
    val, y_val, test, y_test = densenet40_logits
    # Uncalibrated baseline of the same file (README).
    assert expected_calibration_error(
        y_test, test, from_logits=True
    ) == pytest.approx(DENSENET_UNCAL_TEST_ECE, abs=1e-4)

    ts = TemperatureScaling().fit(val, y_val)
    assert isinstance(ts.temperature, float)
    assert ts.temperature == pytest.approx(DENSENET_T, abs=1e-3)

    calibrated = _np(ts(test))
    assert calibrated.shape == test.shape
    # The layer is exactly logits / T.
    np.testing.assert_allclose(
        calibrated, test / ts.temperature, rtol=1e-5, atol=1e-5
    )
    ece = expected_calibration_error(y_test, calibrated, from_logits=True)
    nll = negative_log_likelihood(y_test, calibrated, from_logits=True)
    classwise = classwise_calibration_error(
        y_test, calibrated, num_bins=15, from_logits=True
    )
    brier = brier_score(y_test, calibrated, from_logits=True)
    assert ece == pytest.approx(DENSENET_TS_TEST_ECE, abs=1e-4)
    assert nll == pytest.approx(DENSENET_TS_TEST_NLL, abs=1e-4)
    assert classwise == pytest.approx(DENSENET_TS_TEST_CLASSWISE_ECE, abs=1e-4)
    assert brier == pytest.approx(DENSENET_TS_TEST_BRIER, abs=1e-4)

    # Accuracy unchanged: every single prediction is kept.
    np.testing.assert_array_equal(
        np.argmax(calibrated, axis=1), np.argmax(test, axis=1)
    )
    error = np.mean(np.argmax(calibrated, axis=1) != y_test)
    assert error == pytest.approx(DENSENET_TEST_ERROR, abs=1e-4)


def test_temperature_densenet40_fit_is_the_nll_optimum(densenet40_logits):
    val, y_val, _, _ = densenet40_logits
    t = TemperatureScaling().fit(val, y_val).temperature
    nll_t = _nll(val / t, y_val)
    for factor in (1 + 1e-4, 1 - 1e-4):
        assert _nll(val / (t * factor), y_val) >= nll_t
    # d NLL / d log T by central differences is ~0 at the fit, and clearly
    # non-zero at T = 1 (the network is overconfident: NLL falls as T grows).
    h = 1e-4
    derivative = (_nll(val / (t * math.exp(h)), y_val)
                  - _nll(val / (t * math.exp(-h)), y_val)) / (2 * h)
    assert abs(derivative) < 1e-6
    at_one = (_nll(val / math.exp(h), y_val) - _nll(val / math.exp(-h), y_val)) / (
        2 * h
    )
    assert at_one < -1e-2
    # It beats every temperature on a fine grid around it and a coarse one
    # over [0.05, 20]; the best grid point is the one next to it.
    grid = np.concatenate([np.linspace(2.6, 3.2, 601), np.geomspace(0.05, 20, 41)])
    grid_nll = np.array([_nll(val / g, y_val) for g in grid])
    assert nll_t <= grid_nll.min() + 1e-12
    assert abs(grid[np.argmin(grid_nll)] - t) <= 1e-3
    assert nll_t < _nll(val, y_val) - 0.1  # large gain over T = 1


def test_temperature_refit_labels_and_sample_weight(densenet40_logits):
    val, y_val, _, _ = densenet40_logits
    val, y_val = val[:1000], y_val[:1000]
    # Refitting starts from the raw logits: no compounding, and the initial
    # temperature does not matter.
    ts = TemperatureScaling(temperature=7.0)
    t = ts.fit(val, y_val).temperature
    assert ts.fit(val, y_val).temperature == pytest.approx(t, rel=1e-7)
    assert TemperatureScaling().fit(val, y_val).temperature == pytest.approx(
        t, rel=1e-7
    )
    # One-hot labels are the same labels.
    one_hot = np.eye(10, dtype=np.float32)[y_val]
    assert TemperatureScaling().fit(val, one_hot).temperature == pytest.approx(
        t, rel=1e-6
    )
    # Integer sample weights are equivalent to repeating rows.
    weights = np.arange(1000) % 3
    repeated = np.repeat(np.arange(1000), weights)
    t_weighted = TemperatureScaling().fit(val, y_val, sample_weight=weights)
    t_repeated = TemperatureScaling().fit(val[repeated], y_val[repeated])
    assert t_weighted.temperature == pytest.approx(t_repeated.temperature, rel=1e-5)
    assert abs(t_weighted.temperature - t) > 1e-3  # the weights did matter


# --------------------------------------------------------------------------
# 2. Vector and matrix scaling on DenseNet-40 / CIFAR-10.
# --------------------------------------------------------------------------


def test_vector_densenet40_fit_is_stationary(densenet40_logits):
    val, y_val, _, _ = densenet40_logits
    params = _fit_cached(VectorScaling, val, y_val)["params"]
    assert params.shape == (20,)

    def objective(p):
        return _vector_objective(p, val, y_val, 0.0)

    base = objective(params)
    for index in (0, 3, 9, 10, 13, 19):  # scales and biases
        assert abs(_central_difference(objective, params, index)) < 1e-4
    for index in range(params.size):
        for delta in (1e-3, -1e-3):
            moved = params.copy()
            moved[index] += delta
            assert objective(moved) > base


def test_matrix_densenet40_fit_is_stationary(densenet40_logits):
    val, y_val, _, _ = densenet40_logits
    params = _fit_cached(MatrixScaling, val, y_val)["params"]
    assert params.shape == (110,)

    def objective(p):
        return _matrix_objective(p, val, y_val, 0.0, 0.0)

    base = objective(params)
    # Diagonal (0, 11), off-diagonal (1, 37, 90) and bias (100, 109) entries.
    for index in (0, 11, 1, 37, 90, 100, 109):
        assert abs(_central_difference(objective, params, index)) < 1e-4
    for index in range(params.size):
        for delta in (1e-3, -1e-3):
            moved = params.copy()
            moved[index] += delta
            assert objective(moved) > base


def test_vector_and_matrix_densenet40_val_and_test_nll(densenet40_logits):
    val, y_val, test, y_test = densenet40_logits
    ts_nll = _ts_val_nll(val, y_val)
    vs = _fit_cached(VectorScaling, val, y_val)
    ms = _fit_cached(MatrixScaling, val, y_val)
    vs_nll = _nll(vs["val_out"], y_val)
    ms_nll = _nll(ms["val_out"], y_val)
    # Nested families: temperature scaling is vector scaling with equal
    # scales and no bias; vector scaling is matrix scaling with a diagonal
    # kernel. Measured: TS 0.186612, VS 0.180953, MS 0.172985.
    assert vs_nll <= ts_nll
    assert ms_nll <= vs_nll
    assert ts_nll == pytest.approx(0.186612, abs=1e-5)
    assert vs_nll == pytest.approx(0.180953, abs=1e-5)
    assert ms_nll == pytest.approx(0.172985, abs=1e-5)

    uncalibrated = negative_log_likelihood(y_test, test, from_logits=True)
    assert uncalibrated == pytest.approx(DENSENET_UNCAL_TEST_NLL, abs=1e-4)
    uncalibrated_ece = expected_calibration_error(y_test, test, from_logits=True)
    # Measured test NLL: VS 0.223067, MS 0.226469.
    for fitted, expected in ((vs, 0.223067), (ms, 0.226469)):
        calibrated = _np(fitted["layer"](test))
        assert calibrated.shape == (10000, 10)
        nll = negative_log_likelihood(y_test, calibrated, from_logits=True)
        assert nll < uncalibrated - 0.15
        assert nll == pytest.approx(expected, abs=1e-4)
        assert expected_calibration_error(
            y_test, calibrated, from_logits=True
        ) < uncalibrated_ece


def test_calibrator_densenet40_large_penalties_shrink_parameters(
    densenet40_logits,
):
    val, y_val, _, _ = densenet40_logits
    off = ~np.eye(10, dtype=bool)
    free_kernel = _fit_cached(MatrixScaling, val, y_val)["params"][:100]
    kernel = _fit_cached(MatrixScaling, val, y_val, off_diagonal_l2=1e6)[
        "params"
    ][:100].reshape(10, 10)
    assert np.abs(free_kernel.reshape(10, 10)[off]).max() > 0.1
    assert np.abs(kernel[off]).max() < 1e-4  # near-diagonal
    assert np.all(np.diag(kernel) > 0.1)  # still a positive per-class scale

    free_bias = _fit_cached(VectorScaling, val, y_val)["params"][10:]
    bias = _fit_cached(VectorScaling, val, y_val, bias_l2=1e6)["params"][10:]
    assert np.abs(free_bias).max() > 0.5  # unregularised biases are large
    assert np.abs(bias).max() < 1e-4


# Regression: L-BFGS used to stop silently after 1000 iterations on this
# ill-conditioned problem at objective 0.181594 (max |gradient| 6.7e-3).
def test_matrix_large_off_diagonal_l2_reaches_vector_scaling_optimum(
    densenet40_logits,
):
    val, y_val, _, _ = densenet40_logits
    vs = _fit_cached(VectorScaling, val, y_val)["params"]
    ms = _fit_cached(MatrixScaling, val, y_val, off_diagonal_l2=1e6)["params"]

    def objective(p):
        return _matrix_objective(p, val, y_val, 1e6, 0.0)

    # Vector scaling's optimum is a feasible matrix-scaling point with zero
    # off-diagonal penalty, so the penalised optimum cannot be worse.
    feasible = np.concatenate([np.diag(vs[:10]).ravel(), vs[10:]])
    assert objective(ms) <= objective(feasible) + 1e-6
    assert abs(_central_difference(objective, ms, 1, step=1e-7)) < 1e-4


# Regression: the fit used to stop at val NLL 0.187697, worse than temperature
# scaling (0.186612), which is a feasible point with zero bias.
def test_vector_large_bias_l2_not_worse_than_temperature_scaling(
    densenet40_logits,
):
    val, y_val, _, _ = densenet40_logits
    params = _fit_cached(VectorScaling, val, y_val, bias_l2=1e9)["params"]
    assert np.abs(params[10:]).max() < 1e-6
    objective = _vector_objective(params, val, y_val, 1e9)
    assert objective <= _ts_val_nll(val, y_val) + 1e-7


# --------------------------------------------------------------------------
# 3. Probability inputs and binary classifiers.
# --------------------------------------------------------------------------


def _moderate_multiclass(seed=0, n=3000, k=5, true_t=1.7):
    """Logits whose softmax has no tiny probabilities (min ~1e-6)."""
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.standard_normal((n, k))).astype(np.float32)
    p = _softmax(logits / true_t)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, np.minimum(labels, k - 1)


def test_temperature_probability_inputs_match_logit_fit():
    logits, labels = _moderate_multiclass()
    probabilities = _softmax(logits).astype(np.float32)
    t_logits = TemperatureScaling().fit(logits, labels).temperature
    ts = TemperatureScaling(from_logits=False).fit(probabilities, labels)
    assert t_logits == pytest.approx(1.7, abs=0.15)
    assert ts.temperature == pytest.approx(t_logits, abs=1e-4)
    out = _np(ts(probabilities))
    assert out.shape == probabilities.shape
    assert out.min() >= 0.0
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, _softmax(logits / t_logits), atol=1e-5)


# Regression: a 1e-12 floor on probabilities clipped 28390 DenseNet val
# entries (they reach ~1e-23) and gave T = 2.85278 instead of 2.88256.
def test_temperature_densenet40_probability_inputs_match_logit_fit(
    densenet40_logits,
):
    val, y_val, _, _ = densenet40_logits
    t_logits = TemperatureScaling().fit(val, y_val).temperature
    probabilities = _softmax(val).astype(np.float32)
    ts = TemperatureScaling(from_logits=False).fit(probabilities, y_val)
    assert ts.temperature == pytest.approx(t_logits, abs=1e-4)
    np.testing.assert_allclose(
        _np(ts(probabilities)), _softmax(val / t_logits), atol=1e-5
    )


def test_calibrator_densenet40_probability_outputs_are_probabilities(
    densenet40_logits,
):
    val, y_val, _, _ = densenet40_logits
    probabilities = _softmax(val).astype(np.float32)
    ts = TemperatureScaling(from_logits=False).fit(probabilities, y_val)
    out = _np(ts(probabilities))
    assert out.shape == (5000, 10)
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out.argmax(axis=1), val.argmax(axis=1))
    # Softening: the top probability goes down for the overconfident net.
    assert out.max(axis=1).mean() < probabilities.max(axis=1).mean() - 0.02


def _binary_problem(seed=1, n=2000, true_t=2.0):
    rng = np.random.default_rng(seed)
    z = (3.0 * rng.standard_normal(n)).astype(np.float32)
    y = (rng.random(n) < _sigmoid(z / true_t)).astype(np.int64)
    return z, y


def test_temperature_binary_single_column():
    z, y = _binary_problem()
    # A single logit column is the two-class problem with logits [0, z].
    single = TemperatureScaling().fit(z[:, None], y)
    two = TemperatureScaling().fit(np.stack([np.zeros_like(z), z], axis=1), y)
    t = single.temperature
    assert t == pytest.approx(two.temperature, rel=1e-6)
    assert t == pytest.approx(2.0, abs=0.2)
    out = _np(single(z[:, None]))
    assert out.shape == (2000, 1)
    np.testing.assert_allclose(out[:, 0], z / t, rtol=1e-5)
    # A single sigmoid-probability column: same T, output stays a (N, 1)
    # probability equal to sigmoid(z / T).
    p = _sigmoid(z).astype(np.float32)[:, None]
    ts = TemperatureScaling(from_logits=False).fit(p, y)
    assert ts.temperature == pytest.approx(t, abs=1e-4)
    out = _np(ts(p))
    assert out.shape == (2000, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out[:, 0], _sigmoid(z / t), atol=1e-5)


# Regression: a rank-1 input used to get a softmax over the batch axis.
def test_temperature_binary_1d_probabilities_call():
    z, y = _binary_problem()
    p = _sigmoid(z).astype(np.float32)
    ts = TemperatureScaling(from_logits=False).fit(p, y)
    try:
        out = _np(ts(p))
    except ValueError:
        return  # rejecting rank-1 input is acceptable too
    np.testing.assert_allclose(
        out.reshape(-1), _sigmoid(z / ts.temperature), atol=1e-5
    )


def test_calibrator_affine_single_column_raises():
    z, y = _binary_problem(n=200)
    columns = {True: z[:, None], False: _sigmoid(z).astype(np.float32)[:, None]}
    for cls in (VectorScaling, MatrixScaling):
        for from_logits, column in columns.items():
            with pytest.raises(ValueError, match="TemperatureScaling"):
                cls(from_logits=from_logits).fit(column, y)


def test_calibrator_affine_probability_inputs():
    # (Seed 4: the current L-BFGS converges in well under 2000 iterations on
    # all four fits; some other seeds hit the iteration cap and warn.)
    logits, labels = _moderate_multiclass(seed=4, n=1000)
    probabilities = _softmax(logits).astype(np.float32)
    log_p = np.log(probabilities.astype(np.float64)).astype(np.float32)
    for cls in (VectorScaling, MatrixScaling):
        from_probs = cls(from_logits=False).fit(probabilities, labels)
        out = _np(from_probs(probabilities))
        assert out.shape == probabilities.shape
        assert out.min() >= 0.0
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
        # With probabilities the layer works on their logarithms: it is the
        # logit-mode calibrator fitted on log(p), followed by a softmax.
        on_log_p = cls().fit(log_p, labels)
        np.testing.assert_allclose(
            out, _softmax(_np(on_log_p(log_p))), atol=1e-4
        )
        assert _nll(np.log(out), labels) < _nll(logits, labels) - 0.05


# --------------------------------------------------------------------------
# 4. `calibrate` on a Keras model and serialisation.
# --------------------------------------------------------------------------

_DIGITS_CACHE = {}


@pytest.fixture
def digits():
    """load_digits split 1000/797 and a logistic-regression Dense(10) fit.

    The Dense layer gets scikit-learn's weights, so its logits are the same
    on every backend (no training randomness).
    """
    if not _DIGITS_CACHE:
        sklearn_datasets = pytest.importorskip("sklearn.datasets")
        linear_model = pytest.importorskip("sklearn.linear_model")
        x, y = sklearn_datasets.load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32)
        lr = linear_model.LogisticRegression(C=100.0, max_iter=2000)
        lr.fit(x[:1000], y[:1000])
        _DIGITS_CACHE.update(
            x_val=x[1000:], y_val=y[1000:],
            kernel=lr.coef_.T.astype(np.float32),
            bias=lr.intercept_.astype(np.float32),
        )
    return dict(_DIGITS_CACHE)


def _digits_model(digits, activation=None):
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation=activation)]
    )
    model.layers[-1].set_weights([digits["kernel"], digits["bias"]])
    return model


def test_temperature_calibrate_logit_model(digits):
    model = _digits_model(digits)
    x_val, y_val = digits["x_val"], digits["y_val"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        calibrated = TemperatureScaling.calibrate(model, x_val, y_val)
    assert not _library_warnings(record, "calibrate")
    assert isinstance(calibrated, keras.Model)
    assert calibrated.layers[0] is model  # shared, not copied
    layer = calibrated.layers[-1]
    assert isinstance(layer, TemperatureScaling)
    assert layer.from_logits is True
    # The temperature is set by fit, never by training.
    assert layer.log_temperature.trainable is False
    assert all(w.path != layer.log_temperature.path
               for w in calibrated.trainable_weights)
    logits = _predict(model, x_val)
    t = layer.temperature
    assert t == pytest.approx(
        TemperatureScaling().fit(logits, y_val).temperature, rel=1e-6
    )
    assert t == pytest.approx(1.8156, abs=2e-3)  # measured, all backends
    out = _predict(calibrated, x_val)
    assert out.shape == (len(x_val), 10)
    np.testing.assert_allclose(out, logits / t, rtol=1e-5, atol=1e-5)
    # The compiled predict loop gives the same outputs, to float32 resolution
    # of logits around 10 (TensorFlow 2.21 fuses the compiled graph's matmul
    # differently from the eager call: 1.4e-6 apart on one of 7970 values).
    np.testing.assert_allclose(
        calibrated.predict(x_val, verbose=0), out, rtol=1e-5, atol=1e-5
    )
    # T = 1 is a candidate, so the fitted T cannot raise the val NLL.
    assert _nll(out, y_val) < _nll(logits, y_val)


def test_temperature_calibrate_softmax_model_warns(digits):
    model = _digits_model(digits, activation="softmax")
    x_val, y_val = digits["x_val"], digits["y_val"]
    with pytest.warns(UserWarning, match="probabilities") as record:
        calibrated = TemperatureScaling.calibrate(model, x_val, y_val)
    found = _library_warnings(record, "calibrate")
    assert len(found) == 1
    assert found[0].filename == __file__  # points at the caller
    layer = calibrated.layers[-1]
    assert layer.from_logits is False
    out = _predict(calibrated, x_val)
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    logits = x_val @ digits["kernel"] + digits["bias"]
    t_logits = TemperatureScaling().fit(logits, y_val).temperature
    assert layer.temperature == pytest.approx(t_logits, abs=1e-4)
    np.testing.assert_allclose(out, _softmax(logits / t_logits), atol=1e-4)
    # Saying so explicitly silences the warning.
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        explicit = TemperatureScaling.calibrate(
            model, x_val, y_val, from_logits=False
        )
    assert not _library_warnings(record, "calibrate")
    assert explicit.layers[-1].temperature == pytest.approx(
        layer.temperature, rel=1e-6
    )


def _save_load_check(calibrated, x_val, path):
    before = _predict(calibrated, x_val)
    calibrated.save(path)
    loaded = keras.models.load_model(path)
    layer, loaded_layer = calibrated.layers[-1], loaded.layers[-1]
    assert type(loaded_layer) is type(layer)
    assert loaded_layer.get_config() == layer.get_config()
    np.testing.assert_allclose(_predict(loaded, x_val), before, atol=1e-6)
    weights = layer.get_weights()
    assert weights
    for original, restored in zip(weights, loaded_layer.get_weights()):
        np.testing.assert_array_equal(original, restored)
    return layer, loaded_layer


def test_temperature_calibrated_model_save_load_round_trip(digits, tmp_path):
    x_val, y_val = digits["x_val"], digits["y_val"]
    for activation in (None, "softmax"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibrated = TemperatureScaling.calibrate(
                _digits_model(digits, activation), x_val, y_val
            )
        layer, loaded = _save_load_check(
            calibrated, x_val, tmp_path / f"ts_{activation}.keras"
        )
        assert loaded.from_logits == (activation is None)
        assert loaded.temperature == layer.temperature
        assert layer.temperature == pytest.approx(1.8156, abs=2e-3)


def test_calibrator_affine_calibrated_model_save_load_round_trip(
    digits, tmp_path
):
    x_val, y_val = digits["x_val"][:300], digits["y_val"][:300]
    cases = [
        (VectorScaling, None, {"bias_l2": 0.1}),
        (MatrixScaling, None, {"off_diagonal_l2": 0.1}),
        (MatrixScaling, "softmax", {"off_diagonal_l2": 0.1, "bias_l2": 0.1}),
    ]
    for cls, activation, kwargs in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibrated = cls.calibrate(
                _digits_model(digits, activation), x_val, y_val, **kwargs
            )
        layer, loaded = _save_load_check(
            calibrated, x_val, tmp_path / f"{cls.__name__}_{activation}.keras"
        )
        assert type(loaded) is cls
        assert loaded.from_logits == (activation is None)
        for key, value in kwargs.items():
            assert getattr(loaded, key) == value
        # The fit moved the parameters away from the identity start.
        assert np.abs(layer.get_weights()[-1]).max() > 1e-3


def test_calibrator_get_config_from_config_round_trip():
    logits, labels = _moderate_multiclass(seed=5, n=500)
    probabilities = _softmax(logits).astype(np.float32)
    cases = [
        (TemperatureScaling, {"temperature": 3.0}),
        (TemperatureScaling, {"from_logits": False, "name": "ts_probs"}),
        (VectorScaling, {"bias_l2": 0.5}),
        (MatrixScaling, {"off_diagonal_l2": 0.25, "bias_l2": 0.125}),
    ]
    for cls, kwargs in cases:
        inputs = logits if kwargs.get("from_logits", True) else probabilities
        layer = cls(**kwargs).fit(inputs, labels)
        config = layer.get_config()
        for key, value in kwargs.items():
            assert config[key] == value
        clone = cls.from_config(config)
        assert clone.get_config() == config
        clone.build((None, 5))
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(
            _np(clone(inputs)), _np(layer(inputs)), atol=1e-6
        )
        # Through Keras' registered-object serialisation as well.
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        assert type(restored) is cls
        assert restored.get_config() == config


# --------------------------------------------------------------------------
# 5. Argument and input errors.
# --------------------------------------------------------------------------


def test_calibrator_invalid_constructor_arguments_raise():
    cases = [(TemperatureScaling, "temperature", v)
             for v in (0, -1, 0.0, float("nan"), float("inf"))]
    cases += [(cls, "from_logits", v)
              for cls in (TemperatureScaling, VectorScaling, MatrixScaling)
              for v in ("yes", 1, None)]
    cases += [
        (MatrixScaling, "off_diagonal_l2", -1),
        (MatrixScaling, "off_diagonal_l2", float("inf")),
        (MatrixScaling, "bias_l2", float("nan")),
        (VectorScaling, "bias_l2", float("nan")),
        (VectorScaling, "bias_l2", -0.5),
    ]
    for cls, name, value in cases:
        with pytest.raises(ValueError, match=name) as info:
            cls(**{name: value})
        assert repr(value) in str(info.value), (cls, name, value)


# Regression: these used to raise numpy's TypeError from np.isfinite.
def test_calibrator_non_numeric_argument_raises_value_error():
    cases = [
        (TemperatureScaling, "temperature", "2"),
        (TemperatureScaling, "temperature", None),
        (VectorScaling, "bias_l2", "x"),
        (MatrixScaling, "off_diagonal_l2", None),
    ]
    for cls, name, value in cases:
        with pytest.raises(ValueError, match=name):
            cls(**{name: value})


def test_calibrator_invalid_labels_raise():
    logits, labels = _moderate_multiclass(seed=2, n=200)
    for cls in (TemperatureScaling, VectorScaling, MatrixScaling):
        with pytest.raises(ValueError, match="single class") as info:
            cls().fit(logits, np.full(200, 3))
        assert "3" in str(info.value)
    for bad in (5, -1):
        out_of_range = labels.copy()
        out_of_range[17] = bad
        with pytest.raises(ValueError, match="y_true") as info:
            TemperatureScaling().fit(logits, out_of_range)
        assert str(bad) in str(info.value)
    with pytest.raises(ValueError, match="y_true"):
        TemperatureScaling().fit(logits, labels[:150])


def test_calibrator_invalid_predictions_raise():
    logits, labels = _moderate_multiclass(seed=2, n=200)
    for cls in (TemperatureScaling, VectorScaling, MatrixScaling):
        for bad in (np.nan, np.inf):
            broken = logits.copy()
            broken[3, 1] = bad
            with pytest.raises(ValueError, match="NaN"):
                cls().fit(broken, labels)
    probabilities = _softmax(logits).astype(np.float32)
    with pytest.raises(ValueError, match="sum to 1"):
        TemperatureScaling(from_logits=False).fit(probabilities * 0.9, labels)
    with pytest.raises(ValueError, match="from_logits"):
        VectorScaling(from_logits=False).fit(logits, labels)
    with pytest.raises(ValueError, match="from_logits=False"):
        TemperatureScaling().fit(probabilities, labels)


# --------------------------------------------------------------------------
# 6. Optimum at a bound of the temperature range.
# --------------------------------------------------------------------------


def _fit_recording(logits, labels):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ts = TemperatureScaling().fit(logits, labels)
    return ts, _library_warnings(record, "no minimum")


def test_temperature_optimum_at_a_bound_warns():
    labels = np.arange(200) % 4
    # The true class always has the lowest logit: the NLL falls as T grows.
    ts, found = _fit_recording((-5.0 * np.eye(4)[labels]).astype(np.float32),
                               labels)
    assert len(found) == 1
    assert "1e4" in str(found[0].message)
    assert ts.temperature == pytest.approx(1e4, rel=1e-5)
    # All right with margin 1e-3: the NLL keeps falling (without
    # underflowing) all the way to T = 1e-4.
    ts, found = _fit_recording((1e-3 * np.eye(4)[labels]).astype(np.float32),
                               labels)
    assert len(found) == 1
    assert "1e-4" in str(found[0].message)
    assert ts.temperature == pytest.approx(1e-4, rel=1e-5)
    # A normal problem does not warn.
    logits, labels = _moderate_multiclass(seed=4, n=500)
    _, found = _fit_recording(logits, labels)
    assert not found


# Regression: with margin 5 the float64 derivative underflows to 0 at beta ~ 8;
# the fit used to return T = 0.1639 silently.
def test_temperature_separable_all_correct_warns_and_hits_lower_bound():
    labels = np.arange(200) % 4
    ts, found = _fit_recording((5.0 * np.eye(4)[labels]).astype(np.float32),
                               labels)
    assert len(found) == 1
    assert ts.temperature == pytest.approx(1e-4, rel=1e-5)


# Regression: the warning used stacklevel=4 and pointed at calibrator.py.
def test_temperature_bound_warning_points_at_caller():
    labels = np.arange(200) % 4
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        TemperatureScaling().fit((-5.0 * np.eye(4)[labels]).astype(np.float32),
                                 labels)
    found = _library_warnings(record, "no minimum")
    assert found and found[0].filename == __file__


def test_calibrator_non_converged_fit_warns(monkeypatch):
    from keras_reliability.calibration import lbfgs

    monkeypatch.setitem(lbfgs.minimize.__kwdefaults__, "max_iterations", 3)
    logits, labels = _moderate_multiclass(seed=6, n=300)
    for cls in (VectorScaling, MatrixScaling):
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            layer = cls().fit(logits, labels)
        found = [w for w in record if issubclass(w.category, RuntimeWarning)]
        assert len(found) == 1, cls
        assert f"{cls.__name__}.fit" in str(found[0].message)
        assert np.all(np.isfinite(_np(layer(logits))))


def test_calibrator_non_converged_warning_points_at_caller(monkeypatch):
    from keras_reliability.calibration import lbfgs

    monkeypatch.setitem(lbfgs.minimize.__kwdefaults__, "max_iterations", 3)
    logits, labels = _moderate_multiclass(seed=6, n=300)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        VectorScaling().fit(logits, labels)
    found = [w for w in record if issubclass(w.category, RuntimeWarning)]
    assert found and found[0].filename == __file__


def test_calibrator_densenet40_default_affine_fits_do_not_warn(
    densenet40_logits,
):
    val, y_val, _, _ = densenet40_logits
    for cls in (VectorScaling, MatrixScaling):
        found = _fit_cached(cls, val, y_val)["warnings"]
        assert not found, [str(w.message) for w in found]


# --------------------------------------------------------------------------
# 7. Registry.
# --------------------------------------------------------------------------


def test_calibrator_registry_get():
    for name, cls in [
        ("temperature_scaling", TemperatureScaling),
        ("vector_scaling", VectorScaling),
        ("matrix_scaling", MatrixScaling),
        ("Temperature_Scaling", TemperatureScaling),
    ]:
        obj = registry.get("calibrator", name)
        assert type(obj) is cls
        assert isinstance(obj, Calibrator)
        assert obj.from_logits is True
    obj = registry.get(
        "calibrator",
        {"class_name": "matrix_scaling", "config": {"off_diagonal_l2": 0.5}},
    )
    assert type(obj) is MatrixScaling
    assert obj.off_diagonal_l2 == 0.5
    assert obj.bias_l2 == 0.0
    with pytest.raises(ValueError, match="temperature_scaling"):
        registry.get("calibrator", "platt_scaling_does_not_exist")
