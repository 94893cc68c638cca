"""The GradNorm plugin, as a user gets it after `pip install plugins/gradnorm`."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_reliability as kr

gradnorm = pytest.importorskip(
    "keras_reliability_gradnorm", reason="install the plugin: pip install plugins/gradnorm"
)


def test_the_registry_finds_it_without_an_import_of_the_plugin():
    script = (
        "import sys, keras_reliability as kr\n"
        "assert 'keras_reliability_gradnorm' not in sys.modules\n"
        "assert 'gradnorm' in kr.registry.available('ood_scorer')\n"
        "assert 'keras_reliability_gradnorm' in sys.modules\n"
        "print(type(kr.registry.get('ood_scorer', 'gradnorm')).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "GradNorm"
    assert kr.registry.failed_plugins() == {}


def _mlp(num_classes=4):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )


def _kl_from_uniform(h, kernel, bias, temperature):
    z = (h @ kernel + bias) / temperature
    log_p = z - z.max() - np.log(np.exp(z - z.max()).sum())
    return -np.log(len(z)) - log_p.mean()


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_score_is_the_l1_norm_of_the_finite_difference_kernel_gradient(temperature):
    model = _mlp()
    x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
    scores = gradnorm.GradNorm(temperature=temperature).score(model, x)
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in model.get_weights())
    step = 1e-6
    for row, score in zip(x.astype(np.float64), scores):
        h = np.maximum(row @ w1 + b1, 0)
        gradient = np.zeros_like(w2)
        for index in np.ndindex(*w2.shape):
            plus, minus = w2.copy(), w2.copy()
            plus[index] += step
            minus[index] -= step
            gradient[index] = (
                _kl_from_uniform(h, plus, b2, temperature)
                - _kl_from_uniform(h, minus, b2, temperature)
            ) / (2 * step)
        assert -score == pytest.approx(np.abs(gradient).sum(), rel=1e-5)


def test_works_by_name_in_the_ood_monitor_callback():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target.astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    noise = np.random.default_rng(0).uniform(size=(300, 64)).astype("float32")
    callback = kr.callbacks.OODMonitorCallback(x[1200:1500], ood_data=noise, scorers=("gradnorm",))
    history = model.fit(x[:1200], y[:1200], epochs=5, verbose=0, callbacks=[callback])
    scorer = gradnorm.GradNorm()
    expected = kr.metrics.ood_auroc(scorer.score(model, x[1200:1500]), scorer.score(model, noise))
    assert history.history["ood_gradnorm_auroc"][-1] == pytest.approx(expected, abs=1e-6)
    # Better than chance at telling uniform noise from digits: 0.83 (JAX),
    # 0.77 (TensorFlow) and 0.68 (PyTorch) after five epochs.
    # Noise has more total "ink", hence a larger ||h||_1, which works against
    # GradNorm here.
    assert expected > 0.5


def test_reads_the_dense_head_through_a_softmax_layer():
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(4)(inputs)
    plain = keras.Model(inputs, logits)
    with_softmax = keras.Model(inputs, keras.layers.Softmax()(logits))
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    np.testing.assert_allclose(
        gradnorm.GradNorm().score(with_softmax, x), gradnorm.GradNorm().score(plain, x), rtol=1e-6
    )


def test_refuses_a_model_whose_logits_no_dense_layer_computes():
    inputs = keras.Input((6,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs) * 2.0)
    x = np.zeros((3, 6), "float32")
    with pytest.raises(ValueError, match="Dense"):
        gradnorm.GradNorm().score(model, x)


def test_bad_temperature_names_the_argument():
    with pytest.raises(ValueError, match="temperature"):
        gradnorm.GradNorm(temperature=0)


def test_config_round_trip_through_the_registry_and_keras():
    scorer = gradnorm.GradNorm(temperature=2.0, name="gn")
    restored = kr.registry.get(
        "ood_scorer", {"class_name": "gradnorm", "config": scorer.get_config()}
    )
    assert isinstance(restored, gradnorm.GradNorm)
    assert restored.get_config() == {"name": "gn", "temperature": 2.0}
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(scorer))
    assert isinstance(rebuilt, gradnorm.GradNorm) and rebuilt.temperature == 2.0
