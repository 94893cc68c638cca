"""Fuzz of the functional calibration metrics against float64 references.

Valid inputs: any number of examples (one included), two to five classes or a
single sigmoid column, probabilities or logits, labels as integers, a column,
one-hot rows, integer-valued floats, bools (two classes), int8, lists or
backend tensors, with or without sample weights. The result must equal the
float64 numpy reference below.

Tolerances. Probabilities are drawn in float32 and the metrics read them
exactly, so the references agree to float64 rounding (atol 1e-9). From
logits the library takes the softmax in float32 and the reference in
float64: values then agree to 1e-5, and a confidence within 1e-6 of a bin
edge (or, for equal-mass bins, of another confidence) could land in another
bin, so such draws are discarded. Bin edges are `k / num_bins` rounded to
float32, the precision of the inputs: a float32 `0.2` lies on the edge `0.2`
and belongs to the lower bin, as `(lo, hi]` says.

Invalid inputs of every kind must raise a ValueError or TypeError that names
the argument.
"""

import keras
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_reliability import metrics

PROFILE = settings.get_profile("keras_reliability_fuzz")


def budget(examples):
    """`examples` scaled by FUZZ_MAX_EXAMPLES / 30 (see conftest)."""
    return settings(
        PROFILE, max_examples=max(1, round(examples * PROFILE.max_examples / 30))
    )


EXACT = 1e-9  # probabilities in: the library reads the same float32 numbers
FROM_LOGITS = 1e-5  # float32 softmax against float64
EDGE_MARGIN = 1e-6

# Shapes come from small sets: on JAX every eager op compiles once per shape,
# so free-ranging sizes would spend the time budget compiling. One example
# is always among them.
NUM_EXAMPLES = (1, 6)
NUM_CLASSES = (2, 3, 5)
NUM_BINS = (1, 15)

BINNED = {
    "expected_calibration_error": ("l1", None),
    "max_calibration_error": ("max", None),
    "root_mean_square_calibration_error": ("l2", None),
    "adaptive_calibration_error": ("l1", "quantile"),
}
ALL_FUNCTIONS = (
    "expected_calibration_error",
    "adaptive_calibration_error",
    "max_calibration_error",
    "root_mean_square_calibration_error",
    "classwise_calibration_error",
    "brier_score",
    "brier_decomposition",
    "negative_log_likelihood",
    "smooth_ece",
    "reliability_bins",
)
WEIGHTED = tuple(f for f in ALL_FUNCTIONS if f != "brier_decomposition")
WITH_BINS = BINNED.keys() | {"classwise_calibration_error", "reliability_bins"}
WITH_BINNING = (
    "expected_calibration_error",
    "max_calibration_error",
    "root_mean_square_calibration_error",
    "reliability_bins",
)


def call(name, *args, **kwargs):
    return getattr(metrics, name)(*args, **kwargs)


# Valid inputs -----------------------------------------------------------------


class Case:
    """A valid draw: what the metric is called with and what it means."""

    def __init__(self, labels, values, from_logits, binary, weights):
        self.labels = labels  # int64 (N,), the classes
        self.values = values  # float32, (N, K), (N,) or (N, 1)
        self.from_logits = from_logits
        self.binary = binary
        self.weights = weights  # float32 (N,) or None
        self.y_true = labels
        self.y_pred = values
        self.sample_weight = weights

    @property
    def num_examples(self):
        return len(self.labels)

    @property
    def num_classes(self):
        return 2 if self.binary else self.values.shape[1]

    def probabilities(self):
        """The class probabilities in float64, `(N, K)`."""
        values = self.values.astype(np.float64)
        if self.binary:
            values = values.reshape(-1)
            if self.from_logits:
                values = 1.0 / (1.0 + np.exp(-values))
            return np.stack([1.0 - values, values], axis=1)
        if self.from_logits:
            shifted = values - values.max(axis=1, keepdims=True)
            exp = np.exp(shifted)
            return exp / exp.sum(axis=1, keepdims=True)
        return values

    def predicted(self):
        """Predicted class: the first maximum of the outputs."""
        if self.binary:
            values = self.values.astype(np.float64).reshape(-1)
            threshold = 0.0 if self.from_logits else 0.5
            return (values > threshold).astype(np.int64)
        return np.argmax(self.values, axis=1)

    def exact_probabilities(self):
        """Whether the library sees the same probabilities (no rounding)."""
        return not self.from_logits and not self.binary

    def kwargs(self):
        kwargs = {"from_logits": self.from_logits}
        if self.sample_weight is not None:
            kwargs["sample_weight"] = self.sample_weight
        return kwargs

    def weight_vector(self):
        if self.weights is None:
            return np.ones(self.num_examples)
        return self.weights.astype(np.float64)

    def tolerance(self):
        return EXACT if self.exact_probabilities() else FROM_LOGITS


def _to_backend(array):
    return keras.ops.convert_to_tensor(array)


@st.composite
def valid_cases(draw, weighted=True, binary=True):
    num_examples = draw(st.sampled_from(NUM_EXAMPLES))
    is_binary = binary and draw(st.integers(0, 4)) == 0
    num_classes = 2 if is_binary else draw(st.sampled_from(NUM_CLASSES))
    from_logits = draw(st.booleans())
    if is_binary:
        shape = draw(st.sampled_from([(num_examples,), (num_examples, 1)]))
        bound = (-12.0, 12.0) if from_logits else (0.0, 1.0)
        values = draw(
            hnp.arrays(np.float32, shape, elements=st.floats(*bound, width=32))
        )
    elif from_logits:
        values = draw(
            hnp.arrays(
                np.float32,
                (num_examples, num_classes),
                elements=st.floats(-15.0, 15.0, width=32),
            )
        )
        rows_look_like_probabilities = (
            values.min() >= 0
            and values.max() <= 1
            and np.abs(values.sum(axis=1) - 1).max() <= 1e-3
        )
        # Refused on purpose (see test_probabilities_passed_as_logits).
        assume(num_examples == 1 or not rows_look_like_probabilities)
    else:
        raw = draw(
            hnp.arrays(
                np.float64,
                (num_examples, num_classes),
                elements=st.one_of(
                    st.sampled_from([0.0, 1.0, 0.5]), st.floats(0.0, 1.0)
                ),
            )
        )
        raw[raw.sum(axis=1) == 0] = 1.0
        values = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    labels = draw(
        hnp.arrays(np.int64, (num_examples,), elements=st.integers(0, num_classes - 1))
    )
    weights = None
    if weighted and draw(st.booleans()):
        weights = draw(
            hnp.arrays(
                np.float32,
                (num_examples,),
                # Integer weights too: smooth ECE reads them as example counts.
                elements=st.one_of(
                    st.just(0.0),
                    st.integers(0, 3).map(float),
                    st.floats(0.0, 5.0, width=32),
                ),
            )
        )
        if weights.sum() <= 0:
            weights[0] = 1.0
    case = Case(labels, values, from_logits, is_binary, weights)
    label_forms = ["int", "column", "one_hot", "float", "int8", "list", "tensor"]
    if num_classes == 2:
        label_forms.append("bool")
    form = draw(st.sampled_from(label_forms))
    case.y_true = {
        "int": lambda: labels,
        "column": lambda: labels[:, None],
        "one_hot": lambda: np.eye(num_classes, dtype=np.float32)[labels],
        "float": lambda: labels.astype(np.float64),
        "int8": lambda: labels.astype(np.int8),
        "list": lambda: labels.tolist(),
        "tensor": lambda: _to_backend(labels.astype(np.int32)),
        "bool": lambda: labels.astype(bool),
    }[form]()
    prediction_form = draw(st.sampled_from(["float32", "float64", "list", "tensor"]))
    case.y_pred = {
        "float32": lambda: values,
        "float64": lambda: values.astype(np.float64),
        "list": lambda: values.tolist(),
        "tensor": lambda: _to_backend(values),
    }[prediction_form]()
    if weights is not None and draw(st.booleans()):
        case.sample_weight = _to_backend(weights)
    return case


# References -------------------------------------------------------------------


def float32_edges(num_bins):
    return np.linspace(0.0, 1.0, num_bins + 1).astype(np.float32).astype(np.float64)


def uniform_bins(values, num_bins):
    """Bin of each value for bins `(lo, hi]` (0 in the first)."""
    return np.searchsorted(float32_edges(num_bins)[1:-1], values, side="left")


def assume_clear_of_edges(values, num_bins, exact):
    """Discards draws whose rounded values could change bin."""
    if exact:
        return
    distance = np.abs(values.reshape(-1, 1) - float32_edges(num_bins)[None, 1:-1])
    assume(distance.size == 0 or distance.min() > EDGE_MARGIN)


def reference_bin_sums(index, confidence, correct, weights, num_bins):
    count = np.bincount(index, weights, minlength=num_bins)
    confidence_sum = np.bincount(index, weights * confidence, minlength=num_bins)
    correct_sum = np.bincount(index, weights * correct, minlength=num_bins)
    return count, confidence_sum, correct_sum


def reference_top_label_bins(case, num_bins, binning):
    probabilities = case.probabilities()
    confidence = probabilities.max(axis=1)
    correct = (case.predicted() == case.labels).astype(np.float64)
    weights = case.weight_vector()
    if binning == "uniform":
        assume_clear_of_edges(confidence, num_bins, case.exact_probabilities())
        index = uniform_bins(confidence, num_bins)
        edges = np.linspace(0.0, 1.0, num_bins + 1)
    else:
        if not case.exact_probabilities():
            gaps = np.diff(np.sort(confidence))
            assume(not np.any((gaps > 0) & (gaps < EDGE_MARGIN)))
        order = np.argsort(confidence, kind="stable")
        confidence, correct, weights = confidence[order], correct[order], weights[order]
        mass_before = np.cumsum(weights) - weights
        index = np.minimum(
            np.floor(mass_before * num_bins / weights.sum()), num_bins - 1
        ).astype(np.int64)
        edges = np.zeros(num_bins + 1)
        edges[-1] = 1.0
        for i in range(num_bins - 1):
            members = confidence[index == i]
            edges[i + 1] = members[-1] if members.size else edges[i]
    return reference_bin_sums(index, confidence, correct, weights, num_bins), edges


def reference_error(sums, norm):
    count, confidence_sum, correct_sum = sums
    total = count.sum()
    gap_mass = np.abs(confidence_sum - correct_sum)
    filled = count > 0
    gap = np.zeros_like(count)
    gap[filled] = gap_mass[filled] / count[filled]
    if norm == "l1":
        return gap_mass.sum() / total
    if norm == "l2":
        return np.sqrt(np.sum(count * gap**2) / total)
    return gap[filled].max() if filled.any() else np.nan


def reference_classwise(case, num_bins):
    probabilities = case.probabilities()
    assume_clear_of_edges(probabilities, num_bins, case.exact_probabilities())
    weights = case.weight_vector()
    errors = []
    for k in range(case.num_classes):
        index = uniform_bins(probabilities[:, k], num_bins)
        sums = reference_bin_sums(
            index,
            probabilities[:, k],
            (case.labels == k).astype(np.float64),
            weights,
            num_bins,
        )
        errors.append(reference_error(sums, "l1"))
    return float(np.mean(errors))


def reference_brier(case):
    probabilities = case.probabilities()
    targets = np.eye(case.num_classes)[case.labels]
    per_example = np.mean((probabilities - targets) ** 2, axis=1)
    weights = case.weight_vector()
    return np.sum(weights * per_example) / weights.sum()


def reference_nll(case):
    weights = case.weight_vector()
    rows = np.arange(case.num_examples)
    if case.from_logits:
        values = case.values.astype(np.float64)
        if case.binary:
            values = np.stack([np.zeros(case.num_examples), values.reshape(-1)], axis=1)
        top = values.max(axis=1)
        log_normaliser = top + np.log(np.exp(values - top[:, None]).sum(axis=1))
        per_example = log_normaliser - values[rows, case.labels]
    else:
        true_probability = case.probabilities()[rows, case.labels]
        per_example = -np.log(np.maximum(true_probability, 1e-15))
    return np.sum(weights * per_example) / weights.sum()


def reference_brier_decomposition(case):
    probabilities = case.probabilities()
    num_classes = case.num_classes
    predicted = case.predicted()
    confusion = np.zeros((num_classes, num_classes))
    for p, y in zip(predicted, case.labels):
        confusion[p, y] += 1
    n = case.num_examples
    group_size = confusion.sum(axis=1)
    label_frequency = confusion.sum(axis=0) / n
    conditional = confusion / np.maximum(group_size, 1)[:, None]
    uncertainty = 1.0 - np.sum(label_frequency**2)
    resolution = sum(
        group_size[k] / n * np.sum((conditional[k] - label_frequency) ** 2)
        for k in range(num_classes)
    )
    reliability = np.mean(
        [np.sum((probabilities[i] - conditional[predicted[i]]) ** 2) for i in range(n)]
    )
    return {
        "uncertainty": uncertainty / num_classes,
        "resolution": resolution / num_classes,
        "reliability": reliability / num_classes,
    }


def reference_smooth_ece(case, bandwidth):
    """relplot (the reference implementation), weights as repetitions."""
    relplot = pytest.importorskip("relplot")
    confidence = np.clip(case.probabilities().max(axis=1), 0.0, 1.0)
    correct = (case.predicted() == case.labels).astype(np.float64)
    if case.weights is not None:
        repeats = case.weights.astype(np.int64)
        assume(np.array_equal(repeats, case.weights) and repeats.sum() > 0)
        confidence, correct = (
            np.repeat(confidence, repeats),
            np.repeat(correct, repeats),
        )
    if bandwidth is None:
        return float(relplot.smECE(confidence, correct))
    return float(relplot.smECE_sigma(confidence, correct, bandwidth))


# Valid inputs equal the reference --------------------------------------------


@pytest.mark.parametrize("name", sorted(BINNED))
@budget(15)
@given(
    case=valid_cases(),
    num_bins=st.sampled_from(NUM_BINS),
    binning=st.sampled_from(["uniform", "quantile"]),
)
def test_binned_errors_equal_reference(fuzz, name, case, num_bins, binning):
    norm, forced = BINNED[name]
    binning = forced or binning
    kwargs = case.kwargs() | {"num_bins": num_bins}
    if forced is None:
        kwargs["binning"] = binning
    sums, _ = reference_top_label_bins(case, num_bins, binning)
    expected = reference_error(sums, norm)
    actual = call(name, case.y_true, case.y_pred, **kwargs)
    fuzz.reference(name, actual, expected, atol=case.tolerance())


@budget(20)
@given(
    case=valid_cases(),
    num_bins=st.sampled_from(NUM_BINS),
    binning=st.sampled_from(["uniform", "quantile"]),
)
def test_reliability_bins_equal_reference(fuzz, case, num_bins, binning):
    (count, confidence_sum, correct_sum), edges = reference_top_label_bins(
        case, num_bins, binning
    )
    bins = metrics.reliability_bins(
        case.y_true, case.y_pred, num_bins=num_bins, binning=binning, **case.kwargs()
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = {
            "count": count,
            "confidence": np.where(count > 0, confidence_sum / count, np.nan),
            "accuracy": np.where(count > 0, correct_sum / count, np.nan),
            "edges": edges,
        }
    actual = {key: getattr(bins, key) for key in expected}
    fuzz.reference("reliability_bins", actual, expected, atol=case.tolerance())


@budget(15)
@given(case=valid_cases(), num_bins=st.sampled_from(NUM_BINS))
def test_classwise_error_equals_reference(fuzz, case, num_bins):
    expected = reference_classwise(case, num_bins)
    actual = metrics.classwise_calibration_error(
        case.y_true, case.y_pred, num_bins=num_bins, **case.kwargs()
    )
    fuzz.reference(
        "classwise_calibration_error", actual, expected, atol=case.tolerance()
    )


@budget(20)
@given(case=valid_cases())
def test_brier_score_equals_reference(fuzz, case):
    # The squares and their mean are taken in float32: rtol 1e-6.
    actual = metrics.brier_score(case.y_true, case.y_pred, **case.kwargs())
    fuzz.reference(
        "brier_score", actual, reference_brier(case), atol=case.tolerance(), rtol=1e-6
    )


@budget(20)
@given(case=valid_cases())
def test_negative_log_likelihood_equals_reference(fuzz, case):
    # Floats of 1e-15 and below: float32 keeps the values, the floor applies
    # alike; logits: log-softmax in float32, |z| <= 15 so nats agree to 1e-5.
    actual = metrics.negative_log_likelihood(case.y_true, case.y_pred, **case.kwargs())
    fuzz.reference(
        "negative_log_likelihood", actual, reference_nll(case), atol=1e-5, rtol=1e-6
    )


@budget(20)
@given(case=valid_cases(weighted=False))
def test_brier_decomposition_equals_reference(fuzz, case):
    actual = metrics.brier_decomposition(
        case.y_true, case.y_pred, from_logits=case.from_logits
    )
    fuzz.reference(
        "brier_decomposition",
        actual,
        reference_brier_decomposition(case),
        atol=case.tolerance(),
    )


@budget(15)
@given(
    case=valid_cases(),
    bandwidth=st.one_of(st.none(), st.floats(0.01, 1.0)),
)
def test_smooth_ece_equals_relplot(fuzz, case, bandwidth):
    expected = reference_smooth_ece(case, bandwidth)
    actual = metrics.smooth_ece(
        case.y_true, case.y_pred, bandwidth=bandwidth, **case.kwargs()
    )
    # The automatic bandwidth is a bisection: from logits a float32
    # confidence may flip one of its steps, so only exact inputs are
    # compared at 1e-9 (relplot sums in another order: measured <= 1e-15).
    if case.exact_probabilities():
        fuzz.reference("smooth_ece", actual, expected, atol=EXACT)
    elif bandwidth is not None:
        fuzz.reference("smooth_ece", actual, expected, atol=FROM_LOGITS)
    else:
        fuzz.reference("smooth_ece", actual, expected, atol=5e-3)


@pytest.mark.parametrize("name", [f for f in WEIGHTED if f != "smooth_ece"])
@budget(4)
@given(case=valid_cases(weighted=False), data=st.data())
def test_weights_of_any_scale_equal_reference(fuzz, name, case, data):
    """Weights of 1e-300 or 1e300 (beyond float32) give the unweighted number.

    Each metric is a ratio of weighted sums, so scaling all weights leaves it
    unchanged (not smooth ECE: its density floor is per example of weight 1,
    so weights are example counts there, as relplot's repetition test above
    checks) (a metamorphic property, counted as an invariant: the
    unweighted number itself is checked against the references above).
    """
    scale = data.draw(st.sampled_from([1e-300, 1e-45, 1e-30, 1e30, 1e300]))
    weights = np.full(case.num_examples, scale)
    kwargs = {"from_logits": case.from_logits}
    expected = call(name, case.labels, case.values, **kwargs)
    actual = call(name, case.labels, case.values, sample_weight=weights, **kwargs)
    if name == "reliability_bins":
        actual = {
            k: getattr(actual, k) / (actual.count.sum() if k == "count" else 1)
            for k in ("count", "confidence", "accuracy")
        }
        expected = {
            k: getattr(expected, k) / (expected.count.sum() if k == "count" else 1)
            for k in ("count", "confidence", "accuracy")
        }
    if isinstance(expected, dict):
        same = all(
            np.allclose(actual[k], expected[k], atol=1e-6, rtol=1e-5, equal_nan=True)
            for k in expected
        )
    else:
        same = np.allclose(actual, expected, atol=1e-6, rtol=1e-5)
    fuzz.invariant(
        name,
        same,
        f"weights all {scale:g} give {actual!r}, without weights {expected!r}",
    )


@budget(20)
@given(
    scores=hnp.arrays(np.float64, st.integers(1, 30), elements=st.floats(0.0, 1.0)),
    data=st.data(),
)
def test_smooth_calibration_error_equals_relplot(fuzz, scores, data):
    relplot = pytest.importorskip("relplot")
    outcomes = data.draw(
        hnp.arrays(np.float64, scores.shape, elements=st.sampled_from([0.0, 1.0]))
    )
    bandwidth = data.draw(st.one_of(st.none(), st.floats(0.005, 1.0)))
    if bandwidth is None:
        expected = relplot.smECE(scores, outcomes)
    else:
        expected = relplot.smECE_sigma(scores, outcomes, bandwidth)
    actual = metrics.smooth_calibration_error(scores, outcomes, bandwidth=bandwidth)
    fuzz.reference("smooth_calibration_error", actual, expected, atol=1e-12)


# Invalid inputs raise a clear error ------------------------------------------
#
# Each drawn valid case is checked against every invalid variant of one
# argument (so every kind is tried for every function), all else valid.


def _first(n):
    mask = np.zeros(n, bool)
    mask[0] = True
    return mask


def bad_predictions(case):
    """Invalid `y_pred` for a valid case: `{kind: value}`."""
    n = case.num_examples
    two_d = np.asarray(case.values, np.float32).reshape(n, -1)
    first = _first(two_d.size).reshape(two_d.shape)
    return {
        "None": None,
        "str": "abc",
        "dict": {"y": two_d},
        "object": object(),
        "str array": np.full(two_d.shape, "a"),
        "object array": two_d.astype(object),
        "complex": two_d.astype(np.complex64) + 1j,
        "bool": two_d > 0.5,
        "scalar": np.float32(0.5),
        "rank 3": two_d[None],
        "empty": np.zeros((0, two_d.shape[1]), np.float32),
        "no classes": np.zeros((n, 0), np.float32),
        "NaN": np.where(first, np.nan, two_d),
        "inf": np.where(first, np.inf, two_d),
        "-inf": np.where(first, -np.inf, two_d),
        "ragged": [[0.5, 0.5], [1.0]],
        "beyond float32": np.full(two_d.shape, 1e39),
    }


def bad_labels(case):
    """Invalid `y_true` (labels.py's bug, complex labels, is tested apart)."""
    n, k = case.num_examples, case.num_classes
    labels, first = case.labels, _first(case.num_examples)
    return {
        "None": None,
        "str": "abc",
        "dict": {"y": labels},
        "object": object(),
        "str array": np.full(n, "a"),
        "object array with None": np.where(first, None, labels.astype(object)),
        "negative": np.where(first, -1, labels),
        "= num_classes": np.where(first, k, labels),
        "huge": np.where(first, 10**9, labels),
        "non-integer float": np.where(first, 0.5, labels),
        "NaN": np.where(first, np.nan, labels),
        "inf": np.where(first, np.inf, labels),
        "soft": np.full((n, k), 1.0 / k),
        "one-hot too wide": np.eye(k + 1)[labels],
        "one-hot two ones": np.ones((n, k)),
        "rank 3": labels[:, None, None],
        "too many": np.concatenate([labels, labels]),
        "empty": labels[:0],
        "ragged": [[0], [0, 1]] + [[0]] * max(n - 2, 0),
    }


def bad_weights(case):
    """Invalid `sample_weight` that data.check_sample_weight handles."""
    n, first = case.num_examples, _first(case.num_examples)
    ones = np.ones(n)
    return {
        "negative": np.where(first, -1.0, ones),
        "NaN": np.where(first, np.nan, ones),
        "inf": np.where(first, np.inf, ones),
        "None inside": np.where(first, None, ones.astype(object)).tolist(),
        "all zero": np.zeros(n),
        "too long": np.ones(n + 1),
        "two columns": np.ones((n, 2)),
        "empty": np.ones(0),
    }


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@budget(3)
@given(case=valid_cases(weighted=False))
def test_invalid_predictions_raise_clear_error(fuzz, name, case):
    fuzz.check_every(
        name,
        "y_pred",
        bad_predictions(case),
        lambda bad: call(name, case.y_true, bad, from_logits=case.from_logits),
    )


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@budget(3)
@given(case=valid_cases(weighted=False))
def test_invalid_labels_raise_clear_error(fuzz, name, case):
    fuzz.check_every(
        name,
        "y_true",
        bad_labels(case),
        lambda bad: call(name, bad, case.values, from_logits=case.from_logits),
    )


@pytest.mark.parametrize("name", WEIGHTED)
@budget(3)
@given(case=valid_cases(weighted=False))
def test_invalid_sample_weight_raises_clear_error(fuzz, name, case):
    fuzz.check_every(
        name,
        "sample_weight",
        bad_weights(case),
        lambda bad: call(
            name,
            case.labels,
            case.values,
            from_logits=case.from_logits,
            sample_weight=bad,
        ),
    )


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@budget(2)
@given(case=valid_cases(weighted=False))
def test_invalid_from_logits_raises_clear_error(fuzz, name, case):
    fuzz.check_every(
        name,
        "from_logits",
        {"str": "yes", "None": None, "int 1": 1, "float 0": 0.0, "list": [True]},
        lambda bad: call(name, case.labels, case.values, from_logits=bad),
    )


@pytest.mark.parametrize("name", sorted(WITH_BINS))
@budget(2)
@given(case=valid_cases(weighted=False))
def test_invalid_num_bins_raises_clear_error(fuzz, name, case):
    fuzz.check_every(
        name,
        "num_bins",
        {
            "0": 0,
            "negative": -3,
            "float": 2.5,
            "str": "15",
            "None": None,
            "bool": True,
            "integral float": np.float64(3.0),
            "list": [5],
        },
        lambda bad: call(
            name, case.labels, case.values, from_logits=case.from_logits, num_bins=bad
        ),
    )


@pytest.mark.parametrize("name", WITH_BINNING)
@budget(2)
@given(case=valid_cases(weighted=False))
def test_invalid_binning_raises_clear_error(fuzz, name, case):
    fuzz.check_every(
        name,
        "binning",
        {"unknown": "log", "empty": "", "None": None, "int": 3, "list": ["uniform"]},
        lambda bad: call(
            name, case.labels, case.values, from_logits=case.from_logits, binning=bad
        ),
    )


@budget(3)
@given(case=valid_cases(weighted=False))
def test_invalid_bandwidth_raises_clear_error(fuzz, case):
    fuzz.check_every(
        "smooth_ece",
        "bandwidth",
        {
            "0": 0.0,
            "negative": -0.1,
            "NaN": np.nan,
            "inf": np.inf,
            "tiny": 1e-7,
            "str": "0.1",
            "bool": True,
            "list": [0.1],
        },
        lambda bad: metrics.smooth_ece(
            case.labels, case.values, from_logits=case.from_logits, bandwidth=bad
        ),
    )


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@budget(3)
@given(data=st.data())
def test_probabilities_passed_as_logits(fuzz, name, data):
    """Rows of probabilities with `from_logits=True`: refused, naming both."""
    n = data.draw(st.sampled_from(NUM_EXAMPLES[1:]))
    k = data.draw(st.sampled_from(NUM_CLASSES))
    raw = data.draw(hnp.arrays(np.float64, (n, k), elements=st.floats(0.01, 1.0)))
    probabilities = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    labels = np.zeros(n, np.int64)
    fuzz.clear_error(
        name,
        ("y_pred", "from_logits"),
        lambda: call(name, labels, probabilities, from_logits=True),
    )


@pytest.mark.parametrize("name", ALL_FUNCTIONS)
@budget(3)
@given(data=st.data())
def test_unnormalised_probabilities_raise_clear_error(fuzz, name, data):
    n = data.draw(st.sampled_from(NUM_EXAMPLES))
    k = data.draw(st.sampled_from(NUM_CLASSES))
    values = data.draw(
        hnp.arrays(np.float32, (n, k), elements=st.floats(-5, 5, width=32))
    )
    assume(
        values.min() < 0
        or np.abs(values.astype(np.float64).sum(axis=1) - 1).max() > 1e-3
    )
    fuzz.clear_error(
        name,
        "y_pred",
        lambda: call(name, np.zeros(n, np.int64), values, from_logits=False),
    )


# Known bugs in files this suite may not edit --------------------------------


@pytest.mark.parametrize("name", ["expected_calibration_error", "brier_score"])
def test_complex_labels_raise_clear_error(fuzz, name):
    probabilities = np.array([[0.6, 0.4], [0.3, 0.7]], np.float32)
    fuzz.clear_error(
        name,
        "y_true",
        lambda: call(name, np.array([0, 1], np.complex128), probabilities),
    )


@pytest.mark.parametrize(
    "kind, bad",
    [
        ("str", np.array(["a", "a"])),
        ("complex", np.array([1 + 1j, 1 + 1j])),
        ("dict", {"w": [1.0, 1.0]}),
        ("ragged", [[1.0], [1.0, 2.0]]),
    ],
)
def test_unreadable_sample_weight_raises_clear_error(fuzz, kind, bad):
    probabilities = np.array([[0.6, 0.4], [0.3, 0.7]], np.float32)
    fuzz.clear_error(
        "expected_calibration_error",
        "sample_weight",
        lambda: metrics.expected_calibration_error(
            [0, 1], probabilities, sample_weight=bad
        ),
    )


# smooth_calibration_error, the low-level function ----------------------------


@budget(3)
@given(argument=st.sampled_from(["scores", "outcomes", "sample_weight"]))
def test_smooth_calibration_error_invalid_arrays(fuzz, argument):
    variants = {
        "str": "abc",
        "dict": {"a": 1},
        "object": object(),
        "str array": np.array(["a", "b", "c"]),
        "complex": np.array([1 + 1j, 0, 1]),
        "column": np.ones((3, 1)),
        "empty": np.ones(0),
        "too short": np.ones(2),
        "NaN": np.array([np.nan, 0.5, 0.5]),
        "inf": np.array([np.inf, 0.5, 0.5]),
        "out of range": np.array([1.5, 0.5, -0.5]),
        "ragged": [[1.0], [1.0, 2.0]],
    }
    if argument != "sample_weight":
        variants["None"] = None
    valid = {
        "scores": np.array([0.2, 0.9, 0.5]),
        "outcomes": np.array([0.0, 1.0, 1.0]),
        "sample_weight": None,
    }
    fuzz.check_every(
        "smooth_calibration_error",
        argument,
        variants,
        lambda bad: metrics.smooth_calibration_error(**(valid | {argument: bad})),
    )
