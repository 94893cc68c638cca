"""APGD: step-size-free PGD with momentum and checkpointed step halving."""

from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.attack import DEFAULT_EPSILON
from keras_reliability.attacks.attack import Attack
from keras_reliability.attacks.attack import register_attack
from keras_reliability.attacks.norms import ascent_direction
from keras_reliability.attacks.norms import check_norm
from keras_reliability.attacks.norms import per_example
from keras_reliability.attacks.norms import project
from keras_reliability.attacks.norms import random_point
from keras_reliability.backend import cross_entropy

# Croce & Hein's constants: momentum, and the checkpoint schedule as
# fractions of the iterations (first interval, per-check shrink, minimum).
_MOMENTUM = 0.75
_FIRST_INTERVAL = 0.22
_INTERVAL_SHRINK = 0.03
_MIN_INTERVAL = 0.06


def checkpoints(steps):
    """APGD's step-size checkpoints: {steps taken: length of the interval closed}.

    For 100 steps: after 22, 41, 57, 70, 80, 87, 93 and 99 steps.
    """
    interval = max(int(_FIRST_INTERVAL * steps), 1)
    shrink = max(int(_INTERVAL_SHRINK * steps), 1)
    minimum = max(int(_MIN_INTERVAL * steps), 1)
    schedule, total = {}, interval
    while total <= steps:
        schedule[total] = interval
        interval = max(interval - shrink, minimum)
        total += interval
    return schedule


@register_attack("apgd")
class APGD(Attack):
    """Auto-PGD on the cross-entropy (APGD-CE), in an L-inf or L2 ball.

    PGD without a step size to tune: the step starts at `2 * epsilon`, each
    update adds momentum (0.75) to the projected gradient step, and at
    checkpoints (after 22% of the steps, then at shrinking intervals) the
    step of an example is halved, and the example restarts from its best
    point so far, when its loss rose in at most `rho` of the steps since the
    last checkpoint or its best loss did not improve after an unhalved
    interval. Per example the result is a misclassified point if one was
    found, else the point of highest loss; over `restarts` runs from random
    starts, the worst case.

    Args:
        epsilon: budget, >= 0, in the chosen norm.
        steps: gradient steps per run, >= 1 (100 in AutoAttack).
        norm: `"linf"` or `"l2"`.
        rho: fraction in (0, 1] of steps with a loss increase below which
            the step is halved (0.75 in the paper).
        restarts: number of runs, >= 1.
        random_start: start each run at a random point of the ball (as the
            reference implementation does) instead of at `x`.
        input_range: `(lo, hi)` of valid inputs; None infers and warns.
        use_predicted_labels: attack the predicted labels instead of `y`.
        batch_size: examples per batch.
        seed: seed of the random starts.
        name: name used in log keys.

    Example:

    >>> attack = APGD(epsilon=0.3, steps=100, input_range=(0, 1))
    >>> x_adv = attack.generate(model, x, y)

    References:
        Croce and Hein, "Reliable evaluation of adversarial robustness with
        an ensemble of diverse parameter-free attacks", ICML 2020.
    """

    def __init__(
        self,
        epsilon=DEFAULT_EPSILON,
        steps=100,
        norm="linf",
        rho=0.75,
        restarts=1,
        random_start=True,
        input_range=None,
        use_predicted_labels=False,
        batch_size=256,
        seed=None,
        name=None,
    ):
        super().__init__(epsilon, input_range, use_predicted_labels, batch_size, seed, name)
        self.steps = check_positive_int(steps, "steps", owner="APGD")
        self.norm = check_norm(norm, "APGD")
        self.rho = check_number(rho, "rho", positive=True, owner="APGD")
        if self.rho > 1:
            raise ValueError(f"APGD: `rho` must be in (0, 1]; received {rho!r}.")
        self.restarts = check_positive_int(restarts, "restarts", owner="APGD")
        self.random_start = bool(random_start)

    def perturb(self, x, labels, lo, hi):
        if self.epsilon == 0:
            return x
        return self.worst_of_restarts(
            x, labels, lambda: self._run(x, labels, lo, hi), self.restarts
        )

    def _run(self, x, labels, lo, hi):
        labels = ops.cast(labels, "int32")
        current = x
        if self.random_start:
            current = ops.clip(
                x + random_point(ops.shape(x), self.epsilon, self.norm, self.seed_generator), lo, hi
            )
        gradient, logits = self.gradient_and_logits(current, labels)
        loss = cross_entropy(logits, labels)
        fooled = ops.argmax(logits, axis=-1) != labels
        # The highest-loss point so far (with its gradient), and the latest
        # misclassified point.
        best, best_gradient, best_loss = current, gradient, loss
        fooling, any_fooled = current, fooled
        step_size = ops.full((ops.shape(x)[0],), 2.0 * self.epsilon)
        previous = current
        last_loss = loss
        increases = ops.zeros_like(loss)
        checked_loss = best_loss
        halved_at_last_check = ops.ones_like(fooled)
        schedule = checkpoints(self.steps)
        for step in range(self.steps):
            momentum = _MOMENTUM if step > 0 else 1.0
            proposal = project(
                current + per_example(step_size, x) * ascent_direction(gradient, self.norm),
                x,
                self.epsilon,
                self.norm,
                lo,
                hi,
            )
            current, previous = (
                project(
                    current
                    + momentum * (proposal - current)
                    + (1 - momentum) * (current - previous),
                    x,
                    self.epsilon,
                    self.norm,
                    lo,
                    hi,
                ),
                current,
            )
            gradient, logits = self.gradient_and_logits(current, labels)
            loss = cross_entropy(logits, labels)
            fooled = ops.argmax(logits, axis=-1) != labels
            fooling = ops.where(per_example(fooled, x), current, fooling)
            any_fooled = any_fooled | fooled
            increases = increases + ops.cast(loss > last_loss, increases.dtype)
            last_loss = loss
            improved = loss > best_loss
            best = ops.where(per_example(improved, x), current, best)
            best_gradient = ops.where(per_example(improved, x), gradient, best_gradient)
            best_loss = ops.where(improved, loss, best_loss)
            if step + 1 in schedule:
                interval = schedule[step + 1]
                # Halve where the loss rose too rarely, or where the last
                # check kept the step and the best loss has not moved since.
                halve = (increases <= self.rho * interval) | (
                    ~halved_at_last_check & (checked_loss >= best_loss)
                )
                step_size = ops.where(halve, step_size / 2, step_size)
                current = ops.where(per_example(halve, x), best, current)
                gradient = ops.where(per_example(halve, x), best_gradient, gradient)
                halved_at_last_check, checked_loss = halve, best_loss
                increases = ops.zeros_like(increases)
        return ops.where(per_example(any_fooled, x), fooling, best)

    def get_config(self):
        return {
            **super().get_config(),
            "steps": self.steps,
            "norm": self.norm,
            "rho": self.rho,
            "restarts": self.restarts,
            "random_start": self.random_start,
        }
