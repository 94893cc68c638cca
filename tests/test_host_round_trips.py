"""No host round trip per batch: the adversarial steps and the streaming metrics stay compiled.

A compiled step can only reach Python (and so the host) through a host
call: `jax.pure_callback` / `io_callback` / `jax.debug.callback` (a
`*_python_cpu_callback` custom call in the lowered program) on JAX,
`tf.py_function` / `tf.numpy_function` (a `PyFunc` op) on TensorFlow. The
train step the adversarial callback installs, with the streaming
calibration metrics compiled in, is lowered and searched for them.
(JAX's transfer guard would be the runtime check, but device-to-host copies
on the CPU platform are zero-copy and never trip it.)
"""

import keras
import numpy as np
import pytest

import keras_reliability as kr

BACKEND = keras.backend.backend()
RECIPES = {"fgsm": {}, "mix": {}, "pgd": {"steps": 2}, "trades": {"steps": 2}, "free": {}}


def build():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            kr.metrics.ExpectedCalibrationError(from_logits=True),
            kr.metrics.MaxCalibrationError(from_logits=True),
        ],
    )
    return model


def _with_step_installed(recipe, shuffled_digits, inspect):
    """Builds the model with one adversarial fit, then `inspect(model, x, y)` with the step in."""
    x, y = shuffled_digits[0][:64], shuffled_digits[1][:64]
    model = build()

    def callback():
        return kr.callbacks.AdversarialTrainingCallback(
            recipe, epsilon=0.1, input_range=(0, 1), recipe_options=RECIPES[recipe] or None
        )

    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[callback()])
    adversarial = callback()
    adversarial.set_model(model)
    adversarial.on_train_begin()
    try:
        return inspect(model, x, y)
    finally:
        adversarial.on_train_end()


def _jax_program(function, *args):
    import jax

    return jax.jit(function).lower(*args).as_text()


def _jax_host_calls(program):
    return [line for line in program.splitlines() if "callback" in line]


@pytest.mark.skipif(BACKEND != "jax", reason="JAX programs")
def test_jax_host_call_check_sees_a_callback():
    import jax

    def step(x):
        jax.debug.callback(lambda value: None, x)
        return x + 1

    assert _jax_host_calls(_jax_program(step, np.ones(3, "float32")))
    assert not _jax_host_calls(_jax_program(lambda x: x + 1, np.ones(3, "float32")))


@pytest.mark.skipif(BACKEND != "jax", reason="JAX programs")
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_jax_adversarial_step_and_metrics_stay_on_the_device(shuffled_digits, recipe):
    def lowered(model, x, y):
        state = (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in model.optimizer.variables],
            [v.value for v in model.metrics_variables],
        )
        return _jax_program(model.train_step, state, (x, y))

    program = _with_step_installed(recipe, shuffled_digits, lowered)
    # The step holds the input gradient (a transposed dot) and the ECE's bin sums.
    assert program.count("stablehlo.dot_general") >= 4
    assert _jax_host_calls(program) == []


def _tensorflow_op_types(function, *args):
    import tensorflow as tf

    graph = tf.function(function).get_concrete_function(*args).graph
    types = {op.type for op in graph.get_operations()}
    for nested in graph._functions.values():  # gradients, loops and conditions
        types.update(node.op for node in nested.definition.node_def)
    return types


_PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs")
def test_tensorflow_python_op_check_sees_a_py_function():
    import tensorflow as tf

    def step(x):
        return tf.py_function(lambda value: value + 1, [x], tf.float32)

    assert _tensorflow_op_types(step, tf.ones(3)) & _PYTHON_OPS
    assert not _tensorflow_op_types(lambda x: x + 1, tf.ones(3)) & _PYTHON_OPS


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graphs")
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_tensorflow_adversarial_step_and_metrics_have_no_python_ops(shuffled_digits, recipe):
    import tensorflow as tf

    types = _with_step_installed(
        recipe,
        shuffled_digits,
        lambda model, x, y: _tensorflow_op_types(
            model.train_step, (tf.constant(x), tf.constant(y))
        ),
    )
    assert "MatMul" in types and "UnsortedSegmentSum" in types
    assert not types & _PYTHON_OPS
