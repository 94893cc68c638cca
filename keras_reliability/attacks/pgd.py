"""PGD: projected gradient ascent on the loss, with random starts and restarts."""

import math

import keras
from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.attack import DEFAULT_EPSILON
from keras_reliability.attacks.attack import Attack
from keras_reliability.attacks.attack import register_attack
from keras_reliability.backend import cross_entropy

NORMS = ("linf", "l2")
# Per-example norms below this are treated as zero (no direction).
_TINY = 1e-12


@register_attack("pgd")
class PGD(Attack):
    """Projected gradient descent on the negative loss, in an L-inf or L2 ball.

    Each of `restarts` runs starts at a random point of the epsilon-ball
    (or at `x` with `random_start=False`), takes `steps` steps of size
    `step_size` along the gradient sign (L-inf) or the normalised gradient
    (L2), and projects back onto the ball and `input_range` after each step.
    Per example, the result is the worst case over the restarts: a
    misclassified input if any restart found one, else the one with the
    highest loss.

    Args:
        epsilon: budget, >= 0, in the chosen norm.
        steps: number of gradient steps, >= 1.
        step_size: step length; None uses `2.5 * epsilon / steps` (Madry et
            al.'s rule).
        norm: `"linf"` or `"l2"`.
        random_start: start each run at a uniformly random point of the ball.
        restarts: number of runs, >= 1.
        input_range: `(lo, hi)` of valid inputs; None infers and warns.
        use_predicted_labels: attack the predicted labels instead of `y`.
        batch_size: examples per batch.
        seed: seed of the random starts.
        name: name used in log keys.

    Example:

    >>> attack = PGD(epsilon=0.3, steps=40, step_size=0.01, input_range=(0, 1))
    >>> x_adv = attack.generate(model, x, y)

    References:
        Madry, Makelov, Schmidt, Tsipras and Vladu, "Towards Deep Learning
        Models Resistant to Adversarial Attacks", ICLR 2018.
    """

    def __init__(
        self,
        epsilon=DEFAULT_EPSILON,
        steps=10,
        step_size=None,
        norm="linf",
        random_start=True,
        restarts=1,
        input_range=None,
        use_predicted_labels=False,
        batch_size=256,
        seed=None,
        name=None,
    ):
        super().__init__(epsilon, input_range, use_predicted_labels, batch_size, seed, name)
        self.steps = check_positive_int(steps, "steps", owner="PGD")
        self.step_size = (
            None if step_size is None else check_number(step_size, "step_size", positive=True, owner="PGD")
        )
        if norm not in NORMS:
            raise ValueError(f"PGD: `norm` must be one of {NORMS}; received {norm!r}.")
        self.norm = norm
        self.random_start = bool(random_start)
        self.restarts = check_positive_int(restarts, "restarts", owner="PGD")

    @property
    def effective_step_size(self):
        """`step_size`, or `2.5 * epsilon / steps` when it is None."""
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps

    def perturb(self, x, labels, gradient, lo, hi):
        best = None
        for _ in range(self.restarts):
            candidate = self._run(x, labels, gradient, lo, hi)
            logits = self._logits_model(candidate, training=False)
            loss = cross_entropy(logits, labels)
            fooled = ops.argmax(logits, axis=-1) != ops.cast(labels, "int32")
            if best is None:
                best, best_loss, best_fooled = candidate, loss, fooled
                continue
            # A restart wins where it fools and the best does not, or where
            # both agree on fooling and its loss is higher.
            better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            mask = ops.reshape(better, (-1,) + (1,) * (len(x.shape) - 1))
            best = ops.where(mask, candidate, best)
            best_loss = ops.where(better, loss, best_loss)
            best_fooled = best_fooled | fooled
        return best

    def _run(self, x, labels, gradient, lo, hi):
        if self.epsilon == 0:
            return x
        adversarial = x
        if self.random_start:
            adversarial = ops.clip(x + self._random_point(x), lo, hi)
        step_size = self.effective_step_size
        for _ in range(self.steps):
            direction = self.loss_gradient(gradient, adversarial, labels)
            if self.norm == "linf":
                adversarial = adversarial + step_size * ops.sign(direction)
            else:
                adversarial = adversarial + step_size * direction / _l2_norm(direction)
            adversarial = ops.clip(self._project(adversarial - x) + x, lo, hi)
        return adversarial

    def _project(self, delta):
        if self.norm == "linf":
            return ops.clip(delta, -self.epsilon, self.epsilon)
        return delta * ops.minimum(1.0, self.epsilon / _l2_norm(delta))

    def _random_point(self, x):
        shape = ops.shape(x)
        if self.norm == "linf":
            return keras.random.uniform(
                shape, -self.epsilon, self.epsilon, seed=self.seed_generator
            )
        # Uniform in the L2 ball: a Gaussian direction, radius eps * U^(1/d).
        direction = keras.random.normal(shape, seed=self.seed_generator)
        dimension = math.prod(shape[1:])
        radius = self.epsilon * keras.random.uniform(
            (shape[0],) + (1,) * (len(shape) - 1), seed=self.seed_generator
        ) ** (1.0 / dimension)
        return direction / _l2_norm(direction) * radius

    def get_config(self):
        return {
            **super().get_config(),
            "steps": self.steps,
            "step_size": self.step_size,
            "norm": self.norm,
            "random_start": self.random_start,
            "restarts": self.restarts,
        }


def _l2_norm(x):
    """Per-example L2 norm, shaped to broadcast against `x`."""
    axes = tuple(range(1, len(x.shape)))
    return ops.maximum(ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True)), _TINY)
