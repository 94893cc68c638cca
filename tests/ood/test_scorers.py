"""OOD scorers against independent references, on a small digits classifier.

Every score is recomputed here without the library: numpy for the logit
scorers, ReAct and ViM (the paper's official algorithm), scikit-learn for
Mahalanobis (`EmpiricalCovariance`) and KNN (`NearestNeighbors`), and the
backend's own autodiff (`tf.GradientTape`, `jax.grad`, `torch.autograd`) for
ODIN's input perturbation. The classifier is a 64-32-16-10 ReLU MLP trained
on scikit-learn's digits (by scikit-learn's MLPClassifier, whose weights are
loaded into Keras); the variants that end in a softmax (an activation on the
last Dense, a separate Softmax layer, a softmax inside a subclassed model's
`call`) share its weights.
"""

import warnings

import keras
import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors
from sklearn.neural_network import MLPClassifier

from keras_reliability import registry
from keras_reliability.layers import MCDropout
from keras_reliability.ood import KNN
from keras_reliability.ood import ODIN
from keras_reliability.ood import Energy
from keras_reliability.ood import Entropy
from keras_reliability.ood import FeatureScorer
from keras_reliability.ood import Mahalanobis
from keras_reliability.ood import MaxLogit
from keras_reliability.ood import MaxSoftmax
from keras_reliability.ood import MutualInformation
from keras_reliability.ood import OODScorer
from keras_reliability.ood import ReAct
from keras_reliability.ood import ViM

NUM_CLASSES = 10
HIDDEN, PENULTIMATE = 32, 16
NUM_TRAIN, NUM_TEST = 600, 300

SCORER_CLASSES = {
    "msp": MaxSoftmax,
    "maxlogit": MaxLogit,
    "energy": Energy,
    "entropy": Entropy,
    "odin": ODIN,
    "mahalanobis": Mahalanobis,
    "knn": KNN,
    "vim": ViM,
    "react": ReAct,
    "mutual_information": MutualInformation,
}

# One non-default instance of each class, for the config round trips.
CUSTOM_SCORERS = [
    lambda: MaxSoftmax(name="my_msp"),
    lambda: MaxLogit(name="my_maxlogit"),
    lambda: Energy(temperature=2.5, name="my_energy"),
    lambda: Entropy(name="my_entropy"),
    lambda: ODIN(temperature=10.0, epsilon=0.01, batch_size=7, name="my_odin"),
    lambda: Mahalanobis(feature_layer="hidden", name="my_mahalanobis"),
    lambda: KNN(k=3, feature_layer=1, name="my_knn"),
    lambda: ViM(principal_dim=5, name="my_vim"),
    lambda: ReAct(percentile=80.0, temperature=2.0, feature_layer="hidden", name="my_react"),
    lambda: MutualInformation(num_samples=4, batch_size=16, name="my_mi"),
]


# ----------------------------------------------------------------- helpers


def np_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def np_logsumexp(z):
    top = z.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(z - top).sum(axis=1, keepdims=True)))[:, 0]


def np_forward(weights, x):
    """(hidden, penultimate, logits) of the MLP in float64, from its weights."""
    w1, b1, w2, b2, w3, b3 = (np.asarray(w, np.float64) for w in weights)
    hidden = np.maximum(np.asarray(x, np.float64) @ w1 + b1, 0.0)
    penultimate = np.maximum(hidden @ w2 + b2, 0.0)
    return hidden, penultimate, penultimate @ w3 + b3


def layer_output(model, layer):
    """Sub-model `model.inputs -> layer.output` (the features a scorer should read)."""
    return keras.Model(model.inputs, layer.output)


def predict(model, x):
    return np.asarray(model.predict(x, verbose=0), np.float64)


def build_mlp(kind="linear", seed=0):
    """The 64-32-16-10 architecture in several forms, untrained.

    kind: "linear" (Sequential, logits), "functional" (same, functional API),
    "softmax_dense" (softmax activation on the last Dense), "softmax_layer"
    (linear last Dense, then a Softmax layer), "mc_dropout" (an MCDropout
    between the hidden layers), "log_softmax" (log_softmax on the last Dense).
    """
    keras.utils.set_random_seed(seed)
    activation = {"softmax_dense": "softmax", "log_softmax": "log_softmax"}.get(kind)
    if kind == "functional":
        inputs = keras.Input((64,), name="pixels")
        h = keras.layers.Dense(HIDDEN, activation="relu", name="hidden")(inputs)
        h = keras.layers.Dense(PENULTIMATE, activation="relu", name="penultimate")(h)
        outputs = keras.layers.Dense(NUM_CLASSES, name="classifier")(h)
        return keras.Model(inputs, outputs, name="functional_mlp")
    layers = [
        keras.Input((64,)),
        keras.layers.Dense(HIDDEN, activation="relu", name="hidden"),
    ]
    if kind == "mc_dropout":
        layers.append(MCDropout(0.3, seed=1, name="mc_dropout"))
    layers += [
        keras.layers.Dense(PENULTIMATE, activation="relu", name="penultimate"),
        keras.layers.Dense(NUM_CLASSES, activation=activation, name="classifier"),
    ]
    if kind == "softmax_layer":
        layers.append(keras.layers.Softmax(name="softmax"))
    return keras.Sequential(layers, name=f"{kind}_mlp")


class SoftmaxInCall(keras.Model):
    """Subclassed MLP whose `call` applies the softmax: no logits to read."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(HIDDEN, activation="relu")
        self.penultimate = keras.layers.Dense(PENULTIMATE, activation="relu")
        self.classifier = keras.layers.Dense(NUM_CLASSES)

    def call(self, inputs):
        logits = self.classifier(self.penultimate(self.hidden(inputs)))
        return keras.ops.softmax(logits, axis=-1)


def copy_weights(source, target):
    dense = [layer for layer in target.layers if isinstance(layer, keras.layers.Dense)]
    weights = source.get_weights()
    assert len(dense) * 2 == len(weights)
    for layer, start in zip(dense, range(0, len(weights), 2)):
        layer.set_weights(weights[start : start + 2])
    return target


def odin_reference_gradient(model, x, temperature):
    """Gradient of sum_i -max_k log softmax(model(x_i) / T)_k w.r.t. x, per backend."""
    backend = keras.backend.backend()
    x = np.asarray(x, np.float32)
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            logits = model(inputs, training=False)
            log_probs = tf.nn.log_softmax(logits / temperature, axis=-1)
            loss = tf.reduce_sum(-tf.reduce_max(log_probs, axis=-1))
        return tape.gradient(loss, inputs).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def loss(inputs):
            logits = model(inputs, training=False)
            log_probs = jax.nn.log_softmax(logits / temperature, axis=-1)
            return jnp.sum(-jnp.max(log_probs, axis=-1))

        return np.asarray(jax.grad(loss)(jnp.asarray(x)))
    if backend == "torch":
        import torch

        inputs = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(inputs, training=False)
            log_probs = torch.log_softmax(logits / temperature, dim=-1)
            loss = (-log_probs.max(dim=-1).values).sum()
            (gradient,) = torch.autograd.grad(loss, inputs)
        return gradient.detach().cpu().numpy()
    pytest.skip(f"no reference input gradient for backend {backend!r}")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(shuffled_digits):
    """`(x_train, y_train, x_test, y_test)`: digits as flat 64-vectors in [0, 1]."""
    x, y = shuffled_digits
    test = slice(NUM_TRAIN, NUM_TRAIN + NUM_TEST)
    return x[:NUM_TRAIN], y[:NUM_TRAIN], x[test], y[test]


@pytest.fixture(scope="module")
def model(data):
    """The trained Sequential MLP ending in a linear Dense (logits).

    The weights come from scikit-learn's `MLPClassifier` (same architecture,
    ReLU, softmax output): the same model on every backend, in about a second
    (Keras' per-step overhead on a small CPU made `model.fit` the slowest part
    of this file under PyTorch).
    """
    x_train, y_train, x_test, y_test = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(
            hidden_layer_sizes=(HIDDEN, PENULTIMATE),
            learning_rate_init=1e-2,
            max_iter=60,
            random_state=0,
        ).fit(x_train, y_train)
    model = build_mlp("linear")
    for layer, kernel, bias in zip(model.layers, mlp.coefs_, mlp.intercepts_):
        layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    accuracy = (predict(model, x_test).argmax(axis=1) == y_test).mean()
    assert accuracy > 0.9, accuracy
    return model


@pytest.fixture(scope="module")
def variants(model):
    """The trained weights in every architecture form (dict kind -> model)."""
    built = {"linear": model}
    for kind in ("functional", "softmax_dense", "softmax_layer", "mc_dropout", "log_softmax"):
        built[kind] = copy_weights(model, build_mlp(kind))
    subclassed = SoftmaxInCall(name="softmax_in_call")
    subclassed(np.zeros((1, 64), "float32"))
    built["subclassed"] = copy_weights(model, subclassed)
    return built


@pytest.fixture(scope="module")
def reference(model, data):
    """Numpy forward pass of the trained weights on train and test inputs."""
    x_train, _, x_test, _ = data
    weights = model.get_weights()
    return {"train": np_forward(weights, x_train), "test": np_forward(weights, x_test)}


@pytest.fixture(scope="module")
def logits(model, data):
    """The linear model's own float32 logits on the test inputs, as float64."""
    return predict(model, data[2])


# ------------------------------------------------------- logit scorers


def msp_reference(z):
    return -np_softmax(z).max(axis=1)


def entropy_reference(z):
    p = np_softmax(z)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)


LOGIT_CASES = [
    ("msp", MaxSoftmax, msp_reference),
    ("maxlogit", MaxLogit, lambda z: -z.max(axis=1)),
    ("energy_t1", lambda: Energy(temperature=1.0), lambda z: -np_logsumexp(z)),
    ("energy_t2", lambda: Energy(temperature=2.0), lambda z: -2.0 * np_logsumexp(z / 2.0)),
    ("entropy", Entropy, entropy_reference),
]


def test_trained_logits_match_numpy_forward_pass(logits, reference):
    np.testing.assert_allclose(logits, reference["test"][2], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["linear", "functional", "softmax_dense", "softmax_layer"])
@pytest.mark.parametrize("case", LOGIT_CASES, ids=[case[0] for case in LOGIT_CASES])
def test_logit_scorer_matches_numpy(case, kind, variants, data, logits, reference):
    _, make, expected_fn = case
    x_test = data[2]
    scores = make().score(variants[kind], x_test)
    assert scores.shape == (len(x_test),)
    assert np.issubdtype(scores.dtype, np.floating)
    # Against numpy on the float64 forward pass of the same weights.
    np.testing.assert_allclose(scores, expected_fn(reference["test"][2]), rtol=1e-4, atol=1e-4)
    # And tightly against the same formula on the model's own logits: the
    # softmax-ending variants must give back the logits, not log-probabilities
    # (maxlogit and energy would differ by logsumexp(z) per row).
    np.testing.assert_allclose(scores, expected_fn(logits), rtol=1e-5, atol=1e-5)


def test_energy_temperature_changes_the_score(variants, data):
    x_test = data[2]
    t1 = Energy(temperature=1.0).score(variants["linear"], x_test)
    t2 = Energy(temperature=2.0).score(variants["linear"], x_test)
    # d/dT [-T logsumexp(z/T)] = -entropy(softmax(z/T)) < 0, and
    # -logsumexp(z) <= -max z.
    assert np.all(t2 < t1 + 1e-9)
    assert np.all(t1 <= MaxLogit().score(variants["linear"], x_test) + 1e-6)


def test_msp_and_entropy_from_log_probabilities_of_softmax_in_call(variants, data, reference):
    subclassed = variants["subclassed"]
    x_test = data[2]
    z = reference["test"][2]
    np.testing.assert_allclose(MaxSoftmax().score(subclassed, x_test), msp_reference(z), atol=1e-5)
    np.testing.assert_allclose(Entropy().score(subclassed, x_test), entropy_reference(z), atol=1e-4)


@pytest.mark.parametrize("make", [MaxLogit, Energy, lambda: Energy(temperature=2.0)])
def test_shift_dependent_scorers_refuse_softmax_in_call(make, variants, data):
    with pytest.raises(ValueError, match="logits"):
        make().score(variants["subclassed"], data[2])


@pytest.mark.parametrize("make", [Mahalanobis, KNN, ReAct, ViM])
def test_feature_scorers_refuse_a_subclassed_model(make, variants, data):
    x_train, y_train, _, _ = data
    with pytest.raises(ValueError, match="functional or Sequential"):
        make().fit(variants["subclassed"], x_train, y_train)


def test_msp_on_subclassed_model_with_softmax_dense(model, data, reference):
    class SoftmaxDenseModel(keras.Model):
        def __init__(self):
            super().__init__(name="softmax_dense_subclassed")
            self.hidden = keras.layers.Dense(HIDDEN, activation="relu")
            self.penultimate = keras.layers.Dense(PENULTIMATE, activation="relu")
            self.classifier = keras.layers.Dense(NUM_CLASSES, activation="softmax")

        def call(self, inputs):
            return self.classifier(self.penultimate(self.hidden(inputs)))

    subclassed = SoftmaxDenseModel()
    subclassed(np.zeros((1, 64), "float32"))
    copy_weights(model, subclassed)
    scores = MaxSoftmax().score(subclassed, data[2])
    np.testing.assert_allclose(scores, msp_reference(reference["test"][2]), atol=1e-5)


def test_energy_on_log_softmax_output_is_not_silently_zero(variants, data, reference):
    scores = Energy().score(variants["log_softmax"], data[2])
    # Either the logits are recovered, or the scorer refuses (ValueError);
    # what it must not do is return log-probability energies (all ~0).
    np.testing.assert_allclose(scores, -np_logsumexp(reference["test"][2]), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------- Mahalanobis


def mahalanobis_reference(train_features, labels, test_features):
    """min_c squared Mahalanobis distance, tied covariance from sklearn."""
    train_features = np.asarray(train_features, np.float64)
    test_features = np.asarray(test_features, np.float64)
    classes = np.unique(labels)
    means = np.stack([train_features[labels == c].mean(axis=0) for c in classes])
    centred = train_features - means[np.searchsorted(classes, labels)]
    covariance = EmpiricalCovariance(assume_centered=True).fit(centred)
    distances = np.stack([covariance.mahalanobis(test_features - mean) for mean in means], axis=1)
    return distances.min(axis=1)


# (feature_layer argument, layer index into model.layers whose output is read;
# None reads the input of the last layer.)
FEATURE_LAYER_CASES = [
    (None, None),
    ("hidden", 0),
    ("penultimate", 1),
    (0, 0),
    (1, 1),
    (-2, 1),
]


_feature_cache = {}


def sequential_features(model, layer_index, x):
    """Output of `model.layers[layer_index]` (None: input of the last layer) on `x`.

    Cached per (model, layer, array): the arrays come from module fixtures.
    """
    key = (id(model), layer_index, id(x))
    if key not in _feature_cache:
        if layer_index is None:
            sub = keras.Model(model.inputs, model.layers[-1].input)
        else:
            sub = layer_output(model, model.layers[layer_index])
        _feature_cache[key] = (model, x, predict(sub, x))
    return _feature_cache[key][2]


@pytest.mark.parametrize("feature_layer,layer_index", FEATURE_LAYER_CASES)
def test_mahalanobis_matches_sklearn(feature_layer, layer_index, model, data):
    x_train, y_train, x_test, _ = data
    scorer = Mahalanobis(feature_layer=feature_layer)
    assert scorer.fit(model, x_train, y_train) is scorer
    expected = mahalanobis_reference(
        sequential_features(model, layer_index, x_train),
        y_train,
        sequential_features(model, layer_index, x_test),
    )
    scores = scorer.score(model, x_test)
    assert scores.shape == (len(x_test),)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)


def test_mahalanobis_default_feature_is_input_of_last_layer(model, reference, data):
    x_train, y_train, x_test, _ = data
    # In the chain, the input of the last layer is the penultimate output:
    # the numpy forward pass gives it independently of Keras.
    expected = mahalanobis_reference(reference["train"][1], y_train, reference["test"][1])
    scores = Mahalanobis().fit(model, x_train, y_train).score(model, x_test)
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-2)


def test_feature_layer_index_skips_the_input_layer_of_a_functional_model(variants, model, data):
    """Index k picks the same layer in the Sequential and functional forms."""
    functional = variants["functional"]
    assert isinstance(functional.layers[0], keras.layers.InputLayer)
    x_train, y_train, x_test, _ = data
    by_index = Mahalanobis(feature_layer=0).fit(functional, x_train, y_train)
    by_index = by_index.score(functional, x_test)
    by_name = Mahalanobis(feature_layer="hidden").fit(functional, x_train, y_train)
    expected = mahalanobis_reference(
        predict(layer_output(functional, functional.get_layer("hidden")), x_train),
        y_train,
        predict(layer_output(functional, functional.get_layer("hidden")), x_test),
    )
    np.testing.assert_allclose(by_index, expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(by_name.score(functional, x_test), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["linear", "functional"])
@pytest.mark.parametrize(
    "make", [Mahalanobis, KNN, ReAct, ViM], ids=["mahalanobis", "knn", "react", "vim"]
)
def test_feature_scorers_agree_on_sequential_and_functional(kind, make, variants, data):
    x_train, y_train, x_test, _ = data
    linear = variants["linear"]
    reference_scores = make().fit(linear, x_train, y_train).score(linear, x_test)
    scores = make().fit(variants[kind], x_train, y_train).score(variants[kind], x_test)
    assert scores.shape == (len(x_test),)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, reference_scores, rtol=1e-4, atol=1e-4)


def test_mahalanobis_on_functional_model_with_named_layer(variants, data):
    functional = variants["functional"]
    x_train, y_train, x_test, _ = data
    features = layer_output(functional, functional.get_layer("penultimate"))
    expected = mahalanobis_reference(predict(features, x_train), y_train, predict(features, x_test))
    scorer = Mahalanobis(feature_layer="penultimate").fit(functional, x_train, y_train)
    np.testing.assert_allclose(scorer.score(functional, x_test), expected, rtol=1e-4, atol=1e-3)


def test_mahalanobis_accepts_one_hot_and_refuses_labels_that_are_not_classes(model, data):
    x_train, y_train, x_test, _ = data
    baseline = Mahalanobis().fit(model, x_train, y_train).score(model, x_test)
    one_hot = Mahalanobis().fit(model, x_train, np.eye(NUM_CLASSES)[y_train]).score(model, x_test)
    column = Mahalanobis().fit(model, x_train, y_train[:, None]).score(model, x_test)
    np.testing.assert_allclose(one_hot, baseline, rtol=1e-9)
    np.testing.assert_allclose(column, baseline, rtol=1e-9)
    for bad in (100 + 3 * y_train, np.where(y_train == 0, -1, y_train)):
        with pytest.raises(ValueError, match=r"Mahalanobis.fit: `y` holds the label (1\d\d|-1), outside"):
            Mahalanobis().fit(model, x_train, bad)


# -------------------------------------------------------------------- KNN


def knn_reference(train_features, test_features, k):
    def normalise(f):
        f = np.asarray(f, np.float64)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    neighbours = NearestNeighbors(n_neighbors=k).fit(normalise(train_features))
    distances, _ = neighbours.kneighbors(normalise(test_features))
    return distances[:, -1]


@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("feature_layer,layer_index", [(None, None), ("hidden", 0)])
def test_knn_matches_sklearn(k, feature_layer, layer_index, model, data):
    x_train, _, x_test, _ = data
    scorer = KNN(k=k, feature_layer=feature_layer)
    assert scorer.fit(model, x_train) is scorer
    expected = knn_reference(
        sequential_features(model, layer_index, x_train),
        sequential_features(model, layer_index, x_test),
        k,
    )
    np.testing.assert_allclose(scorer.score(model, x_test), expected, atol=2e-4)


def test_knn_k_larger_than_training_set_raises(model, data):
    with pytest.raises(ValueError, match="`k`=5"):
        KNN(k=5).fit(model, data[0][:4])


def test_knn_k_equal_to_training_set_is_allowed(model, data):
    x_small = data[0][:5]
    scores = KNN(k=5).fit(model, x_small).score(model, data[2][:20])
    expected = knn_reference(
        sequential_features(model, None, x_small), sequential_features(model, None, data[2][:20]), 5
    )
    np.testing.assert_allclose(scores, expected, atol=2e-4)


# -------------------------------------------------------------------- ViM


def vim_reference(kernel, bias, train_features, test_features, principal_dim):
    """The official ViM algorithm (haoqiwang/vim), with higher = more OOD."""
    w = np.asarray(kernel, np.float64).T  # (classes, features), as a torch fc
    b = np.asarray(bias, np.float64)
    train_features = np.asarray(train_features, np.float64)
    test_features = np.asarray(test_features, np.float64)
    u = -np.matmul(np.linalg.pinv(w), b)
    train_logits = train_features @ w.T + b
    test_logits = test_features @ w.T + b
    covariance = EmpiricalCovariance(assume_centered=True).fit(train_features - u)
    eig_values, eig_vectors = np.linalg.eig(covariance.covariance_)
    eig_values, eig_vectors = eig_values.real, eig_vectors.real
    residual_space = np.ascontiguousarray(
        (eig_vectors.T[np.argsort(eig_values * -1)[principal_dim:]]).T
    )
    train_vlogit = np.linalg.norm((train_features - u) @ residual_space, axis=-1)
    alpha = train_logits.max(axis=-1).mean() / train_vlogit.mean()
    test_vlogit = np.linalg.norm((test_features - u) @ residual_space, axis=-1) * alpha
    return alpha, test_vlogit - np_logsumexp(test_logits)


@pytest.mark.parametrize("principal_dim", [None, 4, 12])
def test_vim_matches_official_algorithm(principal_dim, model, data):
    x_train, _, x_test, _ = data
    kernel, bias = model.layers[-1].get_weights()
    expected_alpha, expected = vim_reference(
        kernel,
        bias,
        sequential_features(model, None, x_train),
        sequential_features(model, None, x_test),
        principal_dim or PENULTIMATE // 2,
    )
    scorer = ViM(principal_dim=principal_dim)
    assert scorer.fit(model, x_train) is scorer
    np.testing.assert_allclose(scorer.alpha, expected_alpha, rtol=1e-5)
    np.testing.assert_allclose(scorer.score(model, x_test), expected, rtol=1e-4, atol=1e-3)


def test_vim_on_softmax_dense_equals_linear(variants, data):
    x_train, _, x_test, _ = data
    linear = ViM().fit(variants["linear"], x_train).score(variants["linear"], x_test)
    softmax = ViM().fit(variants["softmax_dense"], x_train).score(variants["softmax_dense"], x_test)
    np.testing.assert_allclose(softmax, linear, rtol=1e-5, atol=1e-4)


def test_vim_reads_the_dense_head_through_a_softmax_layer(variants, data):
    # The classification head is the Dense layer before the Softmax layer.
    scores = ViM().fit(variants["softmax_layer"], data[0]).score(variants["softmax_layer"], data[0])
    assert np.all(np.isfinite(scores))


def test_vim_needs_a_dense_classification_head(data):
    inputs = keras.Input((data[0].shape[1],))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    # The logits come from an arithmetic op, not from a Dense layer.
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(hidden) * 2.0)
    with pytest.raises(ValueError, match="Dense"):
        ViM().fit(model, data[0])


@pytest.mark.parametrize("principal_dim", [PENULTIMATE, PENULTIMATE + 3])
def test_vim_principal_dim_at_least_feature_dim_raises(principal_dim, model, data):
    with pytest.raises(ValueError, match="principal_dim"):
        ViM(principal_dim=principal_dim).fit(model, data[0])


def linear_bottleneck_model(seed=0):
    """4 inputs -> 16 linear features -> 3 logits, random weights and biases.

    The features `A x + c` span a 4-dimensional affine subspace, so centred
    at ViM's origin `u` they have rank 5 of 16: the 11 smallest directions
    hold only float32 rounding.
    """
    rng = np.random.default_rng(seed)
    inputs = keras.Input((4,))
    features = keras.layers.Dense(16, name="features")(inputs)
    outputs = keras.layers.Dense(3, name="classifier")(features)
    model = keras.Model(inputs, outputs, name="bottleneck")
    for layer in model.layers[1:]:
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in (kernel, bias)])
    return model, rng.normal(size=(200, 4)).astype("float32")


@pytest.mark.parametrize("principal_dim", [None, 8, 5])
def test_vim_refuses_a_residual_of_rounding_noise(principal_dim):
    model, x = linear_bottleneck_model()
    kernel, bias = model.layers[-1].get_weights()
    features = predict(layer_output(model, model.get_layer("features")), x)
    # What fitting on it would give: alpha blown up by 1 / rounding noise.
    naive_alpha, _ = vim_reference(kernel, bias, features, features, principal_dim or 8)
    assert naive_alpha > 1e4
    scorer = ViM(principal_dim=principal_dim)
    expected = rf"dimension 16.*rank 5 <= `principal_dim`={principal_dim or 8}"
    with pytest.raises(ValueError, match=expected):
        scorer.fit(model, x)
    # Refused before anything was fitted: it cannot be used to score.
    with pytest.raises(ValueError, match="must be fitted"):
        scorer.score(model, x)


def test_vim_below_the_feature_rank_fits_the_reference_alpha():
    model, x = linear_bottleneck_model()
    kernel, bias = model.layers[-1].get_weights()
    features = predict(layer_output(model, model.get_layer("features")), x)
    expected_alpha, expected = vim_reference(kernel, bias, features, features, 4)
    scorer = ViM(principal_dim=4).fit(model, x)
    # One real residual direction: alpha is of the order of the logits.
    assert 1e-2 < scorer.alpha < 1e2
    np.testing.assert_allclose(scorer.alpha, expected_alpha, rtol=1e-4)
    np.testing.assert_allclose(scorer.score(model, x), expected, rtol=1e-4, atol=1e-3)


def test_vim_on_the_trained_mlp_refuses_only_the_dead_units_residual(model, data):
    x_train = data[0]
    features = sequential_features(model, None, x_train)
    dead = int(np.sum(features.max(axis=0) == 0))
    # Two penultimate ReLU units never fire: centred at the origin u, the
    # features have rank 15 of 16 (the dead coordinates only hold -u).
    assert dead == 2, dead
    with pytest.raises(ValueError, match=r"rank 15 <= `principal_dim`=15"):
        ViM(principal_dim=15).fit(model, x_train)
    # One step down, the residual holds a real (small) direction.
    kernel, bias = model.layers[-1].get_weights()
    expected_alpha, _ = vim_reference(kernel, bias, features, features, 14)
    scorer = ViM(principal_dim=14).fit(model, x_train)
    np.testing.assert_allclose(scorer.alpha, expected_alpha, rtol=1e-4)


# ------------------------------------------------------------------ ReAct


def test_react_percentile_100_equals_energy_on_training_data(model, data):
    x_train = data[0]
    scorer = ReAct(percentile=100.0).fit(model, x_train)
    train_features = sequential_features(model, None, x_train)
    np.testing.assert_allclose(scorer.threshold, train_features.max(), rtol=1e-6)
    np.testing.assert_allclose(
        scorer.score(model, x_train), Energy().score(model, x_train), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize("percentile", [85.0, 95.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_react_clips_at_training_percentile(percentile, temperature, model, data):
    x_train, _, x_test, _ = data
    kernel, bias = (np.asarray(w, np.float64) for w in model.layers[-1].get_weights())
    train_features = sequential_features(model, None, x_train)
    test_features = sequential_features(model, None, x_test)
    threshold = np.percentile(train_features, percentile)
    assert threshold > 0 and (test_features > threshold).mean() > 0.01  # clipping bites
    scorer = ReAct(percentile=percentile, temperature=temperature).fit(model, x_train)
    np.testing.assert_allclose(scorer.threshold, threshold, rtol=1e-6)
    clipped_logits = np.minimum(test_features, threshold) @ kernel + bias
    expected = -temperature * np_logsumexp(clipped_logits / temperature)
    scores = scorer.score(model, x_test)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(scores, Energy(temperature=temperature).score(model, x_test), atol=1e-3)


def test_react_on_a_hidden_layer_recomputes_the_following_layers(model, data, reference):
    x_train, _, x_test, _ = data
    scorer = ReAct(percentile=90.0, feature_layer="hidden").fit(model, x_train)
    threshold = np.percentile(reference["train"][0], 90.0)
    np.testing.assert_allclose(scorer.threshold, threshold, rtol=1e-4)
    w2, b2, w3, b3 = (np.asarray(w, np.float64) for w in model.get_weights()[2:])
    clipped = np.minimum(reference["test"][0], scorer.threshold)
    z = np.maximum(clipped @ w2 + b2, 0.0) @ w3 + b3
    np.testing.assert_allclose(scorer.score(model, x_test), -np_logsumexp(z), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kind", ["softmax_dense", "functional"])
def test_react_on_other_forms_equals_linear(kind, variants, data):
    x_train, _, x_test, _ = data
    for feature_layer in (None, "hidden"):
        linear, other = variants["linear"], variants[kind]
        expected = ReAct(feature_layer=feature_layer).fit(linear, x_train).score(linear, x_test)
        scores = ReAct(feature_layer=feature_layer).fit(other, x_train).score(other, x_test)
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("feature_layer", [-1, "classifier"])
def test_react_on_the_last_layer_raises_a_clear_error(feature_layer, model, data):
    x_train = data[0]
    with pytest.raises(ValueError, match="feature_layer"):
        ReAct(feature_layer=feature_layer).fit(model, x_train).score(model, x_train[:10])


# ------------------------------------------------------------------- ODIN

def test_odin_with_perturbation_runs(model, data):
    # Regression: on JAX the compiled input gradient calls stateless_call on
    # the extractor's logits model, which must be built and accept `training`.
    scores = ODIN(temperature=1000.0, epsilon=0.0014).score(model, data[2][:20])
    assert scores.shape == (20,) and np.all(np.isfinite(scores))


@pytest.mark.parametrize("temperature", [1.0, 2.0, 1000.0])
@pytest.mark.parametrize("kind", ["linear", "softmax_dense", "softmax_layer", "subclassed"])
def test_odin_without_perturbation_is_tempered_msp(temperature, kind, variants, data, reference):
    x_test = data[2]
    scores = ODIN(temperature=temperature, epsilon=0.0).score(variants[kind], x_test)
    expected = -np_softmax(reference["test"][2] / temperature).max(axis=1)
    atol = 1e-5 if temperature < 1000 else 1e-8
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.02), (2.0, 0.05), (1000.0, 0.01)])
@pytest.mark.parametrize("kind", ["linear", "softmax_dense", "softmax_layer"])
def test_odin_perturbation_matches_hand_computation(
    temperature, epsilon, kind, variants, model, data
):
    x = data[2][:200]
    # The gradient of -log S_yhat(x; T) is taken through the linear model with
    # the backend's own autodiff; the other forms must perturb identically.
    gradient = odin_reference_gradient(model, x, temperature)
    assert gradient.shape == x.shape and np.abs(gradient).max() > 0
    perturbed = x - epsilon * np.sign(gradient)
    expected = -np_softmax(predict(model, perturbed) / temperature).max(axis=1)
    scores = ODIN(temperature=temperature, epsilon=epsilon, batch_size=64).score(variants[kind], x)
    atol = 1e-6 if temperature < 1000 else 1e-9
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=atol)
    unperturbed = ODIN(temperature=temperature, epsilon=0.0).score(variants[kind], x)
    assert not np.allclose(scores, unperturbed, rtol=0, atol=atol * 10)


def test_odin_with_softmax_in_call_perturbs_like_the_logit_model(variants, data):
    x = data[2][:200]
    expected = ODIN(temperature=1.0, epsilon=0.02).score(variants["linear"], x)
    scores = ODIN(temperature=1.0, epsilon=0.02).score(variants["subclassed"], x)
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_odin_perturbation_raises_the_msp(model, data):
    x = data[2]
    msp_before = MaxSoftmax().score(model, x)
    msp_after = ODIN(temperature=1.0, epsilon=0.01).score(model, x)
    assert msp_after.mean() < msp_before.mean() - 1e-4  # scores are -MSP
    assert (msp_after <= msp_before + 1e-7).mean() > 0.9


def test_odin_batch_size_does_not_change_scores(model, data):
    x = data[2][:150]
    a = ODIN(temperature=10.0, epsilon=0.01, batch_size=150).score(model, x)
    b = ODIN(temperature=10.0, epsilon=0.01, batch_size=16).score(model, x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------- mutual information


def test_mutual_information_of_deterministic_model_is_zero_with_warning(model, data):
    with pytest.warns(UserWarning, match="epistemic uncertainty is zero"):
        scores = MutualInformation(num_samples=4).score(model, data[2][:50])
    assert scores.shape == (50,)
    np.testing.assert_allclose(scores, 0.0, atol=1e-6)


def test_mutual_information_of_mc_dropout_model_is_positive(variants, data):
    scores = MutualInformation(num_samples=16).score(variants["mc_dropout"], data[2][:50])
    assert scores.shape == (50,)
    assert np.all(np.isfinite(scores))
    assert np.all(scores > 0)
    assert np.all(scores <= np.log(NUM_CLASSES) + 1e-6)
    assert scores.mean() > 1e-3


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "make", [Mahalanobis, KNN, ViM, ReAct], ids=["mahalanobis", "knn", "vim", "react"]
)
def test_score_before_fit_raises(make, model, data):
    with pytest.raises(ValueError, match="fit"):
        make().score(model, data[2])


def test_mahalanobis_fit_needs_labels(model, data):
    with pytest.raises(ValueError, match="labels"):
        Mahalanobis().fit(model, data[0])


def test_mahalanobis_fit_label_count_mismatch(model, data):
    x_train, y_train, _, _ = data
    with pytest.raises(ValueError, match="labels"):
        Mahalanobis().fit(model, x_train, y_train[:-1])


def test_mahalanobis_needs_two_classes(model, data):
    x_train, _, _, _ = data
    with pytest.raises(ValueError, match="at least 2"):
        Mahalanobis().fit(model, x_train[:20], np.zeros(20, "int32"))


@pytest.mark.parametrize("make", [Mahalanobis, KNN, ReAct], ids=["mahalanobis", "knn", "react"])
def test_unknown_feature_layer_name_is_named(make, model, data):
    x_train, y_train, _, _ = data
    with pytest.raises(ValueError, match="'no_such_layer'"):
        make(feature_layer="no_such_layer").fit(model, x_train, y_train)


@pytest.mark.parametrize("index", [3, -4, 100])
def test_out_of_range_feature_layer_index(index, model, data):
    x_train, y_train, _, _ = data
    with pytest.raises(ValueError, match=f"index {index} is out of range"):
        Mahalanobis(feature_layer=index).fit(model, x_train, y_train)


@pytest.mark.parametrize("feature_layer", [1.5, True, ["hidden"]])
def test_feature_layer_of_wrong_type(feature_layer):
    with pytest.raises(ValueError, match="feature_layer"):
        KNN(feature_layer=feature_layer)


@pytest.fixture(scope="module")
def bad_output_models():
    keras.utils.set_random_seed(0)
    one_unit = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)],
        name="one_unit",
    )
    three_d = keras.Sequential(
        [
            keras.Input((4, 16)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ],
        name="three_d",
    )
    return {"one_unit": (one_unit, (64,)), "three_d": (three_d, (4, 16))}


@pytest.mark.parametrize("which", ["one_unit", "three_d"])
@pytest.mark.parametrize(
    "make",
    [MaxSoftmax, Energy, lambda: ODIN(epsilon=0.001), lambda: KNN(k=1), Mahalanobis],
    ids=["msp", "energy", "odin", "knn", "mahalanobis"],
)
def test_model_output_must_be_batch_by_classes(which, make, bad_output_models):
    bad_model, input_shape = bad_output_models[which]
    x = np.random.default_rng(0).uniform(size=(12,) + input_shape).astype("float32")
    y = np.arange(12) % 2
    scorer = make()
    # A single uncompiled linear unit: a logit or a regression value? Refused.
    with pytest.raises(ValueError, match=r"\(batch, num_classes\)|outputs one column"):
        if isinstance(scorer, FeatureScorer):
            scorer.fit(bad_model, x, y)
        else:
            scorer.score(bad_model, x)


@pytest.mark.parametrize(
    "build,argument",
    [
        (lambda: Energy(temperature=-1.0), "temperature"),
        (lambda: Energy(temperature=0.0), "temperature"),
        (lambda: ODIN(temperature=-5.0), "temperature"),
        (lambda: ODIN(epsilon=-0.01), "epsilon"),
        (lambda: ODIN(batch_size=0), "batch_size"),
        (lambda: ReAct(percentile=100.5), "percentile"),
        (lambda: ReAct(percentile=0.0), "percentile"),
        (lambda: ReAct(temperature=-1.0), "temperature"),
        (lambda: KNN(k=0), "`k`"),
        (lambda: KNN(k=2.5), "`k`"),
        (lambda: ViM(principal_dim=0), "principal_dim"),
        (lambda: MutualInformation(num_samples=0), "num_samples"),
    ],
)
def test_invalid_arguments_are_named(build, argument):
    with pytest.raises(ValueError, match=argument):
        build()


def test_odin_empty_input_raises(model):
    with pytest.raises(ValueError, match="empty"):
        ODIN().score(model, np.zeros((0, 64), "float32"))


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(SCORER_CLASSES))
def test_registry_gives_the_right_class(name):
    scorer = registry.get("ood_scorer", name)
    assert type(scorer) is SCORER_CLASSES[name]
    assert isinstance(scorer, OODScorer)
    assert scorer.name == name
    assert registry.get("ood_scorer", name.upper()).__class__ is SCORER_CLASSES[name]


def test_registry_config_dict_keeps_arguments():
    config = {"class_name": "knn", "config": {"k": 7, "feature_layer": "hidden"}}
    scorer = registry.get("ood_scorer", config)
    assert isinstance(scorer, KNN) and scorer.k == 7 and scorer.feature_layer == "hidden"


@pytest.mark.parametrize("make", CUSTOM_SCORERS, ids=[name for name in SCORER_CLASSES])
def test_config_round_trip(make):
    scorer = make()
    config = scorer.get_config()
    clone = type(scorer).from_config(config)
    assert type(clone) is type(scorer)
    assert clone.get_config() == config
    # And through the registry's config dict.
    via_registry = registry.get(
        "ood_scorer", {"class_name": type(scorer).registered_name, "config": config}
    )
    assert type(via_registry) is type(scorer) and via_registry.get_config() == config


@pytest.mark.parametrize("make", CUSTOM_SCORERS, ids=[name for name in SCORER_CLASSES])
def test_keras_serialization_round_trip(make):
    scorer = make()
    serialized = keras.saving.serialize_keras_object(scorer)
    assert "keras_reliability" in serialized["registered_name"]
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(scorer)
    assert clone.get_config() == scorer.get_config()


def test_round_tripped_scorer_scores_the_same(model, data):
    x_train, y_train, x_test, _ = data
    original = ReAct(percentile=80.0, temperature=2.0, feature_layer="hidden")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(original))
    np.testing.assert_allclose(
        clone.fit(model, x_train).score(model, x_test),
        original.fit(model, x_train).score(model, x_test),
        rtol=1e-12,
    )


@pytest.mark.parametrize("name", sorted(SCORER_CLASSES))
def test_every_scorer_fit_returns_self_and_scores_each_example(name, variants, data):
    x_train, y_train, x_test, _ = data
    scorer = registry.get("ood_scorer", name)
    model = variants["mc_dropout" if name == "mutual_information" else "linear"]
    if name == "mutual_information":
        scorer = MutualInformation(num_samples=4)
    assert scorer.fit(model, x_train, y_train) is scorer
    scores = scorer.score(model, x_test[:40])
    assert isinstance(scores, np.ndarray)
    assert scores.shape == (40,)
    assert np.issubdtype(scores.dtype, np.floating)
    assert np.all(np.isfinite(scores))
