"""A small limited-memory BFGS minimiser for the convex calibration fits.

Vector and matrix scaling minimise a smooth convex loss (multinomial NLL of
an affine map of the logits, plus an L2 penalty) with at most K * (K + 1)
parameters. Solving it to a gradient tolerance on the host in float64 gives
the exact optimum without adding SciPy as a dependency.
"""

import numpy as np

_ARMIJO = 1e-4
_MIN_STEP = 1e-20


def minimize(loss_and_gradient, x0, *, max_iterations=1000, tolerance=1e-8, memory=10):
    """Minimises a smooth function with L-BFGS and a backtracking line search.

    Args:
        loss_and_gradient: callable mapping a float64 vector to
            `(loss, gradient)`.
        x0: starting point, a 1-D array.
        max_iterations: maximum number of iterations.
        tolerance: stop once the largest gradient entry is below this.
        memory: number of curvature pairs kept.

    Returns:
        `(x, loss, gradient, iterations)` at the solution.
    """
    x = np.asarray(x0, dtype=np.float64).copy()
    loss, gradient = loss_and_gradient(x)
    steps, changes = [], []
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        if np.max(np.abs(gradient)) < tolerance:
            break
        direction = -_inverse_hessian_product(gradient, steps, changes)
        slope = gradient @ direction
        if slope >= 0:
            # Curvature memory went stale: restart from steepest descent.
            steps, changes = [], []
            direction, slope = -gradient, -(gradient @ gradient)
        step = 1.0
        while True:
            candidate = x + step * direction
            new_loss, new_gradient = loss_and_gradient(candidate)
            if new_loss <= loss + _ARMIJO * step * slope:
                break
            step *= 0.5
            if step < _MIN_STEP:
                return x, loss, gradient, iteration
        change = new_gradient - gradient
        if (candidate - x) @ change > 1e-12:
            steps.append(candidate - x)
            changes.append(change)
            if len(steps) > memory:
                steps.pop(0)
                changes.pop(0)
        x, loss, gradient = candidate, new_loss, new_gradient
    return x, loss, gradient, iteration


def _inverse_hessian_product(gradient, steps, changes):
    """The L-BFGS two-loop recursion."""
    q = gradient.copy()
    alphas = []
    for s, y in zip(reversed(steps), reversed(changes)):
        alpha = (s @ q) / (y @ s)
        alphas.append(alpha)
        q -= alpha * y
    if steps:
        q *= (steps[-1] @ changes[-1]) / (changes[-1] @ changes[-1])
    for (s, y), alpha in zip(zip(steps, changes), reversed(alphas)):
        beta = (y @ q) / (y @ s)
        q += (alpha - beta) * s
    return q
