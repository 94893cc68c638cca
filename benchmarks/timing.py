"""Timing helpers shared by the benchmark suites."""

import time

import keras
import numpy as np


def times(functions, repeats):
    """Runs the functions alternately `repeats` times; all seconds of each."""
    seconds = [[] for _ in functions]
    for _ in range(repeats):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            seconds[index].append(time.perf_counter() - start)
    return [np.asarray(s) for s in seconds]


def device_kind():
    """'gpu' or 'cpu': where Keras runs the computation on this backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return "gpu" if jax.default_backend() in ("gpu", "cuda", "rocm") else jax.default_backend()
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    return "unknown"


def row(name, shape, reference, ours, ref, goal, met, speed_up=False, **extra):
    """One result: `ratio` is ours / reference, or reference / ours for a speed-up."""
    ratio = float(np.min(ref) / np.min(ours)) if speed_up else float(np.min(ours) / np.min(ref))
    ratio_median = (
        float(np.median(ref) / np.median(ours))
        if speed_up
        else float(np.median(ours) / np.median(ref))
    )
    row = {
        "name": name,
        "backend": keras.backend.backend(),
        "device": device_kind(),
        "shape": shape,
        "reference": reference,
        "reference_s": float(np.min(ref)),
        "ours_s": float(np.min(ours)),
        "ratio": ratio,
        "ratio_median": ratio_median,
        "goal": goal,
        "met": bool(met(ratio)),
    }
    row.update(extra)
    return row
