"""Calibration diagnostics while training a digit classifier.

Trains a small network on scikit-learn's handwritten digits (1,797 8x8
images that ship with scikit-learn) with `CalibrationCallback`, prints the
calibration metrics of every epoch, writes reliability diagrams, then fits a
temperature on the validation split and reports the test ECE before and
after.

    python examples/calibrate_digits.py --epochs 30 --out artifacts/digits

`--quick` trains two epochs and plots both (for CI).
"""

import argparse
import os

import keras
import numpy as np

import keras_reliability as kr
from digits_data import mlp
from digits_data import shuffled_digits


def load_splits(seed):
    x, y = shuffled_digits(seed)
    # 60% train, 20% validation (callback + temperature), 20% test.
    a, b = int(0.6 * len(x)), int(0.8 * len(x))
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


class PrintCalibration(keras.callbacks.Callback):
    """Prints one line of calibration diagnostics per epoch."""

    def on_epoch_end(self, epoch, logs=None):
        print(
            f"epoch {epoch + 1:3d}  val_acc {logs['val_accuracy']:.4f}  "
            f"ECE {logs['val_ece']:.4f}  MCE {logs['val_mce']:.4f}  "
            f"adaECE {logs['val_adaptive_ece']:.4f}  NLL {logs['val_nll']:.4f}  "
            f"Brier {logs['val_brier']:.5f}  T {logs['val_temperature']:.3f}  "
            f"ECE after TS {logs['val_ece_after_ts']:.4f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", default="artifacts/digits")
    parser.add_argument("--plot-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few seconds' training (CI)")
    args = parser.parse_args()
    if args.quick:  # new defaults; flags given explicitly still win
        parser.set_defaults(epochs=2, plot_every=1)
        args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = load_splits(args.seed)
    model = mlp(args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    calibration = kr.callbacks.CalibrationCallback(
        (x_val, y_val),
        fit_temperature=True,
        plot_every=args.plot_every,
        log_dir=args.out,
    )
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=32,
        verbose=0,
        callbacks=[
            calibration,
            PrintCalibration(),
            keras.callbacks.CSVLogger(os.path.join(args.out, "history.csv")),
        ],
    )

    test_logits = model.predict(x_test, verbose=0)
    calibrated = kr.calibration.TemperatureScaling.calibrate(model, x_val, y_val)
    test_calibrated = calibrated.predict(x_test, verbose=0)
    temperature = calibrated.layers[-1].temperature
    before = kr.metrics.expected_calibration_error(y_test, test_logits, from_logits=True)
    after = kr.metrics.expected_calibration_error(y_test, test_calibrated, from_logits=True)
    accuracy = float(np.mean(test_logits.argmax(axis=1) == y_test))
    print(
        f"test accuracy {accuracy:.4f}  test ECE {before:.4f} -> {after:.4f} "
        f"after temperature scaling (T = {temperature:.3f})"
    )

    figure = kr.plotting.reliability_diagram(
        y_test, test_logits, from_logits=True, title="Test set, uncalibrated"
    )
    path = os.path.join(args.out, "reliability_test.png")
    with open(path, "wb") as file:
        file.write(kr.plotting.figure_to_png(figure))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
