"""Shared test fixtures: the real reference data and backend facts."""

import functools
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Distribution tests need two devices. On JAX the host platform is split in
# two before XLA initialises (computations still default to the first).
if os.environ.get("KERAS_BACKEND") == "jax" and "device_count" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()

import keras  # noqa: E402
import pytest  # noqa: E402

_DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
DATA_DIR = pathlib.Path(os.environ.get("KERAS_RELIABILITY_DATA", _DEFAULT_DATA))

BACKEND = keras.backend.backend()

# On TensorFlow the CPU is split into two logical devices before TensorFlow
# initialises its runtime (one device is still the default, so other tests
# are unaffected).
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


@pytest.fixture(scope="session")
def shuffled_digits():
    """scikit-learn's digits as flat 64-vectors in [0, 1], shuffled (seed 0): `(x, y)`."""
    datasets = pytest.importorskip("sklearn.datasets")
    import numpy as np

    data = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    return (data.data[order] / 16.0).astype("float32"), data.target[order].astype("int32")


@pytest.fixture
def densenet40_logits():
    """Kull et al.'s DenseNet-40 CIFAR-10 logits: (val, y_val, test, y_test)."""
    import pickle

    path = data_path("markus93_densenet40_c10_logits", "probs_densenet40_c10_logits.p")
    with open(path, "rb") as file:
        (val, y_val), (test, y_test) = pickle.load(file, encoding="latin1")
    return val, y_val.ravel(), test, y_test.ravel()


@functools.lru_cache(maxsize=None)
def _mnist_data():
    """examples/mnist_data.py, the loaders the examples use (one copy of them)."""
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "mnist_data.py"
    spec = importlib.util.spec_from_file_location("mnist_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def idx_images(folder):
    """`(x, y)` of an IDX test set in ../shared/data: x (N, 28, 28, 1) in [0, 1]."""
    return _mnist_data().load_idx(data_path(folder))


@pytest.fixture(scope="session")
def mnist_test_images():
    """The 10,000 MNIST test images, pixels / 255, shape (N, 28, 28, 1)."""
    return idx_images("mnist_test_idx")


@pytest.fixture(scope="session")
def notmnist_test_images():
    """10,000 notMNIST letters (an OOD set for MNIST), pixels / 255."""
    return idx_images("notmnist_test_idx")


@pytest.fixture(scope="session")
def small_mnist_cnn():
    """Builder of the examples' compiled MNIST CNN: `small_mnist_cnn(seed, dropout=None)`."""
    return _mnist_data().small_cnn


@pytest.fixture(scope="session")
def wong2020_mnist_model():
    """Builder of Wong et al. (2020)'s adversarially trained MNIST CNNs."""
    return _wong2020_mnist_model


def _wong2020_mnist_model(name):
    """Wong et al. (2020)'s adversarially trained MNIST CNN as a Keras model.

    `name` is "fgsm" or "pgd_madry"; logits out (see examples/mnist_data.py).
    """
    return _mnist_data().wong2020_model(data_path("wong2020_mnist_models"), name)
