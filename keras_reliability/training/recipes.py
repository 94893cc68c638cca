"""Adversarial-training recipes: how a batch is perturbed before the step.

A recipe turns each training batch `(x, y, sample_weight)` into the batch
the model's own train step sees, using input gradients taken at the weights
of that step (`transform`). Recipes that mix clean and adversarial losses
send both halves in one batch and split the loss (`compute_loss`).
Everything is `keras.ops`, so it runs inside the compiled train step of each
backend.
"""

import keras
from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.attack import check_input_range
from keras_reliability.serialization import register_serializable


def register_recipe(name):
    """Registers a recipe class as `training_recipe` `name` and as serializable."""
    return register_serializable("training_recipe", name)


def optional_step_size(step_size, owner):
    """A positive step size, or None for the recipe's default rule."""
    if step_size is None:
        return None
    return check_number(step_size, "step_size", positive=True, owner=owner)


class Recipe:
    """Base class of adversarial-training recipes.

    Args:
        epsilon: L-inf budget of the perturbation, >= 0.
        input_range: `(lo, hi)` of valid inputs.
    """

    #: Whether the batch holds the clean and the adversarial halves.
    concatenates = False

    def __init__(self, epsilon, input_range):
        owner = type(self).__name__
        self.epsilon = check_number(epsilon, "epsilon", positive=False, owner=owner)
        self.input_range = check_input_range(input_range, owner)
        if self.input_range is None:
            raise ValueError(f"{owner}: `input_range` is required, e.g. (0, 1).")

    def transform(self, data, gradient, logits, seed):
        """The batch the train step sees (see `backend.adversarial_train_step`)."""
        x, y, weights = keras.utils.unpack_x_y_sample_weight(data)
        x = ops.cast(x, "float32")
        x_adv = ops.stop_gradient(self.perturb(x, ops.cast(y, "int32"), gradient, logits, seed))
        if not self.concatenates:
            return keras.utils.pack_x_y_sample_weight(x_adv, y, weights)
        both = lambda a, b: None if a is None else ops.concatenate([a, b], axis=0)  # noqa: E731
        return keras.utils.pack_x_y_sample_weight(
            both(x, x_adv), both(y, y), both(weights, weights)
        )

    def perturb(self, x, labels, gradient, logits, seed):
        raise NotImplementedError

    def combine_losses(self, clean_loss, adversarial_loss, clean_pred, adversarial_pred):
        """The training loss of a concatenating recipe, from its two halves."""
        raise NotImplementedError

    def clip(self, x_adv, x):
        lo, hi = self.input_range
        return ops.clip(ops.clip(x_adv, x - self.epsilon, x + self.epsilon), lo, hi)

    def get_config(self):
        return {"epsilon": self.epsilon, "input_range": self.input_range}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_recipe("fgsm")
class FGSMTraining(Recipe):
    """Trains on FGSM examples `x + epsilon * sign(grad)` only."""

    def perturb(self, x, labels, gradient, logits, seed):
        return self.clip(x + self.epsilon * ops.sign(gradient(x, labels)), x)


@register_recipe("mix")
class MixedFGSMTraining(Recipe):
    """Goodfellow et al.'s objective `a * clean + (1 - a) * FGSM` loss.

    Args:
        epsilon: FGSM budget.
        input_range: `(lo, hi)` of valid inputs.
        clean_weight: `a` in [0, 1] (0.5 in the paper).

    References:
        Goodfellow, Shlens and Szegedy, "Explaining and Harnessing
        Adversarial Examples", ICLR 2015.
    """

    concatenates = True

    def __init__(self, epsilon, input_range, clean_weight=0.5):
        super().__init__(epsilon, input_range)
        clean_weight = check_number(clean_weight, "clean_weight", positive=False, owner="mix")
        if clean_weight > 1:
            raise ValueError(f"mix: `clean_weight` must be in [0, 1]; received {clean_weight!r}.")
        self.clean_weight = clean_weight

    def perturb(self, x, labels, gradient, logits, seed):
        return self.clip(x + self.epsilon * ops.sign(gradient(x, labels)), x)

    def combine_losses(self, clean_loss, adversarial_loss, clean_pred, adversarial_pred):
        return self.clean_weight * clean_loss + (1.0 - self.clean_weight) * adversarial_loss

    def get_config(self):
        return {**super().get_config(), "clean_weight": self.clean_weight}


@register_recipe("fgsm_rs")
class FastFGSMTraining(Recipe):
    """FGSM from a uniform random start, step `alpha` (1.25 epsilon).

    References:
        Wong, Rice and Kolter, "Fast is better than free: Revisiting
        adversarial training", ICLR 2020.
    """

    def __init__(self, epsilon, input_range, step_size=None):
        super().__init__(epsilon, input_range)
        self.step_size = optional_step_size(step_size, "fgsm_rs")

    def perturb(self, x, labels, gradient, logits, seed):
        step_size = self.step_size if self.step_size is not None else 1.25 * self.epsilon
        start = self.clip(
            x + keras.random.uniform(ops.shape(x), -self.epsilon, self.epsilon, seed=seed), x
        )
        return self.clip(start + step_size * ops.sign(gradient(start, labels)), x)

    def get_config(self):
        return {**super().get_config(), "step_size": self.step_size}


@register_recipe("pgd")
class PGDTraining(Recipe):
    """Madry et al.'s PGD adversarial training (L-inf, random start).

    Args:
        epsilon: budget.
        input_range: `(lo, hi)` of valid inputs.
        steps: PGD steps per batch.
        step_size: None uses `2.5 * epsilon / steps`.

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018.
    """

    def __init__(self, epsilon, input_range, steps=7, step_size=None):
        super().__init__(epsilon, input_range)
        self.steps = check_positive_int(steps, "steps", owner="pgd")
        self.step_size = optional_step_size(step_size, "pgd")

    def perturb(self, x, labels, gradient, logits, seed):
        step_size = (
            self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps
        )
        x_adv = self.clip(
            x + keras.random.uniform(ops.shape(x), -self.epsilon, self.epsilon, seed=seed), x
        )
        for _ in range(self.steps):
            x_adv = self.clip(x_adv + step_size * ops.sign(gradient(x_adv, labels)), x)
        return x_adv

    def get_config(self):
        return {**super().get_config(), "steps": self.steps, "step_size": self.step_size}


@register_recipe("noise")
class NoiseTraining(Recipe):
    """Gaussian noise injection: trains on `x + N(0, stddev)` (clipped)."""

    def __init__(self, epsilon, input_range):
        super().__init__(epsilon, input_range)

    def perturb(self, x, labels, gradient, logits, seed):
        lo, hi = self.input_range
        return ops.clip(
            x + keras.random.normal(ops.shape(x), stddev=self.epsilon, seed=seed), lo, hi
        )


@register_recipe("trades")
class TRADESTraining(Recipe):
    """TRADES: clean loss + beta * KL(f(x) || f(x')) with x' maximising the KL.

    Args:
        epsilon: budget.
        input_range: `(lo, hi)` of valid inputs.
        beta: weight of the KL term (6 in the paper).
        steps: steps of the inner maximisation.
        step_size: None uses `2.5 * epsilon / steps`.

    References:
        Zhang et al., "Theoretically Principled Trade-off between Robustness
        and Accuracy", ICML 2019.
    """

    concatenates = True

    def __init__(self, epsilon, input_range, beta=6.0, steps=5, step_size=None):
        super().__init__(epsilon, input_range)
        self.beta = check_number(beta, "beta", positive=False, owner="trades")
        self.steps = check_positive_int(steps, "steps", owner="trades")
        self.step_size = optional_step_size(step_size, "trades")
        # Set by the callback: the model's `ModelReading`, which turns its
        # outputs (logits, probabilities, one sigmoid column) into logits.
        self.outputs_reading = None

    def perturb(self, x, labels, gradient, logits, seed):
        # In x', KL(f(x) || f(x')) has the gradient of the cross-entropy
        # against the (fixed) clean probabilities.
        step_size = (
            self.step_size if self.step_size is not None else 2.5 * self.epsilon / self.steps
        )
        targets = ops.stop_gradient(ops.softmax(logits(x), axis=-1))
        x_adv = self.clip(x + 0.001 * keras.random.normal(ops.shape(x), seed=seed), x)
        for _ in range(self.steps):
            x_adv = self.clip(x_adv + step_size * ops.sign(gradient(x_adv, targets)), x)
        return x_adv

    def combine_losses(self, clean_loss, adversarial_loss, clean_pred, adversarial_pred):
        p_clean = self._probabilities(clean_pred)
        log_clean = ops.log(ops.maximum(p_clean, 1e-12))
        log_adv = ops.log(ops.maximum(self._probabilities(adversarial_pred), 1e-12))
        kl = ops.mean(ops.sum(p_clean * (log_clean - log_adv), axis=-1))
        return clean_loss + self.beta * kl

    def _probabilities(self, outputs):
        if self.outputs_reading is not None:
            outputs = self.outputs_reading.logits_op(outputs)
        return ops.softmax(outputs, axis=-1)

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "steps": self.steps,
            "step_size": self.step_size,
        }


@register_recipe("free")
class FreeTraining(Recipe):
    """Shafahi et al.'s "free" adversarial training: each batch is replayed.

    The train step runs `replays` optimizer steps on the batch. Each replay
    trains on `x + delta` and, from the same backward pass, takes the input
    gradient that moves `delta` by `step_size * sign(gradient)` (clipped to
    the epsilon-ball) for the next replay, so the attack costs no extra
    gradient computation. Train for `epochs / replays` epochs to keep the
    cost of plain training, as the paper does.

    The perturbation is carried across the replays of a batch and starts
    from a uniform random point of the ball for each new batch (the paper
    carries it across batches too; Wong et al. 2020 found that carried
    start acts as a random initialisation, and a train step that keeps
    state outside the model cannot be compiled on JAX).

    Args:
        epsilon: L-inf budget.
        input_range: `(lo, hi)` of valid inputs.
        replays: optimizer steps per batch, `m` in the paper (>= 1).
        step_size: perturbation step per replay; None uses `epsilon`.

    References:
        Shafahi et al., "Adversarial Training for Free!", NeurIPS 2019.
    """

    def __init__(self, epsilon, input_range, replays=4, step_size=None):
        super().__init__(epsilon, input_range)
        self.replays = check_positive_int(replays, "replays", owner="free")
        self.step_size = optional_step_size(step_size, "free")

    def start(self, x, seed):
        """The first perturbation of a batch."""
        return keras.random.uniform(ops.shape(x), -self.epsilon, self.epsilon, seed=seed)

    def adversarial(self, x, delta):
        """The inputs a replay trains on."""
        lo, hi = self.input_range
        return ops.clip(x + delta, lo, hi)

    def update(self, delta, gradient):
        """The perturbation of the next replay, from this replay's input gradient."""
        step_size = self.step_size if self.step_size is not None else self.epsilon
        return ops.clip(delta + step_size * ops.sign(gradient), -self.epsilon, self.epsilon)

    def transform(self, data, gradient, logits, seed):
        raise NotImplementedError(
            "free: the replays run in `backend.free_adversarial_train_step`, not as a "
            "batch transform."
        )

    def get_config(self):
        return {**super().get_config(), "replays": self.replays, "step_size": self.step_size}
