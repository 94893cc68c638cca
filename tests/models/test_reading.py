"""`keras_reliability.models` and `keras_reliability.data`: reading models, labels and data."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability import data as kr_data
from keras_reliability.models import PENULTIMATE
from keras_reliability.models import class_labels
from keras_reliability.models import classification_head
from keras_reliability.models import feature_extractor
from keras_reliability.models import read_model


def _dense_model(*tail, units=3, activation=None):
    inputs = keras.Input((4,))
    h = keras.layers.Dense(5, activation="relu", name="feat")(inputs)
    z = keras.layers.Dense(units, activation=activation, name="head")(h)
    for layer in tail:
        z = layer(z)
    return keras.Model(inputs, z)


@pytest.mark.parametrize(
    "build, kind, exact",
    [
        (lambda: _dense_model(), "logits", True),
        (lambda: _dense_model(activation="softmax"), "probabilities", True),
        (lambda: _dense_model(keras.layers.Softmax()), "probabilities", True),
        (lambda: _dense_model(keras.layers.Activation("softmax")), "probabilities", True),
        (lambda: _dense_model(keras.layers.Activation("softmax"), keras.layers.Dropout(0.5)), "probabilities", True),
        (lambda: _dense_model(ops.softmax), "probabilities", True),
        (lambda: _dense_model(ops.log_softmax), "log_probabilities", True),
        (lambda: _dense_model(activation="log_softmax"), "log_probabilities", True),
        (lambda: _dense_model(units=1, activation="sigmoid"), "sigmoid", True),
        (lambda: _dense_model(ops.sigmoid, units=1), "sigmoid", True),
        (lambda: _dense_model(units=4, activation="sigmoid"), "multi_label", False),
        (lambda: _dense_model(activation="relu"), "regression", False),
        (lambda: _dense_model(keras.layers.Activation("tanh")), "regression", False),
        (lambda: _dense_model(keras.layers.Lambda(lambda t: ops.softmax(t))), "unknown", False),
    ],
)
def test_kind_is_read_from_the_operation_behind_the_output(build, kind, exact):
    reading = read_model(build())
    assert reading.kind == kind
    if kind not in ("regression", "multi_label", "unknown"):
        assert reading.exact_logits == exact
        assert reading.head.name == "head"


@pytest.mark.parametrize(
    "loss, kind",
    [
        ("mse", "regression"),
        (keras.losses.MeanAbsoluteError(), "regression"),
        ("binary_crossentropy", "binary_logit"),
        (keras.losses.BinaryCrossentropy(from_logits=True), "binary_logit"),
        (None, "unknown"),
    ],
)
def test_one_linear_column_is_read_from_the_compiled_loss(loss, kind):
    model = _dense_model(units=1)
    if loss is not None:
        model.compile(loss=loss)
    assert read_model(model).kind == kind


def test_the_values_decide_when_the_graph_does_not():
    model = _dense_model(keras.layers.Lambda(lambda t: ops.softmax(t)))
    x = np.random.default_rng(0).random((6, 4)).astype("float32")
    reading = read_model(model).resolve(keras.ops.convert_to_numpy(model(x)))
    assert reading.kind == "probabilities" and not reading.exact_logits
    logits_model = _dense_model(keras.layers.Lambda(lambda t: t * 3.0))
    reading = read_model(logits_model).resolve(keras.ops.convert_to_numpy(logits_model(x)))
    assert reading.kind == "logits"


def test_one_uncompiled_linear_column_is_refused_as_ambiguous():
    model = _dense_model(units=1)
    x = np.zeros((3, 4), "float32")
    with pytest.raises(ValueError, match="one column.*sigmoid probability, a logit or a regression"):
        read_model(model).resolve(keras.ops.convert_to_numpy(model(x)))
    assert read_model(model, from_logits=True).kind == "binary_logit"


def test_declared_from_logits_is_checked_against_graph_and_values():
    with pytest.raises(ValueError, match=r"`from_logits=True`.*probabilities \(softmax\)"):
        read_model(_dense_model(activation="softmax"), from_logits=True)
    with pytest.raises(ValueError, match=r"`from_logits=False`.*ends in logits"):
        read_model(_dense_model(), from_logits=False)
    with pytest.raises(ValueError, match=r"`from_logits` must be True, False or None; received 'yes'"):
        read_model(_dense_model(), from_logits="yes")
    # A Lambda the graph cannot read: the values contradict the declaration.
    model = _dense_model(keras.layers.Lambda(lambda t: ops.softmax(t)))
    x = np.random.default_rng(0).random((6, 4)).astype("float32")
    with pytest.raises(ValueError, match="`from_logits=True`, but .* sum to 1"):
        read_model(model, from_logits=True).resolve(keras.ops.convert_to_numpy(model(x)))


def test_low_precision_probabilities_are_accepted_within_the_dtype_tolerance():
    model = _dense_model(activation="softmax")
    reading = read_model(model)
    rows = np.array([[0.5, 0.3, 0.21], [0.2, 0.2, 0.595]])  # sums 1.01 and 0.995
    reading.dtype = "bfloat16"
    reading.resolve(rows)
    y_pred, from_logits = reading.metric_inputs(rows)
    assert not from_logits and y_pred.dtype == np.float32
    np.testing.assert_allclose(y_pred.sum(axis=1), 1.0, atol=1e-6)
    reading = read_model(model)
    reading.dtype = "float32"
    with pytest.raises(ValueError, match="not non-negative with sums of 1"):
        reading.resolve(rows)


def test_multi_output_models_need_output():
    inputs = keras.Input((4,))
    h = keras.layers.Dense(5)(inputs)
    model = keras.Model(
        inputs,
        {"a": keras.layers.Dense(3, activation="softmax")(h), "b": keras.layers.Dense(1)(h)},
    )
    with pytest.raises(ValueError, match=r"has 2 outputs \('a', 'b'\); pass `output=`"):
        read_model(model)
    assert read_model(model, output="a").kind == "probabilities"
    assert read_model(model, output=1).output_index == 1
    with pytest.raises(ValueError, match="`output` index 2 is out of range"):
        read_model(model, output=2)


def test_not_a_model_is_refused_naming_model():
    with pytest.raises(ValueError, match="`model` must be a keras.Model; received NoneType"):
        read_model(None, owner="tool")


def test_nested_and_reshaped_heads_give_exact_logits_and_the_head_input():
    # MobileNet's head: a 1x1 Conv2D, Flatten, then Activation("softmax").
    inputs = keras.Input((2, 2, 3))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(inputs)
    conv = keras.layers.Conv2D(4, 1, name="logits_conv")(pooled)
    outputs = keras.layers.Activation("softmax")(keras.layers.Flatten()(conv))
    model = keras.Model(inputs, outputs)
    assert classification_head(model, "test").name == "logits_conv"
    x = np.random.default_rng(1).random((5, 2, 2, 3)).astype("float32")
    extracted = feature_extractor(model, (None,)).predict(x)
    probabilities = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(ops.softmax(extracted.logits)), probabilities, atol=1e-6
    )
    np.testing.assert_allclose(
        extracted.features[PENULTIMATE],
        keras.ops.convert_to_numpy(keras.Model(inputs, pooled)(x)),
        atol=1e-6,
    )
    # ReAct recomputes logits from the head's input through Conv2D and Flatten.
    recomputed = extracted.extractor.head(PENULTIMATE, extracted.features[PENULTIMATE])
    np.testing.assert_allclose(recomputed, extracted.logits, atol=1e-5)


def test_binary_models_give_two_class_logits():
    model = _dense_model(units=1, activation="sigmoid")
    x = np.random.default_rng(2).random((5, 4)).astype("float32")
    logits = feature_extractor(model).predict(x).logits
    p = keras.ops.convert_to_numpy(model(x))[:, 0]
    assert logits.shape == (5, 2)
    np.testing.assert_array_equal(logits[:, 0], 0.0)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 1])), p, atol=1e-6)


# Labels ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, expected",
    [
        ([0, 2, 1], [0, 2, 1]),
        ([[0], [2], [1]], [0, 2, 1]),
        ([[1, 0, 0], [0, 0, 1], [0, 1, 0]], [0, 2, 1]),
        ([0.0, 2.0, 1.0], [0, 2, 1]),
    ],
)
def test_labels_accepted(labels, expected):
    np.testing.assert_array_equal(class_labels(np.array(labels), 3, 3), expected)


@pytest.mark.parametrize(
    "labels, message",
    [
        ([[1, 0], [0, 1], [1, 0]], r"one-hot rows of width 2, but the model has 3 classes"),
        ([[0.5, 0.5, 0], [0, 0, 1], [0, 1, 0]], r"must be one-hot.*soft labels"),
        ([0, -1, 1], r"holds the label -1, outside \[0, 2\]"),
        ([0, 3, 1], r"holds the label 3, outside \[0, 2\]"),
        ([0, 1.5, 1], r"non-integer value 1.5"),
        ([0, 1], r"has 2 labels for 3 examples"),
        (["a", "b", "c"], r"must hold integer class labels"),
        (None, r"`y` is required; received None"),
    ],
)
def test_labels_refused_naming_the_argument(labels, message):
    with pytest.raises(ValueError, match=message):
        class_labels(None if labels is None else np.array(labels), 3, 3, name="y")


# Data ------------------------------------------------------------------------


def _batches():
    for _ in range(2):
        yield np.zeros((4, 4), "float32"), np.zeros((4,), "int32")


def test_one_shot_generator_is_refused_and_a_factory_accepted():
    with pytest.raises(ValueError, match="is a generator.*read only once.*callable"):
        kr_data.HeldOutData(_batches(), owner="Tool")
    data = kr_data.HeldOutData(_batches, owner="Tool")
    model = _dense_model(activation="softmax")
    for _ in range(2):  # read twice: the factory gives new batches each time
        outputs, labels, weights = data.collect(model)
        assert outputs.shape == (8, 3) and labels.shape == (8,) and weights is None


@pytest.mark.parametrize(
    "value, message",
    [
        ([np.zeros((4, 4)), np.zeros(4)], r"not a list; received a list of 2 items"),
        (np.zeros((4, 4)), r"must be a tuple \(x, y\)"),
        ((np.zeros((4, 4)), None), r"must hold inputs and labels"),
        ((np.zeros((4, 4)), np.zeros(3)), r"4 inputs but 3 labels"),
        ((np.zeros((4, 4)), np.zeros(4), -np.ones(4)), r"`validation_data\[2\]` must be finite and non-negative; received -1.0"),
        ((np.zeros((0, 4)), np.zeros(0)), r"is empty \(0 examples\)"),
    ],
)
def test_held_out_data_refuses_bad_forms_at_construction(value, message):
    with pytest.raises(ValueError, match=message):
        kr_data.HeldOutData(value, owner="Tool")


def test_probe_refuses_nan_inputs_and_shapes_before_any_pass():
    model = _dense_model(activation="softmax")
    x = np.zeros((4, 4), "float32")
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="`validation_data` holds 1 NaN or infinite"):
        kr_data.HeldOutData((x, np.zeros(4)), owner="Tool").probe(model)
    with pytest.raises(ValueError, match=r"examples of shape \(5,\), but model .* expects inputs of shape \(4,\)"):
        kr_data.HeldOutData((np.zeros((4, 5), "float32"), np.zeros(4)), owner="Tool").probe(model)


def test_unbatched_and_infinite_datasets_are_refused():
    model = _dense_model(activation="softmax")
    unbatched = [(np.zeros((4,), "float32"), np.int32(0))] * 3
    with pytest.raises(ValueError, match="unbatched dataset"):
        kr_data.HeldOutData(unbatched, owner="Tool").probe(model)
    tf = pytest.importorskip("tensorflow")
    infinite = tf.data.Dataset.from_tensor_slices((np.zeros((8, 4), "float32"), np.zeros(8))).batch(4).repeat()
    with pytest.raises(ValueError, match="infinite dataset.*`max_samples`"):
        kr_data.HeldOutData(infinite, owner="Tool")
    outputs, labels, _ = kr_data.HeldOutData(infinite, max_samples=10, owner="Tool").collect(model)
    assert outputs.shape == (10, 3) and labels.shape == (10,)


def test_input_arrays_slice_before_converting():
    big = np.zeros((1000, 4), "float32")
    x, _ = kr_data.input_arrays(big, "in_data", 10, "Tool")
    assert x.shape == (10, 4) and np.shares_memory(x, big)
