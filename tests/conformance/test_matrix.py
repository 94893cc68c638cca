"""The conformance matrix: every kind of model a user brings x every tool.

Each cell either gives the number an independent float64 numpy computation
gives on the model's own outputs, or refuses before any work (before the
first epoch for callbacks) with a message that says why. The models are
tiny; the references never go through `keras_reliability.models`: each
model declares what its output is, and the reference reads it from that.
"""

import re
import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_reliability as kr

NUM_CLASSES = 3
NUM_FEATURES = 6
ROWS = 24


# ----------------------------------------------------------------------------
# Models: name -> (build, output kind as the reference reads it)
# ----------------------------------------------------------------------------


def _body(inputs):
    return keras.layers.Dense(8, activation="relu", name="feat")(inputs)


def sequential_softmax():
    return keras.Sequential(
        [
            keras.Input((NUM_FEATURES,)),
            keras.layers.Dense(8, activation="relu", name="feat"),
            keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head"),
        ]
    )


def functional_softmax():
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head")(_body(inputs)))


def logits():
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES, name="head")(_body(inputs)))


def activation_head():
    inputs = keras.Input((NUM_FEATURES,))
    z = keras.layers.Dense(NUM_CLASSES, name="head")(_body(inputs))
    return keras.Model(inputs, keras.layers.Activation("softmax")(z))


def ops_softmax():
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, ops.softmax(keras.layers.Dense(NUM_CLASSES, name="head")(_body(inputs))))


def single_sigmoid():
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="head")(_body(inputs)))


def nested():
    inner = sequential_softmax()
    inputs = keras.Input((NUM_FEATURES,))
    return keras.Model(inputs, inner(inputs))


def multi_output():
    inputs = keras.Input((NUM_FEATURES,))
    h = _body(inputs)
    probabilities = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="probs")(h)
    value = keras.layers.Dense(1, name="value")(h)
    return keras.Model(inputs, {"probs": probabilities, "value": value})


def two_inputs():
    a, b = keras.Input((NUM_FEATURES // 2,)), keras.Input((NUM_FEATURES // 2,))
    h = _body(keras.layers.Concatenate()([a, b]))
    return keras.Model([a, b], keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head")(h))


class SubclassedClassifier(keras.Model):
    def __init__(self):
        super().__init__()
        self.feat = keras.layers.Dense(8, activation="relu")
        self.head = keras.layers.Dense(NUM_CLASSES)

    def call(self, x):
        return ops.softmax(self.head(self.feat(x)))


def subclassed():
    model = SubclassedClassifier()
    model(np.zeros((1, NUM_FEATURES), "float32"))
    return model


def _with_policy(policy, build):
    def built():
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            return build()
        finally:
            keras.mixed_precision.set_global_policy(previous)

    return built


def mobilenet_v3_small():
    # keras.applications graph: 1x1 Conv2D "logits", Flatten, Activation.
    return keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3),
        alpha=0.75,
        minimalistic=True,
        weights=None,
        classes=NUM_CLASSES,
        include_preprocessing=False,
    )


def regression():
    inputs = keras.Input((NUM_FEATURES,))
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(_body(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    return model


MODELS = {
    "sequential_softmax": (sequential_softmax, "probabilities"),
    "functional_softmax": (functional_softmax, "probabilities"),
    "logits": (logits, "logits"),
    "activation_head": (activation_head, "probabilities"),
    "ops_softmax": (ops_softmax, "probabilities"),
    "single_sigmoid": (single_sigmoid, "sigmoid"),
    "nested": (nested, "probabilities"),
    "subclassed": (subclassed, "probabilities"),
    "mixed_float16": (_with_policy("mixed_float16", sequential_softmax), "probabilities"),
    "mixed_bfloat16": (_with_policy("mixed_bfloat16", sequential_softmax), "probabilities"),
    "multi_output": (multi_output, "refused"),
    "two_inputs": (two_inputs, "probabilities"),
    "mobilenet_v3_small": (mobilenet_v3_small, "probabilities"),
    "regression": (regression, "refused"),
}

# Cells that refuse, and the message that says why.
REFUSED = {
    "regression": r"regression",
    "multi_output": r"has 2 outputs.*pass `output=`",
}
# Without `inputs=`, attacks cannot tell which input to perturb; the
# adversarial callback perturbs models of one input only.
TWO_INPUT_REFUSALS = {"fgsm": r"pass `inputs=`", "adversarial": r"one input"}


def _tolerance(name):
    return {"mixed_float16": 2e-3, "mixed_bfloat16": 2e-2}.get(name, 2e-5)


_cache = {}


def model_named(name):
    if name not in _cache:
        keras.utils.set_random_seed(0)
        _cache[name] = MODELS[name][0]()
    return _cache[name]


def data(name, rows=ROWS, seed=0):
    rng = np.random.default_rng(seed)
    shape = (32, 32, 3) if name == "mobilenet_v3_small" else (NUM_FEATURES,)
    x = rng.random((rows,) + shape).astype("float32")
    classes = 2 if MODELS[name][1] == "sigmoid" else NUM_CLASSES
    # (N, 1) labels, as keras.datasets.cifar10 gives them.
    y = (np.arange(rows) % classes).reshape(-1, 1)
    if name == "two_inputs":
        return [x[:, :3], x[:, 3:]], y
    return x, y


def reference_probabilities(name, model, x):
    """Class probabilities from the model's own outputs, float64 numpy."""
    outputs = model.predict(x, verbose=0)
    values = np.asarray(outputs, dtype=np.float64)
    kind = MODELS[name][1]
    if kind == "sigmoid":
        p = values.reshape(-1)
        return np.stack([1 - p, p], axis=1)
    if kind == "logits":
        shifted = np.exp(values - values.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    return values / values.sum(axis=1, keepdims=True)


def reference_ece(probabilities, labels, bins=15):
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return ece


def _refusal(name, tool):
    if name in REFUSED:
        return REFUSED[name]
    if name == "two_inputs" and tool in ("fgsm", "adversarial"):
        return TWO_INPUT_REFUSALS[tool]
    if name == "subclassed" and tool == "mahalanobis":
        return r"reading features needs a functional or Sequential model"
    return None


def _compile(name, model):
    """Compiles `model` with a learning rate of 0: fits leave it unchanged."""
    loss = {
        "single_sigmoid": "binary_crossentropy",
        "regression": "mse",
        "multi_output": {"probs": "sparse_categorical_crossentropy", "value": "mse"},
    }.get(name, "sparse_categorical_crossentropy")
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)


def _targets(name, y):
    if name == "multi_output":
        return {"probs": y, "value": y.astype("float32")}
    return y.astype("float32")


# ----------------------------------------------------------------------------
# Tools
# ----------------------------------------------------------------------------


def run_calibration_callback(name, model):
    x, y = data(name)
    _compile(name, model)
    history = model.fit(
        x, _targets(name, y), epochs=1, verbose=0,
        callbacks=[kr.callbacks.CalibrationCallback((x, y))],
    )
    expected = reference_ece(reference_probabilities(name, model, x), y[:, 0])
    np.testing.assert_allclose(history.history["val_ece"][0], expected, atol=_tolerance(name))


def run_ood_msp(name, model):
    x, _ = data(name)
    scores = kr.ood.MaxSoftmax().score(model, x)
    expected = -reference_probabilities(name, model, x).max(axis=1)
    np.testing.assert_allclose(scores, expected, atol=_tolerance(name))


def run_mahalanobis(name, model):
    x, y = data(name)
    default = kr.ood.Mahalanobis().fit(model, x, y).score(model, x)
    # The default feature is the input of the classification head: the
    # "feat" layer's output, whatever activation follows the head.
    if name == "nested":
        features = keras.Model(model.layers[1].inputs, model.layers[1].get_layer("feat").output)
    elif name == "mobilenet_v3_small":
        features = keras.Model(model.inputs, model.get_layer("logits").input)
    else:
        features = keras.Model(model.inputs, model.get_layer("feat").output)
    f = np.asarray(ops.convert_to_numpy(features(x)), dtype=np.float64)
    f = f.reshape(len(f), -1)
    labels = y[:, 0]
    means = np.stack([f[labels == c].mean(axis=0) for c in np.unique(labels)])
    centred = f - means[labels]
    precision = np.linalg.pinv(centred.T @ centred / len(f), hermitian=True)
    distances = np.stack([np.einsum("nd,dk,nk->n", f - m, precision, f - m) for m in means], axis=1)
    np.testing.assert_allclose(default, distances.min(axis=1), rtol=1e-3, atol=1e-3)


def run_fgsm(name, model):
    x, y = data(name)
    accuracies = kr.attacks.robust_accuracy(
        model, x, y, kr.attacks.FGSM(0.05, input_range=(0, 1)), [0, 0.05]
    )
    reference = reference_probabilities(name, model, x).argmax(axis=1) == y[:, 0]
    assert accuracies[0] == pytest.approx(reference.mean())
    assert accuracies[0.05] <= accuracies[0] + 1e-9


def run_adversarial(name, model):
    x, y = data(name)
    _compile(name, model)
    callback = kr.callbacks.AdversarialTrainingCallback(
        "fgsm", epsilon=0.05, input_range=(0, 1), eval_data=(x, y), eval_attacks=("fgsm",)
    )
    history = model.fit(x, _targets(name, y), epochs=1, verbose=0, callbacks=[callback])
    reference = reference_probabilities(name, model, x).argmax(axis=1) == y[:, 0]
    assert history.history["adv_clean_accuracy"][0] == pytest.approx(reference.mean())


def run_uncertainty(name, model):
    x, _ = data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic model
        result = kr.uncertainty.predict_with_uncertainty(model, x, num_samples=2)
    np.testing.assert_allclose(result.mean, reference_probabilities(name, model, x), atol=_tolerance(name))


def run_temperature(name, model):
    from scipy.optimize import minimize_scalar

    x, y = data(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # probabilities, not logits
        calibrated = kr.calibration.TemperatureScaling.calibrate(model, x, y)
    temperature = calibrated.layers[-1].temperature
    probabilities = reference_probabilities(name, model, x)
    log_p = np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))
    labels = y[:, 0]

    def nll(t):
        z = log_p / t
        z = z - z.max(axis=1, keepdims=True)
        return np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels])

    best = minimize_scalar(nll, bounds=(0.05, 100), method="bounded", options={"xatol": 1e-8})
    assert nll(temperature) <= best.fun + 1e-5
    outputs = np.asarray(ops.convert_to_numpy(calibrated(x)))
    assert outputs.dtype == np.float32


TOOLS = {
    "calibration_callback": run_calibration_callback,
    "ood_msp": run_ood_msp,
    "mahalanobis": run_mahalanobis,
    "fgsm": run_fgsm,
    "adversarial": run_adversarial,
    "uncertainty": run_uncertainty,
    "temperature_scaling": run_temperature,
}


# A keras.applications graph compiles slowly on the CPU: its cells are those
# that read the model through one predict pass (the fits, attacks and the
# Monte-Carlo wrapper read it the same way, as the small models show).
_APPLICATION_TOOLS = ("ood_msp", "mahalanobis", "temperature_scaling")
CELLS = [
    (name, tool)
    for name in MODELS
    for tool in TOOLS
    if name != "mobilenet_v3_small" or tool in _APPLICATION_TOOLS
]


@pytest.mark.parametrize("name, tool", CELLS)
def test_cell(name, tool):
    if name == "single_sigmoid" and tool == "temperature_scaling":
        pytest.skip("TemperatureScaling.calibrate on a sigmoid column: tests/calibration")
    model = model_named(name)
    refusal = _refusal(name, tool)
    if refusal is None:
        TOOLS[tool](name, model)
        return
    _compile(name, model)
    optimizer = model.optimizer
    steps = int(ops.convert_to_numpy(optimizer.iterations)) if optimizer.built else 0
    with pytest.raises(ValueError, match=refusal) as error:
        TOOLS[tool](name, model)
    # Refused before any work: no optimizer step ran.
    if optimizer.built:
        assert int(ops.convert_to_numpy(optimizer.iterations)) == steps, error.value
    assert re.search(refusal, str(error.value))


@pytest.mark.parametrize("output", ["probs", 0])
def test_multi_output_model_with_output_chosen(output):
    model = model_named("multi_output")
    x, _ = data("multi_output")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic model
        result = kr.uncertainty.predict_with_uncertainty(model, x, num_samples=2, output=output)
    expected = np.asarray(model.predict(x, verbose=0)["probs"], dtype=np.float64)
    np.testing.assert_allclose(result.mean, expected, atol=2e-5)
    with pytest.raises(ValueError, match=r"`output` must be one of the outputs.*'probs'"):
        kr.uncertainty.predict_with_uncertainty(model, x, output="nope")


def test_output_name_of_a_dict_model_whatever_the_key_order():
    # Keras flattens a dict of outputs in key order, not in the order given:
    # the classification output, keyed "z_probs", is the second output.
    inputs = keras.Input((NUM_FEATURES,))
    h = _body(inputs)
    model = keras.Model(
        inputs,
        {
            "z_probs": keras.layers.Dense(NUM_CLASSES, activation="softmax")(h),
            "a_value": keras.layers.Dense(1)(h),
        },
    )
    x, _ = data("sequential_softmax")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # deterministic model
        result = kr.uncertainty.predict_with_uncertainty(
            model, x, num_samples=2, output="z_probs"
        )
    expected = np.asarray(model.predict(x, verbose=0)["z_probs"], dtype=np.float64)
    np.testing.assert_allclose(result.mean, expected, atol=2e-5)


@pytest.mark.parametrize("output", ["probs", 0])
def test_calibration_of_a_multi_output_model_with_output_chosen(output):
    model = model_named("multi_output")
    x, y = data("multi_output")
    _compile("multi_output", model)
    callback = kr.callbacks.CalibrationCallback((x, y), output=output)
    history = model.fit(x, _targets("multi_output", y), epochs=1, verbose=0, callbacks=[callback])
    probabilities = np.asarray(model.predict(x, verbose=0)["probs"], dtype=np.float64)
    expected = reference_ece(probabilities, y[:, 0])
    np.testing.assert_allclose(history.history["val_ece"][0], expected, atol=2e-5)
    assert kr.callbacks.CalibrationCallback.from_config(
        callback.get_config(), validation_data=(x, y)
    ).output == output

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # probabilities, not logits
        calibrated = kr.calibration.TemperatureScaling.calibrate(model, x, y, output=output)
        alone = kr.calibration.TemperatureScaling(from_logits=False).fit(probabilities, y)
    assert calibrated.layers[-1].temperature == pytest.approx(alone.temperature, rel=1e-4)
    outputs = np.asarray(ops.convert_to_numpy(calibrated(x)))
    assert outputs.shape == probabilities.shape


def test_output_argument_is_checked_in_the_constructor():
    with pytest.raises(ValueError, match=r"CalibrationCallback: `output` must be None.*1\.5"):
        kr.callbacks.CalibrationCallback((np.zeros((2, 3)), np.zeros(2)), output=1.5)


def two_named_inputs():
    a = keras.Input((NUM_FEATURES // 2,), name="image")
    b = keras.Input((NUM_FEATURES // 2,), name="meta")
    h = _body(keras.layers.Concatenate()([a, b]))
    head = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="head")(h)
    return keras.Model({"image": a, "meta": b}, head)


@pytest.mark.parametrize("form, inputs", [("list", 0), ("list", 1), ("dict", "meta")])
def test_attack_on_a_two_input_model_perturbs_the_chosen_input(form, inputs):
    if form == "list":
        model = model_named("two_inputs")
    else:
        keras.utils.set_random_seed(0)
        model = two_named_inputs()
    [a, b], y = data("two_inputs")
    position = {0: 0, 1: 1, "meta": 1}[inputs]
    x = [a, b] if form == "list" else {"image": a, "meta": b}
    epsilon = 0.05
    adversarial = kr.attacks.FGSM(epsilon, input_range=(0, 1)).generate(
        model, x, y, inputs=inputs
    )
    leaves = adversarial if form == "list" else [adversarial["image"], adversarial["meta"]]
    original = [a, b]
    fixed = 1 - position
    np.testing.assert_array_equal(leaves[fixed], original[fixed])
    moved = leaves[position] - original[position]
    assert np.abs(moved).max() <= epsilon + 1e-6
    # The direction: the sign of the cross-entropy's gradient with respect
    # to the chosen input, by central differences in float64.
    h = 1e-3
    labels = y[:, 0]

    def predict(values):
        both = list(original)
        both[position] = values
        return np.asarray(
            model.predict(both if form == "list" else dict(zip(["image", "meta"], both)),
                          verbose=0),
            dtype=np.float64,
        )

    def loss(values):
        p = predict(values)
        return -np.log(p[np.arange(len(p)), labels])

    target = original[position].astype(np.float64)
    gradient = np.zeros_like(target)
    for j in range(target.shape[1]):
        step = np.zeros_like(target)
        step[:, j] = h
        gradient[:, j] = (loss(target + step) - loss(target - step)) / (2 * h)
    stepped = target + epsilon * np.sign(gradient)
    check = (np.abs(gradient) > 1e-2) & (stepped >= 0) & (stepped <= 1)
    assert check.sum() > 0
    np.testing.assert_array_equal(np.sign(moved[check]), np.sign(gradient[check]))

    accuracies = kr.attacks.robust_accuracy(
        model, x, y, kr.attacks.FGSM(epsilon, input_range=(0, 1)), [0, epsilon], inputs=inputs
    )
    reference = predict(original[position]).argmax(axis=1) == labels
    assert accuracies[0] == pytest.approx(reference.mean())
    assert accuracies[epsilon] <= accuracies[0] + 1e-9


def test_attack_on_a_two_input_model_needs_inputs():
    model = model_named("two_inputs")
    x, y = data("two_inputs")
    with pytest.raises(ValueError, match=r"FGSM: model .* takes 2 inputs .*pass `inputs=`"):
        kr.attacks.FGSM(0.05, input_range=(0, 1)).generate(model, x, y)
    with pytest.raises(ValueError, match=r"robust_accuracy: `inputs` must be one of"):
        kr.attacks.robust_accuracy(model, x, y, "fgsm", [0.1], inputs="nope")
