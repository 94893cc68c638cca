"""MC-dropout confidence intervals on a noise input.

Trains a small network with `MCDropout` layers (dropout that stays on at
inference) on scikit-learn's handwritten digits (1,797 8x8 images that ship
with scikit-learn), then draws Monte-Carlo predictions with
`predict_with_uncertainty` for the held-out digits and for as many images of
uniform noise. Prints the test accuracy of the MC mean and, for digits and
noise, the mean predictive entropy, its epistemic part (the mutual
information between prediction and dropout mask) and the mean width of the
95% interval of the predicted class's probability; then the fraction of
noise images whose mutual information exceeds the median digit's. Draws the
uncertainty bands of the most confident digit and of a typical noise image.

    python examples/mc_dropout_noise.py --epochs 50 --out artifacts/mc_dropout

`--quick` trains a few epochs and draws 16 samples (for CI).
"""

import argparse
import os

import keras
import numpy as np

import keras_reliability as kr
from digits_data import shuffled_digits


def load_splits(seed):
    x, y = shuffled_digits(seed)
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def build_model(rate, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(256, activation="relu"),
            kr.layers.MCDropout(rate),
            keras.layers.Dense(256, activation="relu"),
            kr.layers.MCDropout(rate),
            keras.layers.Dense(10),  # logits
        ]
    )


def summary(result):
    """Mean entropy, mutual information and 95% interval width of the predicted class."""
    lower, upper = result.interval(0.95)
    rows = np.arange(len(result))
    width = upper[rows, result.predicted_class] - lower[rows, result.predicted_class]
    return {
        "entropy": result.predictive_entropy.mean(),
        "mutual information": result.epistemic.mean(),
        "95% interval width": width.mean(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.5, help="dropout rate")
    parser.add_argument("--mc-samples", type=int, default=100)
    parser.add_argument("--out", default="artifacts/mc_dropout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few seconds' training (CI)")
    args = parser.parse_args()
    if args.quick:  # new defaults; flags given explicitly still win
        parser.set_defaults(epochs=5, mc_samples=16)
        args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = load_splits(args.seed)
    noise = np.random.default_rng(args.seed).uniform(size=x_test.shape).astype("float32")
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")

    model = build_model(args.rate, args.seed)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=0)

    digits = kr.uncertainty.predict_with_uncertainty(model, x_test, num_samples=args.mc_samples)
    noisy = kr.uncertainty.predict_with_uncertainty(model, noise, num_samples=args.mc_samples)
    print(f"Monte-Carlo samples: {args.mc_samples}")
    print(f"MC mean test accuracy: {np.mean(digits.predicted_class == y_test):.4f}")
    for name, result in (("digits", digits), ("noise", noisy)):
        for key, value in summary(result).items():
            print(f"{name} {key}: {value:.4f}")
    above = np.mean(noisy.epistemic > np.median(digits.epistemic))
    print(f"noise above the median digit's mutual information: {above:.4f}")

    # The most confident correct digit, and the noise image of median
    # mutual information (a typical one, not the most striking).
    correct = np.flatnonzero(digits.predicted_class == y_test)
    digit = int(correct[np.argmax(digits.confidence[correct])])
    typical = int(np.argsort(noisy.epistemic)[len(noisy) // 2])
    panels = (
        ("digit", f"Test digit {digit} (a {y_test[digit]})", digits, digit),
        ("noise", f"Noise image {typical}", noisy, typical),
    )
    for name, label, result, index in panels:
        title = (
            f"{label}: entropy {result.predictive_entropy[index]:.3f}, "
            f"MI {result.epistemic[index]:.3f} nats"
        )
        figure = kr.plotting.uncertainty_bands(result, index, title=title)
        path = kr.plotting.save_figure(figure, os.path.join(args.out, f"bands_{name}.png"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
