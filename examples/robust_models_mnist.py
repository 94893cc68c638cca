"""Evaluate released adversarially trained MNIST models under every attack.

Loads the two CNNs of Wong, Rice & Kolter (2020) ("Fast is better than
free"): one trained with FGSM from a random start, one with Madry et al.'s
PGD. Prints their clean accuracy and their accuracy under each attack at the
L-inf budget epsilon = 0.3 on the MNIST test images, then an accuracy-vs-
epsilon curve under PGD. The data README gives the reference figures:
clean 98.50% / 98.99%, FGSM 94.87% / 94.49%, PGD (50 steps of 0.01, 10
restarts) 88.06-88.16% / 88.92%.

Data: the `shared/data` folder (`--data`).

    python examples/robust_models_mnist.py --attacks fgsm pgd apgd square --limit 1000

`--quick` attacks 100 images with one PGD restart and 50 Square queries (for
CI).
"""

import argparse
import json
import os
import pathlib
import time

import numpy as np

import keras_reliability as kr
from mnist_data import DEFAULT_DATA
from mnist_data import load_idx
from mnist_data import wong2020_model

MODELS = ("fgsm", "pgd_madry")
EPSILON = 0.3
CURVE_EPSILONS = (0.0, 0.1, 0.2, 0.3, 0.4)


def attacks(restarts, square_queries, seed):
    """The attacks at epsilon 0.3 with the settings of the authors' evaluation."""
    common = dict(epsilon=EPSILON, input_range=(0, 1), seed=seed, batch_size=1000)
    return {
        "fgsm": kr.attacks.FGSM(**common),
        "pgd": kr.attacks.PGD(steps=50, step_size=0.01, restarts=restarts, **common),
        # AutoAttack's settings: 100 steps, 5000 queries with p_init 0.8.
        "apgd": kr.attacks.APGD(steps=100, restarts=1, **common),
        "square": kr.attacks.SquareAttack(queries=square_queries, p_init=0.8, **common),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--attacks", nargs="+", default=["fgsm", "pgd", "apgd", "square"])
    parser.add_argument("--restarts", type=int, default=10, help="PGD restarts")
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--limit", type=int, default=None, help="first N test images")
    parser.add_argument("--curve", action="store_true", help="also draw accuracy vs epsilon")
    parser.add_argument("--out", default="artifacts/robust_models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few seconds on a subset (CI)")
    args = parser.parse_args()
    if args.quick:  # new defaults; flags given explicitly still win
        parser.set_defaults(limit=100, restarts=1, square_queries=50)
        args = parser.parse_args()

    x, y = load_idx(args.data / "mnist_test_idx")
    x, y = x[: args.limit], y[: args.limit]
    os.makedirs(args.out, exist_ok=True)
    chosen = {
        name: attack
        for name, attack in attacks(args.restarts, args.square_queries, args.seed).items()
        if name in args.attacks
    }
    results = {}
    for model_name in MODELS:
        model = wong2020_model(args.data / "wong2020_mnist_models", model_name)
        row = {"clean": float(np.mean(model.predict(x, verbose=0).argmax(1) == y))}
        for attack_name, attack in chosen.items():
            start = time.perf_counter()
            adversarial = attack.generate(model, x, y)
            row[attack_name] = float(np.mean(model.predict(adversarial, verbose=0).argmax(1) == y))
            row[f"{attack_name}_seconds"] = time.perf_counter() - start
            print(
                f"{model_name:9s} {attack_name:6s} {row[attack_name]:.4f} "
                f"({row[f'{attack_name}_seconds']:.0f} s)",
                flush=True,
            )
        results[model_name] = row

    columns = ["clean", *chosen]
    print(f"\nAccuracy on {len(x)} MNIST test images, L-inf epsilon = {EPSILON}:")
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for model_name, row in results.items():
        print(f"| {model_name} | " + " | ".join(f"{100 * row[c]:.2f}%" for c in columns) + " |")
    with open(os.path.join(args.out, "accuracy.json"), "w") as file:
        json.dump({"num_images": len(x), "epsilon": EPSILON, "results": results}, file, indent=2)

    if args.curve:
        attack = kr.attacks.PGD(epsilon=EPSILON, steps=20, input_range=(0, 1), seed=args.seed)
        curves = {
            name: kr.attacks.robust_accuracy(
                wong2020_model(args.data / "wong2020_mnist_models", name),
                x,
                y,
                attack,
                CURVE_EPSILONS,
            )
            for name in MODELS
        }
        figure = kr.plotting.robustness_curve(curves, title="PGD-20 on MNIST")
        path = kr.plotting.save_figure(figure, os.path.join(args.out, "robustness_curve.png"))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
