"""Runs every benchmark in one process and prints a Markdown table.

    KERAS_BACKEND=tensorflow python benchmarks/run.py --out results.json

Speed is a ratio of two measurements taken side by side in the same run
(ours vs the reference), never an absolute time compared across machines.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

import calibration_benchmarks  # noqa: E402

SUITES = (calibration_benchmarks,)


def _device():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return str(jax.devices()[0])
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name if gpus else "cpu"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args()

    header = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": keras.backend.backend(),
        "device": _device(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "keras": keras.__version__,
    }
    results = []
    for suite in SUITES:
        for benchmark in suite.BENCHMARKS:
            kwargs = {"repeats": 2} if args.quick else {}
            if args.quick and "num_examples" in benchmark.__code__.co_varnames:
                kwargs["num_examples"] = 2_000
            result = benchmark(**kwargs)
            if result is not None:
                results.append(result)

    print(f"{header['date']} | backend {header['backend']} | device {header['device']} | {header['machine']}")
    print("| measurement | shape | reference | ours (s) | reference (s) | ratio | goal | met |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['shape']} | {r['reference']} | {r['ours_s']:.4f} | "
            f"{r['reference_s']:.4f} | {r['ratio']:.3f} | {r['goal']} | "
            f"{'yes' if r['met'] else 'no'} |"
        )
    for r in results:
        if "metrics_only_s" in r:
            print(f"- {r['name']}: the metrics alone take {r['metrics_only_s']:.4f} s")
        if "accuracy_metric_ratio" in r:
            print(
                f"- {r['name']}: Keras' sparse_categorical_accuracy in compile "
                f"gives ratio {r['accuracy_metric_ratio']:.3f} in the same run"
            )
        if "without_validation_s" in r:
            print(
                f"- {r['name']}: without its input checks ours takes "
                f"{r['without_validation_s']:.4f} s"
            )
        if "agreement" in r:
            print(f"- {r['name']}: |ours - reference| = {r['agreement']:.2e}")
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"header": header, "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
