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
