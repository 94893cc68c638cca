"""PGD: projected gradient ascent on the loss, with random starts and restarts."""

from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.attack import DEFAULT_EPSILON
from keras_reliability.attacks.attack import Attack
from keras_reliability.attacks.attack import register_attack
from keras_reliability.attacks.norms import ascent_direction
from keras_reliability.attacks.norms import check_norm
from keras_reliability.attacks.norms import project
from keras_reliability.attacks.norms import random_point


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
            None
            if step_size is None
            else check_number(step_size, "step_size", positive=True, owner="PGD")
        )
        self.norm = check_norm(norm, "PGD")
        self.random_start = bool(random_start)
        self.restarts = check_positive_int(restarts, "restarts", owner="PGD")

    @property
    def effective_step_size(self):
        """`step_size`, or `2.5 * epsilon / steps` when it is None."""
        return self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps

    def perturb(self, x, labels, lo, hi):
        return self.worst_of_restarts(
            x, labels, lambda: self._run(x, labels, lo, hi), self.restarts
        )

    def _run(self, x, labels, lo, hi):
        if self.epsilon == 0:
            return x
        adversarial = x
        if self.random_start:
            adversarial = ops.clip(
                x + random_point(ops.shape(x), self.epsilon, self.norm, self.seed_generator), lo, hi
            )
        step_size = self.effective_step_size
        for _ in range(self.steps):
            gradient = self.loss_gradient(adversarial, labels)
            adversarial = adversarial + step_size * ascent_direction(gradient, self.norm)
            adversarial = project(adversarial, x, self.epsilon, self.norm, lo, hi)
        return adversarial

    def get_config(self):
        return {
            **super().get_config(),
            "steps": self.steps,
            "step_size": self.step_size,
            "norm": self.norm,
            "random_start": self.random_start,
            "restarts": self.restarts,
        }
