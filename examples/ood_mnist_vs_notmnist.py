"""Out-of-distribution detection: MNIST digits (in) against notMNIST letters (out).

A digit classifier calls a letter a digit with high confidence. This script
trains a small CNN on 8,000 MNIST test images with `OODMonitorCallback`
watching how well its scores separate held-out digits from notMNIST letters
every epoch, then prints the detection table of every built-in scorer on the
2,000 held-out digits against the 10,000 letters, and writes score
histograms and ROC curves.

Data: the MNIST and notMNIST IDX test files of the `shared/data` folder
(`--data`). Hendrycks & Gimpel (2017) report an MSP AUROC of 85% for
MNIST vs notMNIST.

    python examples/ood_mnist_vs_notmnist.py --epochs 3 --out artifacts/ood

`--quick` runs every step on a few hundred images in one epoch (for CI).
"""

import argparse
import os
import pathlib

import keras
import numpy as np

import keras_reliability as kr
from mnist_data import DEFAULT_DATA
from mnist_data import load_idx
from mnist_data import small_cnn


class PrintOOD(keras.callbacks.Callback):
    """Prints the per-epoch AUROCs that OODMonitorCallback logged."""

    def __init__(self, scorers):
        super().__init__()
        self.scorers = scorers

    def on_epoch_end(self, epoch, logs=None):
        aurocs = "  ".join(f"{s} {logs[f'ood_{s}_auroc']:.4f}" for s in self.scorers)
        print(f"epoch {epoch + 1}  accuracy {logs['accuracy']:.4f}  AUROC: {aurocs}")


def scorers(num_samples):
    return {
        "msp": kr.ood.MaxSoftmax(),
        "maxlogit": kr.ood.MaxLogit(),
        "energy": kr.ood.Energy(),
        "entropy": kr.ood.Entropy(),
        "odin": kr.ood.ODIN(temperature=1000.0, epsilon=0.0014),
        "mahalanobis": kr.ood.Mahalanobis(),
        "knn": kr.ood.KNN(k=50),
        "vim": kr.ood.ViM(),
        "react": kr.ood.ReAct(percentile=90),
        "mutual_information": kr.ood.MutualInformation(num_samples=num_samples),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="artifacts/ood")
    parser.add_argument("--num-ood", type=int, default=10000, help="notMNIST images scored")
    parser.add_argument("--num-train", type=int, default=8000, help="of the first 8,000 digits")
    parser.add_argument("--num-test", type=int, default=2000, help="of the last 2,000 digits")
    parser.add_argument("--mc-samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few seconds on a subset (CI)")
    args = parser.parse_args()
    if args.quick:  # new defaults; flags given explicitly still win
        parser.set_defaults(epochs=1, num_ood=1000, num_train=1000, num_test=500, mc_samples=4)
        args = parser.parse_args()

    x, y = load_idx(args.data / "mnist_test_idx")
    letters, _ = load_idx(args.data / "notmnist_test_idx")
    letters = letters[: args.num_ood]
    x_train, y_train = x[:8000][: args.num_train], y[:8000][: args.num_train]
    x_test, y_test = x[8000:][: args.num_test], y[8000:][: args.num_test]
    os.makedirs(args.out, exist_ok=True)

    model = small_cnn(args.seed)
    monitored = ("msp", "energy", "mahalanobis")
    monitor = kr.callbacks.OODMonitorCallback(
        x_test,
        ood_data={"notmnist": letters[:2000]},
        scorers=monitored,
        fit_data=(x_train[:4000], y_train[:4000]),
        plot_every=args.epochs,
        log_dir=args.out,
    )
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=128,
        verbose=0,
        callbacks=[
            monitor,
            PrintOOD(monitored),
            keras.callbacks.CSVLogger(os.path.join(args.out, "history.csv")),
        ],
    )
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))
    print(f"test accuracy {accuracy:.4f}")

    # Mutual information needs a model that samples at inference.
    mc_model = kr.layers.bayesianize(model, method="mc_dropout")
    rows, curves = {}, {}
    for name, scorer in scorers(args.mc_samples).items():
        target = mc_model if name == "mutual_information" else model
        scorer.fit(target, x_train, y_train)
        scores_in, scores_out = scorer.score(target, x_test), scorer.score(target, letters)
        rows[name] = kr.metrics.evaluate_ood(scores_in, scores_out)
        curves[name] = (scores_in, scores_out)

    print(f"\nMNIST test digits ({len(x_test)}) vs notMNIST letters ({len(letters)}):")
    print("| scorer | AUROC | AUPR-in | AUPR-out | FPR@95TPR |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['auroc']:.4f} | {row['aupr_in']:.4f} | "
            f"{row['aupr_out']:.4f} | {row['fpr95']:.4f} |"
        )

    figure = kr.plotting.ood_roc_curves(curves, title="MNIST vs notMNIST")
    kr.plotting.save_figure(figure, os.path.join(args.out, "roc_curves.png"))
    for name in ("msp", "vim"):
        figure = kr.plotting.ood_score_histogram(*curves[name], name=name)
        kr.plotting.save_figure(figure, os.path.join(args.out, f"histogram_{name}.png"))
    print(f"wrote plots to {args.out}")


if __name__ == "__main__":
    main()
