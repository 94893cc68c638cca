"""The MNIST-family data of the `shared/data` folder, and the small CNN the examples train."""

import gzip
import pathlib

import keras
import numpy as np

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def require(folder):
    """`folder` as a Path; exits with a message naming it when it is missing."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise SystemExit(
            f"{folder} not found: pass --data <the shared/data folder> (its README lists "
            "the MNIST, notMNIST and released-model folders the examples read)."
        )
    return folder


def load_idx(folder):
    """`(x, y)` of an IDX test set: x (N, 28, 28, 1) float32 in [0, 1], y int32."""
    folder = require(folder)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as file:
        x = np.frombuffer(file.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as file:
        y = np.frombuffer(file.read(), np.uint8, offset=8)
    return (x / 255.0).astype("float32"), y.astype("int32")


def wong2020_model(folder, name):
    """Wong, Rice & Kolter (2020)'s adversarially trained MNIST CNN, in Keras.

    `name` is "fgsm" (FGSM-RS training) or "pgd_madry" (PGD training). The
    PyTorch weights of `folder/<name>_weights.npz` are converted as the data
    README says: OIHW -> HWIO kernels, explicit padding 1, and the dense
    layer reading the feature map in PyTorch's NCHW flatten order. Outputs
    logits.
    """
    weights = np.load(require(folder) / f"{name}_weights.npz")
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


def small_cnn(seed, dropout=None):
    """The examples' MNIST CNN, compiled: two conv-pool blocks, 128 features, 10 logits.

    `dropout` is the layer after flattening, `keras.layers.Dropout(0.3)` by
    default; `keras_reliability.layers.MCDropout(0.3)` keeps it on at
    inference for Monte-Carlo uncertainty. The feature layer is named
    "features" for the feature-based OOD scorers.
    """
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3) if dropout is None else dropout,
            keras.layers.Dense(128, activation="relu", name="features"),
            keras.layers.Dense(10),  # logits
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
