"""Perturbation balls of the L-inf and L2 norms: steps, projections, random points."""

import math

import keras
from keras import ops

NORMS = ("linf", "l2")
# Per-example norms below this are treated as zero (no direction).
_TINY = 1e-12


def check_norm(norm, owner):
    if norm not in NORMS:
        raise ValueError(f"{owner}: `norm` must be one of {NORMS}; received {norm!r}.")
    return norm


def l2_norm(x):
    """Per-example L2 norm, shaped to broadcast against `x`."""
    axes = tuple(range(1, len(x.shape)))
    return ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True)), _TINY)


def ascent_direction(gradient, norm):
    """The unit-norm step direction of steepest ascent: sign, or gradient / ||gradient||."""
    if norm == "linf":
        return ops.sign(gradient)
    return gradient / l2_norm(gradient)


def project(x_adv, x, epsilon, norm, lo, hi):
    """`x_adv` moved into the epsilon-ball around `x` and into [lo, hi]."""
    delta = x_adv - x
    if norm == "linf":
        delta = ops.clip(delta, -epsilon, epsilon)
    else:
        delta = delta * ops.minimum(1.0, epsilon / l2_norm(delta))
    return ops.clip(x + delta, lo, hi)


def random_point(shape, epsilon, norm, seed_generator):
    """Perturbations drawn uniformly from the epsilon-ball, one per example."""
    if norm == "linf":
        return keras.random.uniform(shape, -epsilon, epsilon, seed=seed_generator)
    # Uniform in the L2 ball: a Gaussian direction, radius eps * U^(1/d).
    direction = keras.random.normal(shape, seed=seed_generator)
    dimension = math.prod(shape[1:])
    radius = epsilon * keras.random.uniform(
        (shape[0],) + (1,) * (len(shape) - 1), seed=seed_generator
    ) ** (1.0 / dimension)
    return direction / l2_norm(direction) * radius


def per_example(mask, x):
    """A boolean vector of examples, shaped to broadcast against `x`."""
    return ops.reshape(mask, (-1,) + (1,) * (len(x.shape) - 1))
