"""Shared test fixtures: the real reference data and backend facts."""

import os
import pathlib

import keras
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_DIR = pathlib.Path(os.environ.get("KERAS_RELIABILITY_DATA", _DEFAULT_DATA))

BACKEND = keras.backend.backend()

# Distribution tests need two devices. On TensorFlow the CPU is split into
# two logical devices before TensorFlow initialises its runtime (one device
# is still the default, so other tests are unaffected).
if BACKEND == "tensorflow":
    import tensorflow as tf

    try:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * 2,
        )
    except RuntimeError:  # already initialised (e.g. by a plugin): tests skip
        pass


def data_path(*parts):
    """Path into the shared reference data; skips the test when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"reference data {path} is absent (set KERAS_RELIABILITY_DATA to "
            "the shared/data folder to run this test)"
        )
    return path


@pytest.fixture
def densenet40_logits():
    """Kull et al.'s DenseNet-40 CIFAR-10 logits: (val, y_val, test, y_test)."""
    import pickle

    path = data_path("markus93_densenet40_c10_logits", "probs_densenet40_c10_logits.p")
    with open(path, "rb") as file:
        (val, y_val), (test, y_test) = pickle.load(file, encoding="latin1")
    return val, y_val.ravel(), test, y_test.ravel()


def _read_idx(folder, name, offset):
    import gzip

    import numpy as np

    with gzip.open(data_path(folder, name)) as file:
        return np.frombuffer(file.read(), np.uint8, offset=offset)


def idx_images(folder):
    """`(x, y)` of an IDX test set in ../shared/data: x (N, 28, 28, 1) in [0, 1]."""
    x = _read_idx(folder, "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    y = _read_idx(folder, "t10k-labels-idx1-ubyte.gz", 8)
    return (x / 255.0).astype("float32"), y.astype("int32")


@pytest.fixture(scope="session")
def mnist_test_images():
    """The 10,000 MNIST test images, pixels / 255, shape (N, 28, 28, 1)."""
    return idx_images("mnist_test_idx")


@pytest.fixture(scope="session")
def notmnist_test_images():
    """10,000 notMNIST letters (an OOD set for MNIST), pixels / 255."""
    return idx_images("notmnist_test_idx")


@pytest.fixture(scope="session")
def wong2020_mnist_model():
    """Builder of Wong et al. (2020)'s adversarially trained MNIST CNNs."""
    return _wong2020_mnist_model


def _wong2020_mnist_model(name):
    """Wong et al. (2020)'s adversarially trained MNIST CNN as a Keras model.

    `name` is "fgsm" or "pgd_madry". The PyTorch weights are converted as the
    data README says: OIHW -> HWIO kernels, explicit padding 1, and the dense
    layer reading the feature map in PyTorch's NCHW flatten order. Outputs
    logits.
    """
    import numpy as np

    weights = np.load(data_path("wong2020_mnist_models", f"{name}_weights.npz"))
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.ZeroPadding2D(1),
            keras.layers.Conv2D(16, 4, strides=2, activation="relu"),
            keras.layers.ZeroPadding2D(1),
            keras.layers.Conv2D(32, 4, strides=2, activation="relu"),
            keras.layers.Permute((3, 1, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10),
        ],
        name=f"wong2020_{name}",
    )
    conv1, conv2, dense1, dense2 = (layer for layer in model.layers if layer.weights)
    conv1.set_weights([weights["0_weight"].transpose(2, 3, 1, 0), weights["0_bias"]])
    conv2.set_weights([weights["2_weight"].transpose(2, 3, 1, 0), weights["2_bias"]])
    dense1.set_weights([weights["5_weight"].T, weights["5_bias"]])
    dense2.set_weights([weights["7_weight"].T, weights["7_bias"]])
    return model
