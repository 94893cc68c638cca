"""Fuzz of the OOD metrics, the OOD scorers and `synthetic_ood_sets`.

Metrics: scores drawn with many ties (from a coarse grid) or freely, one
score up to 25, as lists, columns, ints, bools or backend tensors; the
reference counts pairs and thresholds by brute force in float64 (the
metrics sort and merge counts), and `ood_roc_curve` is compared with
scikit-learn's `roc_curve`. The metrics are exact on counts, so values
agree to 1e-12.

Scorers run on one fixed model whose logits are its inputs (an identity
Dense layer), so every score has a closed form in numpy: MSP, MaxLogit,
Energy, Entropy, KNN, Mahalanobis, ReAct and ODIN. The model computes in
float32: scores agree to 1e-5 (relative 1e-5 for the quadratic Mahalanobis
distance).
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_reliability import metrics, ood
from keras_reliability.ood.synthetic import SYNTHETIC_KINDS, synthetic_ood_sets

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


# OOD metrics --------------------------------------------------------------------

SCORE_FUNCTIONS = (
    "ood_auroc",
    "ood_aupr_in",
    "ood_aupr_out",
    "fpr_at_tpr",
    "detection_error",
    "ood_roc_curve",
    "evaluate_ood",
)

score_values = st.one_of(
    st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0, 3.0]),  # ties
    st.floats(-1e6, 1e6, allow_subnormal=False),
)


def score_arrays():
    return hnp.arrays(np.float64, st.integers(1, 25), elements=score_values)


def as_form(scores, form):
    return {
        "float64": lambda: scores,
        "list": lambda: scores.tolist(),
        "column": lambda: scores[:, None],
        "float32": lambda: scores.astype(np.float32),
        "tensor": lambda: keras.ops.convert_to_tensor(scores.astype(np.float32)),
    }[form]()


def reference_counts(scores_in, scores_out):
    thresholds = np.unique(np.concatenate([scores_in, scores_out]))
    in_le = np.array([(scores_in <= t).sum() for t in thresholds])
    out_le = np.array([(scores_out <= t).sum() for t in thresholds])
    in_ge = np.array([(scores_in >= t).sum() for t in thresholds])
    out_ge = np.array([(scores_out >= t).sum() for t in thresholds])
    return thresholds, in_le, out_le, in_ge, out_ge


def reference_auroc(scores_in, scores_out):
    greater = (scores_out[None, :] > scores_in[:, None]).sum()
    ties = (scores_out[None, :] == scores_in[:, None]).sum()
    return (greater + 0.5 * ties) / (scores_in.size * scores_out.size)


def reference_average_precision(positive, negative):
    """Average precision of flagging `positive` by a score >= t (no interpolation)."""
    thresholds = np.unique(np.concatenate([positive, negative]))[::-1]
    total, previous_recall = 0.0, 0.0
    for t in thresholds:
        true_positive = (positive >= t).sum()
        false_positive = (negative >= t).sum()
        recall = true_positive / positive.size
        if recall > previous_recall:
            total += (
                (recall - previous_recall)
                * true_positive
                / (true_positive + false_positive)
            )
        previous_recall = recall
    return total


def reference_fpr(scores_in, scores_out, tpr):
    thresholds, in_le, out_le, _, _ = reference_counts(scores_in, scores_out)
    for t, accepted_in, accepted_out in zip(thresholds, in_le, out_le):
        if accepted_in / scores_in.size >= tpr:
            return accepted_out / scores_out.size
    raise AssertionError("unreachable: the largest score accepts every ID example")


def reference_detection_error(scores_in, scores_out):
    _, in_le, out_le, _, _ = reference_counts(scores_in, scores_out)
    errors = 0.5 * (1 - in_le / scores_in.size) + 0.5 * out_le / scores_out.size
    return min(0.5, errors.min())


def reference_metrics(scores_in, scores_out, tpr):
    if np.unique(np.concatenate([scores_in, scores_out])).size == 1:
        return {
            key: np.nan
            for key in ("auroc", "aupr_in", "aupr_out", "fpr", "detection_error")
        }
    return {
        "auroc": reference_auroc(scores_in, scores_out),
        "aupr_in": reference_average_precision(-scores_in, -scores_out),
        "aupr_out": reference_average_precision(scores_out, scores_in),
        "fpr": reference_fpr(scores_in, scores_out, tpr),
        "detection_error": reference_detection_error(scores_in, scores_out),
    }


@budget(40)
@given(
    scores_in=score_arrays(),
    scores_out=score_arrays(),
    tpr=st.one_of(st.sampled_from([0.95, 1.0, 0.5]), st.floats(1e-6, 1.0)),
    form=st.sampled_from(["float64", "list", "column", "float32", "tensor"]),
)
def test_ood_metrics_equal_reference(fuzz, scores_in, scores_out, tpr, form):
    if form in ("float32", "tensor"):
        scores_in = scores_in.astype(np.float32).astype(np.float64)
        scores_out = scores_out.astype(np.float32).astype(np.float64)
    expected = reference_metrics(scores_in, scores_out, tpr)
    given_in, given_out = as_form(scores_in, form), as_form(scores_out, form)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # constant scores: NaN, warned
        actual = {
            "auroc": metrics.ood_auroc(given_in, given_out),
            "aupr_in": metrics.ood_aupr_in(given_in, given_out),
            "aupr_out": metrics.ood_aupr_out(given_in, given_out),
            "fpr": metrics.fpr_at_tpr(given_in, given_out, tpr=tpr),
            "detection_error": metrics.detection_error(given_in, given_out),
        }
        combined = metrics.evaluate_ood(given_in, given_out, tpr=tpr)
    for key, name in [
        ("auroc", "ood_auroc"),
        ("aupr_in", "ood_aupr_in"),
        ("aupr_out", "ood_aupr_out"),
        ("fpr", "fpr_at_tpr"),
        ("detection_error", "detection_error"),
    ]:
        fuzz.reference(name, actual[key], expected[key], atol=1e-12)
    fpr_key = f"fpr{round(tpr * 100)}"
    fuzz.reference(
        "evaluate_ood",
        combined,
        {
            "auroc": expected["auroc"],
            "aupr_in": expected["aupr_in"],
            "aupr_out": expected["aupr_out"],
            fpr_key: expected["fpr"],
            "detection_error": expected["detection_error"],
        },
        atol=1e-12,
    )


@budget(30)
@given(
    scores_in=score_arrays(),
    scores_out=score_arrays(),
    drop_intermediate=st.booleans(),
)
def test_ood_roc_curve_equals_scikit_learn(
    fuzz, scores_in, scores_out, drop_intermediate
):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    assume(np.unique(np.concatenate([scores_in, scores_out])).size > 1)
    labels = np.r_[np.zeros(scores_in.size), np.ones(scores_out.size)]
    expected = sklearn_metrics.roc_curve(
        labels, np.r_[scores_in, scores_out], drop_intermediate=drop_intermediate
    )
    actual = metrics.ood_roc_curve(
        scores_in, scores_out, drop_intermediate=drop_intermediate
    )
    fuzz.reference(
        "ood_roc_curve",
        dict(zip(("fpr", "tpr", "thresholds"), actual)),
        dict(zip(("fpr", "tpr", "thresholds"), expected)),
        atol=1e-12,
    )


def bad_scores(valid):
    n = valid.size
    first = np.zeros(n, bool)
    first[0] = True
    return {
        "None": None,
        "str": "abc",
        "dict": {"s": valid},
        "object": object(),
        "str array": np.full(n, "a"),
        "object array with None": np.where(first, None, valid.astype(object)),
        "complex": valid.astype(np.complex128) + 1j,
        "two columns": np.stack([valid, valid], axis=1),
        "scalar": np.float64(1.0),
        "rank 3": valid[:, None, None],
        "empty": np.zeros(0),
        "NaN": np.where(first, np.nan, valid),
        "inf": np.where(first, np.inf, valid),
        "ragged": [[1.0], [1.0, 2.0]],
    }


@pytest.mark.parametrize("name", SCORE_FUNCTIONS)
@budget(2)
@given(
    scores_in=score_arrays(),
    scores_out=score_arrays(),
    argument=st.sampled_from(["scores_in", "scores_out"]),
)
def test_invalid_scores_raise_clear_error(fuzz, name, scores_in, scores_out, argument):
    valid = {"scores_in": scores_in, "scores_out": scores_out}
    fuzz.check_every(
        name,
        argument,
        bad_scores(valid[argument]),
        lambda bad: getattr(metrics, name)(**(valid | {argument: bad})),
    )


@pytest.mark.parametrize("name", ["fpr_at_tpr", "evaluate_ood"])
@budget(2)
@given(scores_in=score_arrays(), scores_out=score_arrays())
def test_invalid_tpr_raises_clear_error(fuzz, name, scores_in, scores_out):
    fuzz.check_every(
        name,
        "tpr",
        {
            "0": 0,
            "negative": -0.1,
            "above 1": 1.5,
            "str": "0.95",
            "None": None,
            "NaN": np.nan,
            "bool": True,
            "list": [0.9],
        },
        lambda bad: getattr(metrics, name)(scores_in, scores_out, tpr=bad),
    )


@budget(2)
@given(scores_in=score_arrays(), scores_out=score_arrays())
def test_invalid_drop_intermediate_raises_clear_error(fuzz, scores_in, scores_out):
    fuzz.check_every(
        "ood_roc_curve",
        "drop_intermediate",
        {"str": "yes", "None": None, "int": 1},
        lambda bad: metrics.ood_roc_curve(scores_in, scores_out, drop_intermediate=bad),
    )


# Scorers on a model whose logits are its inputs ---------------------------------

NUM_CLASSES = 3
NUM_EXAMPLES = (1, 4, 9)  # few shapes: each compiles once per backend


@pytest.fixture(scope="module")
def identity_model():
    """Logits = inputs: an identity Dense layer (the scorers' features = inputs)."""
    inputs = keras.Input((NUM_CLASSES,))
    head = keras.layers.Dense(
        NUM_CLASSES,
        kernel_initializer="identity",
        bias_initializer="zeros",
        name="head",
    )
    return keras.Model(inputs, head(inputs))


def logit_arrays(num_examples=None, low=-8.0, high=8.0):
    shape = (
        st.sampled_from(NUM_EXAMPLES) if num_examples is None else st.just(num_examples)
    )
    return shape.flatmap(
        lambda n: hnp.arrays(
            np.float32, (n, NUM_CLASSES), elements=st.floats(low, high, width=32)
        )
    )


def softmax(z):
    exp = np.exp(z - z.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def logsumexp(z):
    top = z.max(axis=1)
    return top + np.log(np.exp(z - top[:, None]).sum(axis=1))


LOGIT_SCORERS = {
    "MaxSoftmax": (lambda: ood.MaxSoftmax(), lambda z: -softmax(z).max(axis=1)),
    "MaxLogit": (lambda: ood.MaxLogit(), lambda z: -z.max(axis=1)),
    "Energy": (
        lambda: ood.Energy(temperature=2.0),
        lambda z: -2.0 * logsumexp(z / 2.0),
    ),
    "Entropy": (
        lambda: ood.Entropy(),
        lambda z: -(softmax(z) * np.log(np.maximum(softmax(z), 1e-300))).sum(axis=1),
    ),
}


@pytest.mark.parametrize("name", sorted(LOGIT_SCORERS))
@budget(8)
@given(z=logit_arrays())
def test_logit_scorers_equal_reference(fuzz, identity_model, name, z):
    make, reference = LOGIT_SCORERS[name]
    actual = make().score(identity_model, z)
    fuzz.reference(f"{name}.score", actual, reference(z.astype(np.float64)), atol=1e-5)


@budget(8)
@given(train=logit_arrays(9), test=logit_arrays(), k=st.integers(1, 9))
def test_knn_equals_reference(fuzz, identity_model, train, test, k):
    def normalise(f):
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    bank, queries = (
        normalise(train.astype(np.float64)),
        normalise(test.astype(np.float64)),
    )
    distances = np.sqrt(np.maximum(2 - 2 * queries @ bank.T, 0.0))
    expected = np.sort(distances, axis=1)[:, k - 1]
    actual = ood.KNN(k=k).fit(identity_model, train).score(identity_model, test)
    fuzz.reference("KNN.score", actual, expected, atol=1e-3)


@budget(8)
@given(train=logit_arrays(9), test=logit_arrays(), data=st.data())
def test_mahalanobis_equals_reference(fuzz, identity_model, train, test, data):
    labels = data.draw(
        hnp.arrays(np.int64, 9, elements=st.integers(0, NUM_CLASSES - 1))
    )
    assume(np.unique(labels).size >= 2)
    features = train.astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in classes])
    centred = features - means[np.searchsorted(classes, labels)]
    covariance = centred.T @ centred / len(features)
    # A near-singular covariance amplifies float32 rounding without bound.
    assume(np.linalg.cond(covariance) < 1e4)
    precision = np.linalg.pinv(covariance, hermitian=True)
    diffs = test.astype(np.float64)[:, None, :] - means[None]
    expected = np.einsum("ncd,de,nce->nc", diffs, precision, diffs).min(axis=1)
    actual = (
        ood.Mahalanobis().fit(identity_model, train, labels).score(identity_model, test)
    )
    fuzz.reference("Mahalanobis.score", actual, expected, atol=1e-4, rtol=1e-4)


@budget(8)
@given(
    train=logit_arrays(9),
    test=logit_arrays(),
    percentile=st.floats(1.0, 100.0),
)
def test_react_equals_reference(fuzz, identity_model, train, test, percentile):
    threshold = np.percentile(train.astype(np.float64), percentile)
    clipped = np.minimum(test.astype(np.float64), threshold)
    expected = -logsumexp(clipped)
    scorer = ood.ReAct(percentile=percentile).fit(identity_model, train)
    fuzz.reference(
        "ReAct.score", scorer.score(identity_model, test), expected, atol=1e-5
    )


@budget(8)
@given(
    z=logit_arrays(low=-5.0, high=5.0),
    temperature=st.floats(1.0, 1000.0),
    epsilon=st.sampled_from([0.0, 0.01, 0.3]),
)
def test_odin_equals_reference(fuzz, identity_model, z, temperature, epsilon):
    z64 = z.astype(np.float64)
    top = np.sort(z64, axis=1)
    assume(np.all(top[:, -1] - top[:, -2] > 1e-3))  # a unique predicted class
    # -log S_yhat(x; T) falls along +e_yhat and -e_other: its gradient wrt x
    # is (softmax(x / T) - onehot) / T, whose sign is known.
    onehot = np.eye(NUM_CLASSES)[z64.argmax(axis=1)]
    moved = z64 + epsilon * (2 * onehot - 1)
    expected = -softmax(moved / temperature).max(axis=1)
    actual = ood.ODIN(temperature=temperature, epsilon=epsilon).score(identity_model, z)
    fuzz.reference("ODIN.score", actual, expected, atol=1e-5)


# Invalid scorer inputs -------------------------------------------------------------

SCORERS = {
    "MaxSoftmax": lambda: ood.MaxSoftmax(),
    "Energy": lambda: ood.Energy(),
    "KNN": lambda: ood.KNN(k=2),
    "Mahalanobis": lambda: ood.Mahalanobis(),
    "ReAct": lambda: ood.ReAct(),
    "ODIN": lambda: ood.ODIN(epsilon=0.01),
}
TRAIN_X = np.random.default_rng(0).normal(size=(9, NUM_CLASSES)).astype(np.float32)
TRAIN_Y = np.arange(9) % NUM_CLASSES


def fitted(name, model):
    scorer = SCORERS[name]()
    return scorer.fit(model, TRAIN_X, TRAIN_Y) if scorer.requires_fit else scorer


def early_bad_inputs(n=4):
    """Bad `x` refused before any forward pass by the scorers' own checks."""
    return {
        "None": None,
        "str": "abc",
        "object": object(),
        "str array": np.full((n, NUM_CLASSES), "a"),
        "complex": np.ones((n, NUM_CLASSES), np.complex64),
    }


def shape_bad_inputs(n=4):
    """Bad `x` that reaches the model unless checked first (rank, width, NaN, empty)."""
    x = np.ones((n, NUM_CLASSES), np.float32)
    return {
        "empty": x[:0],
        "rank 1": x[0],
        "rank 3": x[None],
        "wrong width": x[:, :2],
        "NaN": np.where(np.eye(n, NUM_CLASSES) > 0, np.nan, x),
        "dict": {"x": x},
        "list of two": [x, x],
        "ragged": [[1.0, 2.0, 3.0], [1.0]],
    }


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_scorer_invalid_model_raises_clear_error(fuzz, identity_model, name):
    scorer = fitted(name, identity_model)
    fuzz.check_every(
        f"{name}.score",
        "model",
        fuzz.not_models(),
        lambda bad: scorer.score(bad, TRAIN_X),
    )
    if scorer.requires_fit:
        fuzz.check_every(
            f"{name}.fit",
            "model",
            fuzz.not_models(),
            lambda bad: SCORERS[name]().fit(bad, TRAIN_X, TRAIN_Y),
        )


def test_odin_invalid_inputs_raise_clear_error(fuzz):
    # A model of its own: on JAX a forward pass on a wrongly shaped input
    # can leave a model unusable (Keras), so ODIN must refuse it first.
    inputs = keras.Input((NUM_CLASSES,))
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(inputs))
    scorer = ood.ODIN(epsilon=0.01)
    fuzz.check_every(
        "ODIN.score",
        "x",
        early_bad_inputs() | shape_bad_inputs(),
        lambda bad: scorer.score(model, bad),
    )
    fuzz.invariant(
        "ODIN.score",
        np.all(np.isfinite(scorer.score(model, TRAIN_X))),
        "the model no longer works after the refused inputs",
    )


@pytest.mark.parametrize("name", ["MaxSoftmax", "KNN"])
def test_scorer_unchecked_inputs_raise_clear_error(fuzz, name):
    inputs = keras.Input((NUM_CLASSES,))
    model = keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(inputs))
    scorer = fitted(name, model)
    fuzz.check_every(
        f"{name}.score",
        "x",
        early_bad_inputs() | shape_bad_inputs(),
        lambda bad: scorer.score(model, bad),
    )


def test_scorer_complex_labels_raise_clear_error(fuzz, identity_model):
    fuzz.clear_error(
        "Mahalanobis.fit",
        "y",
        lambda: ood.Mahalanobis().fit(identity_model, TRAIN_X, TRAIN_Y.astype(complex)),
    )


@pytest.mark.parametrize("name", ["KNN", "Mahalanobis", "ReAct"])
def test_scorer_invalid_labels_raise_clear_error(fuzz, identity_model, name):
    n = len(TRAIN_X)
    first = np.arange(n) == 0
    variants = {
        "negative": np.where(first, -1, TRAIN_Y),
        "= num_classes": np.where(first, NUM_CLASSES, TRAIN_Y),
        "non-integer": np.where(first, 0.5, TRAIN_Y),
        "str": np.full(n, "a"),
        "soft": np.full((n, NUM_CLASSES), 1 / NUM_CLASSES),
        "one-hot too wide": np.eye(NUM_CLASSES + 1)[TRAIN_Y],
        "too short": TRAIN_Y[:3],
    }
    if name == "Mahalanobis":
        variants["None"] = None
    fuzz.check_every(
        f"{name}.fit",
        "y",
        variants,
        lambda bad: SCORERS[name]().fit(identity_model, TRAIN_X, bad),
    )


def test_scorer_constructor_arguments_raise_clear_error(fuzz):
    numbers = {
        "0": 0,
        "negative": -1.0,
        "str": "1",
        "None": None,
        "NaN": np.nan,
        "inf": np.inf,
        "bool": True,
    }
    cases = [
        ("Energy", "temperature", lambda v: ood.Energy(temperature=v), numbers),
        ("ODIN", "temperature", lambda v: ood.ODIN(temperature=v), numbers),
        (
            "ODIN",
            "epsilon",
            lambda v: ood.ODIN(epsilon=v),
            {k: v for k, v in numbers.items() if k != "0"},
        ),
        (
            "ODIN",
            "batch_size",
            lambda v: ood.ODIN(batch_size=v),
            numbers | {"float": 2.5},
        ),
        ("KNN", "k", lambda v: ood.KNN(k=v), numbers | {"float": 2.5}),
        (
            "ReAct",
            "percentile",
            lambda v: ood.ReAct(percentile=v),
            numbers | {"above 100": 101},
        ),
        ("ReAct", "temperature", lambda v: ood.ReAct(temperature=v), numbers),
        (
            "KNN",
            "feature_layer",
            lambda v: ood.KNN(feature_layer=v),
            {"float": 1.5, "list": ["a"], "bool": True},
        ),
        (
            "MutualInformation",
            "num_samples",
            lambda v: ood.MutualInformation(num_samples=v),
            numbers | {"float": 2.5},
        ),
    ]
    for owner, argument, make, variants in cases:
        fuzz.check_every(owner, argument, variants, make)


def test_odin_invalid_batch_size_raises_clear_error(fuzz, identity_model):
    fuzz.check_every(
        "ODIN.score",
        "batch_size",
        {"0": 0, "negative": -1, "str": "a", "float": 2.5},
        lambda bad: ood.ODIN().score(identity_model, TRAIN_X, batch_size=bad),
    )


# synthetic_ood_sets -------------------------------------------------------------


@budget(15)
@given(
    x=st.sampled_from([(6, 5), (4, 6, 6), (3, 5, 5, 2)]).flatmap(
        lambda shape: hnp.arrays(
            np.float32, shape, elements=st.floats(0.0, 1.0, width=32)
        )
    ),
    severity=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_synthetic_sets_equal_reference(fuzz, x, severity, seed):
    assume(x.max() > x.min())
    from keras_reliability.ood.synthetic import BLUR_SIGMAS, CONTRAST_FACTORS

    sets = synthetic_ood_sets(x, severity=severity, seed=seed, value_range=(0, 1))
    x64 = x.astype(np.float64)
    axes = tuple(range(1, x.ndim))
    mean = x64.mean(axis=axes, keepdims=True)
    contrast = np.clip((x64 - mean) * CONTRAST_FACTORS[severity - 1] + mean, 0, 1)
    fuzz.reference("synthetic_ood_sets", sets["contrast"], contrast, atol=1e-6)
    if x.ndim in (3, 4):
        ndimage = pytest.importorskip("scipy.ndimage")
        sigma = [0, BLUR_SIGMAS[severity - 1], BLUR_SIGMAS[severity - 1]] + [0] * (
            x.ndim - 3
        )
        blurred = ndimage.gaussian_filter(x64, sigma, mode="reflect", truncate=4.0)
        fuzz.reference(
            "synthetic_ood_sets", sets["blur"], np.clip(blurred, 0, 1), atol=1e-5
        )
    shapes_ok = all(s.shape == x.shape and s.dtype == np.float32 for s in sets.values())
    in_range = all(s.min() >= 0 and s.max() <= 1 for s in sets.values())
    again = synthetic_ood_sets(x, severity=severity, seed=seed, value_range=(0, 1))
    same = all(np.array_equal(again[k], sets[k]) for k in sets)
    fuzz.invariant(
        "synthetic_ood_sets",
        shapes_ok and in_range and same and set(sets) <= set(SYNTHETIC_KINDS),
        "sets must keep the shape of x, lie in value_range and repeat for a seed",
    )


def test_synthetic_invalid_arguments_raise_clear_error(fuzz):
    x = np.random.default_rng(0).uniform(size=(4, 6, 6)).astype(np.float32)
    cases = {
        "x": {
            "None": None,
            "str": "abc",
            "str array": np.array([["a"]]),
            "complex": x.astype(complex),
            "bool": x > 0.5,
            "empty": x[:0],
            "rank 1": x[0, 0],
            "NaN": np.where(x > 0.9, np.nan, x),
            "ragged": [[1.0], [1.0, 2.0]],
            "dict": {"a": x},
            "object": object(),
        },
        "kinds": {
            "unknown": "nope",
            "empty": [],
            "int": 3,
            "int list": [3],
            "None in list": [None],
        },
        "severity": {
            "0": 0,
            "6": 6,
            "str": "a",
            "float": 2.5,
            "None": None,
            "bool": True,
        },
        "seed": {"str": "abc", "negative": -1, "float": 2.5},
        "value_range": {
            "str": "ab",
            "reversed": (1, 0),
            "one": (0,),
            "inf": (0, np.inf),
            "too narrow": (0.2, 0.5),
            "int": 3,
        },
    }
    for argument, variants in cases.items():
        fuzz.check_every(
            "synthetic_ood_sets",
            argument,
            variants,
            lambda bad, argument=argument: synthetic_ood_sets(
                **({"x": x} | {argument: bad})
            ),
        )
    fuzz.check_every(
        "synthetic_ood_sets",
        "kinds",
        {"blur on flat data": ["blur"]},
        lambda bad: synthetic_ood_sets(x.reshape(4, -1), kinds=bad),
    )
