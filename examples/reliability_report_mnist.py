"""Every reliability callback in one `model.fit`, and the HTML report of the run.

Trains a small CNN with MC dropout on 8,000 MNIST test images with
`CalibrationCallback` (ECE and friends, temperature), `OODMonitorCallback`
(MNIST against notMNIST letters), `AdversarialTrainingCallback` (FGSM from a
random start, Wong et al. 2020, with clean and PGD accuracy on held-out
digits) and `ReliabilityReport`, which rewrites one self-contained HTML page
at every epoch end: curves of every logged key, the reliability diagram, OOD
histograms and ROC curves, accuracy against the PGD budget, and the most and
least certain digits and letters with their Monte-Carlo intervals. Open
`<out>/reliability_report.html` in a browser.

Data: the MNIST and notMNIST IDX test files of the `shared/data` folder
(`--data`).

    python examples/reliability_report_mnist.py --epochs 3 --out artifacts/report

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=0.1, help="training budget")
    parser.add_argument("--num-train", type=int, default=8000, help="of the first 8,000 digits")
    parser.add_argument("--num-val", type=int, default=2000, help="of the last 2,000 digits")
    parser.add_argument("--num-ood", type=int, default=2000, help="notMNIST letters")
    parser.add_argument("--num-eval", type=int, default=500, help="attacked digits")
    parser.add_argument("--pgd-steps", type=int, default=10)
    parser.add_argument("--mc-samples", type=int, default=32)
    parser.add_argument("--out", default="artifacts/report")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few seconds on a subset (CI)")
    args = parser.parse_args()
    if args.quick:  # new defaults; flags given explicitly still win
        parser.set_defaults(
            epochs=1,
            num_train=1000,
            num_val=300,
            num_ood=300,
            num_eval=50,
            pgd_steps=2,
            mc_samples=4,
        )
        args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    x, y = load_idx(args.data / "mnist_test_idx")
    letters, _ = load_idx(args.data / "notmnist_test_idx")
    letters = letters[: args.num_ood]
    x_train, y_train = x[:8000][: args.num_train], y[:8000][: args.num_train]
    x_val, y_val = x[8000:][: args.num_val], y[8000:][: args.num_val]

    # MC dropout stays on at inference: Monte-Carlo uncertainty.
    model = small_cnn(args.seed, dropout=kr.layers.MCDropout(0.3))
    calibration = kr.callbacks.CalibrationCallback((x_val, y_val), fit_temperature=True)
    ood = kr.callbacks.OODMonitorCallback(
        x_val, ood_data={"notmnist": letters}, scorers=("msp", "energy")
    )
    adversarial = kr.callbacks.AdversarialTrainingCallback(
        "fgsm_rs",
        epsilon=args.epsilon,
        input_range=(0, 1),
        eval_data=(x_val[: args.num_eval], y_val[: args.num_eval]),
        eval_attacks=(
            kr.attacks.PGD(args.epsilon, steps=args.pgd_steps, input_range=(0, 1), seed=args.seed),
        ),
        seed=args.seed,
    )
    # Half digits, half letters: the least certain inputs should be letters.
    uncertainty_data = np.concatenate([x_val[:100], letters[:100]])
    report = kr.report.ReliabilityReport(
        args.out,
        callbacks=[calibration, ood, adversarial],
        uncertainty_data=uncertainty_data,
        num_samples=args.mc_samples,
        title="MNIST CNN: reliability report",
    )
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
    history = model.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=128,
        verbose=0,
        # The report comes last: it reads what the others logged.
        callbacks=[
            calibration,
            ood,
            adversarial,
            keras.callbacks.CSVLogger(os.path.join(args.out, "history.csv")),
            report,
        ],
    )

    print(f"\nAfter {args.epochs} epoch(s):")
    for key in (
        "val_ece",
        "val_ece_after_ts",
        "val_temperature",
        "ood_msp_auroc",
        "ood_energy_auroc",
        "adv_clean_accuracy",
        "adv_pgd_accuracy",
    ):
        print(f"{key}: {history.history[key][-1]:.4f}")
    result = kr.uncertainty.predict_with_uncertainty(
        model, uncertainty_data, num_samples=args.mc_samples
    )
    digits, ood_letters = result.epistemic[:100], result.epistemic[100:]
    print(f"mutual information, digits: {digits.mean():.4f}")
    print(f"mutual information, letters: {ood_letters.mean():.4f}")
    print(f"report: {report.path}")


if __name__ == "__main__":
    main()
