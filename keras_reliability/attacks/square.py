"""Square Attack: a score-based black-box L-inf attack by random square updates."""

import math

import keras
import numpy as np
from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.attacks.attack import DEFAULT_EPSILON
from keras_reliability.attacks.attack import Attack
from keras_reliability.attacks.attack import register_attack
from keras_reliability.attacks.norms import per_example

# Queries between checks whether every example of the batch is fooled.
_STOP_CHECK_EVERY = 10


def square_fraction(p_init, query, queries):
    """Fraction of the pixels in the square at `query`: Andriushchenko et al.'s schedule.

    `p_init` is halved at fixed points of a 10,000-query run, rescaled to
    `queries`.
    """
    progress = int(query / queries * 10000)
    for halvings, end in enumerate((10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)):
        if progress <= end:
            return p_init / 2**halvings
    return p_init / 512


def margin(logits, labels):
    """`logit[y] - max_{j != y} logit[j]`: negative once the example is misclassified."""
    is_label = ops.one_hot(labels, ops.shape(logits)[-1]) > 0
    correct = ops.sum(ops.where(is_label, logits, 0.0), axis=-1)
    other = ops.max(ops.where(is_label, -np.inf, logits), axis=-1)
    return correct - other


@register_attack("square")
class SquareAttack(Attack):
    """Square Attack: random search over square patches of +-epsilon (L-inf).

    Needs only the model's class scores, no gradients: it attacks models
    that mask their gradients and the score-based (soft-label) black-box
    threat model. It starts from vertical stripes of +-epsilon, then each
    query draws new signs for one square window at a random place (one sign
    per example and channel, flipped where the window would not change) and
    keeps the change for the examples whose margin
    `logit[y] - max_{j != y} logit[j]` fell. The square's area shrinks along
    a fixed schedule from `p_init` of the image. An example stops changing
    once misclassified.

    Inputs must be image batches, `(N, H, W, C)` or `(N, C, H, W)` as
    `keras.config.image_data_format()` says.

    Args:
        epsilon: L-inf budget, >= 0.
        queries: model evaluations per example, >= 1 (5000 in AutoAttack).
        p_init: initial fraction of the pixels in the square, in (0, 1]
            (0.8 in AutoAttack; 0.05 in the paper's ImageNet runs).
        input_range: `(lo, hi)` of valid inputs; None infers and warns.
        use_predicted_labels: attack the predicted labels instead of `y`.
        batch_size: examples per batch.
        seed: seed of the square positions and signs. None draws one from
            Keras' global seeding, so `keras.utils.set_random_seed(s)` before
            constructing the attack makes its runs reproducible.
        name: name used in log keys.

    Raises:
        ValueError: for an invalid argument (named in the message); at
            `generate`, for inputs that are not rank-4 image batches.

    Example:

    >>> attack = SquareAttack(epsilon=0.3, queries=1000, input_range=(0, 1))
    >>> x_adv = attack.generate(model, x, y)

    References:
        Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a
        query-efficient black-box adversarial attack via random search",
        ECCV 2020.
    """

    uses_gradients = False

    def __init__(
        self,
        epsilon=DEFAULT_EPSILON,
        queries=5000,
        p_init=0.8,
        input_range=None,
        use_predicted_labels=False,
        batch_size=256,
        seed=None,
        name=None,
    ):
        super().__init__(epsilon, input_range, use_predicted_labels, batch_size, seed, name)
        self.queries = check_positive_int(queries, "queries", owner="SquareAttack")
        self.p_init = check_number(p_init, "p_init", positive=True, owner="SquareAttack")
        if self.p_init > 1:
            raise ValueError(f"SquareAttack: `p_init` must be in (0, 1]; received {p_init!r}.")
        if seed is None:
            # Without a seed the SeedGenerator drew its own from Python's
            # `random`, which `keras.utils.set_random_seed` seeds; deriving
            # the positions' seed from it makes that call fix them too (a bare
            # `default_rng(None)` would read OS entropy).
            seed = int(
                ops.convert_to_numpy(
                    keras.random.randint((), 0, 2**31 - 1, seed=self.seed_generator)
                )
            )
        # Positions are drawn on the host: an int per query, no device sync.
        self._positions = np.random.default_rng(seed)

    def perturb(self, x, labels, lo, hi):
        if len(x.shape) != 4:
            raise ValueError(
                "SquareAttack: inputs must be image batches of rank 4, (N, H, W, C) or "
                f"(N, C, H, W); received shape {tuple(x.shape)}."
            )
        if self.epsilon == 0:
            return x
        channels_first = keras.config.image_data_format() == "channels_first"
        if channels_first:
            x = ops.transpose(x, (0, 2, 3, 1))
        adversarial = self._search(x, ops.cast(labels, "int32"), lo, hi, channels_first)
        return ops.transpose(adversarial, (0, 3, 1, 2)) if channels_first else adversarial

    def _search(self, x, labels, lo, hi, channels_first):
        def scores(images):
            return margin(self.logits(_layout(images, channels_first)), labels)

        batch, height, width, channels = ops.shape(x)
        stripes = self._signs((batch, 1, width, channels))
        best = ops.clip(x + self.epsilon * stripes, lo, hi)
        best_margin = scores(best)
        for query in range(1, self.queries):
            if query % _STOP_CHECK_EVERY == 0 and not bool(ops.any(best_margin > 0)):
                break
            fraction = square_fraction(self.p_init, query - 1, self.queries)
            side = min(max(int(round(math.sqrt(fraction * height * width))), 1), height - 1)
            top = int(self._positions.integers(0, max(height - side, 1)))
            left = int(self._positions.integers(0, max(width - side, 1)))
            window = np.zeros((1, height, width, 1), bool)
            window[:, top : top + side, left : left + side] = True
            window = ops.convert_to_tensor(window)
            candidate = self._new_square(x, best, window, lo, hi)
            candidate_margin = scores(candidate)
            # Only examples not yet fooled move, and only to a lower margin.
            accept = (best_margin > 0) & (candidate_margin < best_margin)
            best = ops.where(per_example(accept, x), candidate, best)
            best_margin = ops.where(accept, candidate_margin, best_margin)
        return best

    def _new_square(self, x, best, window, lo, hi):
        """`best` with the square `window` set to +-epsilon around `x`.

        Where the drawn signs would leave the square as it was (it already
        holds them, after clipping), the opposite signs are used, which
        always change it.
        """
        batch, channels = ops.shape(x)[0], ops.shape(x)[-1]
        signs = self._signs((batch, 1, 1, channels))
        candidate = ops.where(window, ops.clip(x + self.epsilon * signs, lo, hi), best)
        difference = ops.where(window, ops.abs(candidate - best), 0.0)
        unchanged = ops.max(ops.reshape(difference, (batch, -1)), axis=1) < 1e-7
        signs = ops.where(per_example(unchanged, signs), -signs, signs)
        return ops.where(window, ops.clip(x + self.epsilon * signs, lo, hi), best)

    def _signs(self, shape):
        uniform = keras.random.uniform(shape, seed=self.seed_generator)
        return ops.where(uniform < 0.5, -1.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "queries": self.queries, "p_init": self.p_init}


def _layout(images, channels_first):
    """Channels-last `images` in the layout the model reads."""
    return ops.transpose(images, (0, 3, 1, 2)) if channels_first else images
