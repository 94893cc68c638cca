"""Runs every benchmark in one process and prints a Markdown table.

    KERAS_BACKEND=tensorflow python benchmarks/run.py --out results.json
    KERAS_BACKEND=jax python benchmarks/run.py --only bayesian --out results.json
    KERAS_BACKEND=torch python benchmarks/run.py --out r.json --markdown r.md

`--only` takes suite names (calibration, bayesian, ood, adversarial, memory) or benchmark function
names, comma-separated. Nothing imports TensorFlow unless the backend is
TensorFlow, so the JAX and PyTorch runs work without it installed.

Speed is a ratio of two measurements taken side by side in the same run
(ours vs the reference), never an absolute time compared across machines.
"""

import argparse
import inspect
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402

import adversarial_benchmarks  # noqa: E402
import bayesian_benchmarks  # noqa: E402
import calibration_benchmarks  # noqa: E402
import memory_benchmarks  # noqa: E402
import ood_benchmarks  # noqa: E402
import timing  # noqa: E402

SUITES = {
    "calibration": calibration_benchmarks,
    "bayesian": bayesian_benchmarks,
    "ood": ood_benchmarks,
    "adversarial": adversarial_benchmarks,
    "memory": memory_benchmarks,
}


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


def _load_average():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on every platform
        return None


def _select(only, parser):
    """The benchmark functions named by `--only` (all of them by default)."""
    everything = [b for suite in SUITES.values() for b in suite.BENCHMARKS]
    if not only:
        return everything
    selected = []
    for name in (n.strip() for n in only.split(",") if n.strip()):
        if name in SUITES:
            matches = list(SUITES[name].BENCHMARKS)
        else:
            matches = [b for b in everything if b.__name__ == name]
        if not matches:
            names = ", ".join(list(SUITES) + [b.__name__ for b in everything])
            parser.error(f"--only: unknown benchmark {name!r}; choose from {names}")
        selected.extend(b for b in matches if b not in selected)
    return selected


def markdown_table(header, results):
    """The results as a Markdown table, under a line naming the run."""
    lines = [
        f"{header['date']} | Keras {header['keras']}, backend {header['backend']} | "
        f"device {header['device']} | {header['machine']}",
        "",
        "| measurement | backend | device | shape | reference | ours | reference "
        "| ratio | goal | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        unit = r.get("unit", "s")
        lines.append(
            f"| {r['name']} | {r['backend']} | {r['device']} | {r['shape']} | {r['reference']} "
            f"| {r['ours_s']:.4g} {unit} | {r['reference_s']:.4g} {unit} | {r['ratio']:.3f} "
            f"| {r['goal']} | {'yes' if r['met'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--markdown", help="write the Markdown table here")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument(
        "--num-examples",
        type=int,
        help="examples per benchmark that takes `num_examples` (default: each one's own)",
    )
    parser.add_argument(
        "--only",
        help="comma-separated suites (" + ", ".join(SUITES) + ") or benchmark names",
    )
    args = parser.parse_args()
    selected = _select(args.only, parser)

    header = {
        "date": time.strftime("%Y-%m-%d"),
        "backend": keras.backend.backend(),
        "device": _device(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "keras": keras.__version__,
        # Other processes on a shared machine add time: the 1-minute load
        # average before and after the run says how busy it was.
        "load_average_before": _load_average(),
    }
    results = []
    start = time.perf_counter()
    for benchmark in selected:
        kwargs = {}
        parameters = inspect.signature(benchmark).parameters
        if args.quick and "repeats" in parameters:
            kwargs["repeats"] = 2
        if "num_examples" in parameters:
            if args.num_examples:
                kwargs["num_examples"] = args.num_examples
            elif args.quick:
                kwargs["num_examples"] = min(2_000, parameters["num_examples"].default)
        result = benchmark(**kwargs)
        # A benchmark returns one result, several (a list), or None (skipped).
        if isinstance(result, dict):
            results.append(result)
        elif result is not None:
            results.extend(result)
    header["run_s"] = time.perf_counter() - start
    for r in results:
        r.setdefault("backend", header["backend"])
        r.setdefault("device", timing.device_kind())
    header["load_average_after"] = _load_average()

    table = markdown_table(header, results)
    print(table, end="")
    if args.markdown:
        with open(args.markdown, "w") as file:
            file.write(table)
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
        if "ratio_median" in r:
            print(f"- {r['name']}: ratio of the medians {r['ratio_median']:.3f}")
    printed = set()
    for r in results:
        for note in r.get("notes", ()):
            # Rows measured together share their notes: print each once.
            if note not in printed:
                printed.add(note)
                print(f"- {r['name']}: {note}")
    print(
        f"- total run time {header['run_s']:.1f} s; 1-minute load average "
        f"{header['load_average_before']} before, {header['load_average_after']} after "
        f"({os.cpu_count()} CPUs)"
    )
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"header": header, "results": results}, file, indent=2)


if __name__ == "__main__":
    main()
