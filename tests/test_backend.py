"""The backend-specific helpers agree with numpy on the active backend."""

import numpy as np
from keras import ops

from keras_reliability import backend


def test_backend_argmax_matches_numpy_including_ties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 7)).astype("float32")
    x[:20, 3] = x[:20, 5] = x[:20].max(axis=1) + 1.0  # ties: first index wins
    x[20, :] = 0.0
    x[20, 2] = -0.0
    result = ops.convert_to_numpy(backend.argmax(ops.convert_to_tensor(x), axis=-1))
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, np.argmax(x, axis=-1))
    assert np.all(result[:20] == 3)


def test_backend_argmax_other_axis():
    x = np.arange(12, dtype="float32").reshape(3, 4)[::-1].copy()
    result = ops.convert_to_numpy(backend.argmax(ops.convert_to_tensor(x), axis=0))
    np.testing.assert_array_equal(result, [0, 0, 0, 0])


def _dense_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])


def test_input_gradient_with_outputs_returns_the_same_pass():
    model = _dense_model()
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")

    def loss(outputs):
        return ops.sum(ops.square(outputs), axis=-1)

    gradient, outputs = backend.input_gradient_function(model, loss, with_outputs=True)(x)
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_weights())
    expected_outputs = x @ kernel + bias
    np.testing.assert_allclose(ops.convert_to_numpy(outputs), expected_outputs, rtol=1e-5)
    # d/dx sum ||x W + b||^2 = 2 (x W + b) W^T.
    expected = 2 * expected_outputs @ kernel.T
    np.testing.assert_allclose(ops.convert_to_numpy(gradient), expected, rtol=1e-4, atol=1e-6)
    only = backend.input_gradient_function(model, loss)(x)
    np.testing.assert_allclose(ops.convert_to_numpy(only), expected, rtol=1e-4, atol=1e-6)


def test_forward_function_follows_the_weights():
    model = _dense_model()
    forward = backend.forward_function(model)
    x = np.ones((2, 5), "float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(forward(x)), model.predict(x, verbose=0), rtol=1e-6
    )
    model.set_weights([w * 2 for w in model.get_weights()])
    # Weights are arguments of the compiled function, not constants.
    np.testing.assert_allclose(
        ops.convert_to_numpy(forward(x)), model.predict(x, verbose=0), rtol=1e-6
    )
