"""FGSM: one step of size epsilon along the sign of the loss gradient."""

from keras import ops

from keras_reliability.attacks.attack import Attack
from keras_reliability.attacks.attack import register_attack


@register_attack("fgsm")
class FGSM(Attack):
    """Fast gradient sign method: `x + epsilon * sign(grad_x loss(x, y))`.

    An L-infinity attack: every input value moves by `epsilon`, then the
    result is clipped to `input_range`.

    Args:
        epsilon: L-infinity budget, >= 0.
        input_range: `(lo, hi)` of valid inputs; None infers and warns.
        use_predicted_labels: attack the predicted labels instead of `y`.
        batch_size: examples per batch.
        seed: unused (FGSM is deterministic); kept for a uniform config.
        name: name used in log keys.

    Example:

    >>> x_adv = FGSM(epsilon=0.3, input_range=(0, 1)).generate(model, x, y)

    References:
        Goodfellow, Shlens and Szegedy, "Explaining and Harnessing
        Adversarial Examples", ICLR 2015.
    """

    def perturb(self, x, labels, lo, hi):
        step = self.epsilon * ops.sign(self.loss_gradient(x, labels))
        return ops.clip(x + step, lo, hi)
