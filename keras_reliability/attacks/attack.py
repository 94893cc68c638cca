"""The attack contract: `attack.generate(model, x, y)` returns adversarial inputs.

Attacks run the model with `training=False` on its logits (recovered from a
final softmax when there is one), maximise the cross-entropy of the true
labels (or of the predicted ones on request), and keep every input inside
the declared `input_range`. Work happens batch by batch on the backend's
device; only the finished batch comes back to the host.
"""

import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.arguments import check_seed
from keras_reliability.attacks.norms import per_example
from keras_reliability.backend import cross_entropy
from keras_reliability.data import check_model_inputs
from keras_reliability.data import num_examples
from keras_reliability.data import take
from keras_reliability.models import class_labels
from keras_reliability.models import feature_extractor
from keras_reliability.models import perturbed_input
from keras_reliability.serialization import register_serializable

# The usual L-inf budget for images in [0, 1]; lets the registry build an
# attack from its name alone.
DEFAULT_EPSILON = 8 / 255

# Fraction of a batch with an all-zero input gradient above which the
# attack warns about gradient masking.
_ZERO_GRADIENT_FRACTION = 0.5


def register_attack(name):
    """Registers an attack class as `attack` `name` and as serializable."""
    return register_serializable("attack", name)


def check_input_range(input_range, owner):
    """`(lo, hi)` floats with lo < hi, or None."""
    if input_range is None:
        return None
    valid = (
        isinstance(input_range, (tuple, list))
        and len(input_range) == 2
        and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)
            for v in input_range
        )
        and input_range[0] < input_range[1]
    )
    if not valid:
        raise ValueError(
            f"{owner}: `input_range` must be a pair (lo, hi) of finite numbers with "
            f"lo < hi; received {input_range!r}."
        )
    return float(input_range[0]), float(input_range[1])


class Attack:
    """Base class of adversarial attacks.

    Subclasses implement `perturb(x, labels, lo, hi)` on backend tensors of
    one batch and return the adversarial batch; gradient-free attacks set
    `uses_gradients = False`.

    Args:
        epsilon: perturbation budget, >= 0, in the norm of the attack
            (default 8/255, the common L-inf budget for images in [0, 1]).
        input_range: `(lo, hi)` of valid inputs, e.g. `(0, 1)` for images
            scaled to [0, 1]. None infers it from the data of each `generate`
            call (min and max) and says so in a warning.
        use_predicted_labels: attack the model's predicted labels instead of
            the true ones (then `y` may be None).
        batch_size: examples per batch.
        seed: seed of the attack's randomness (random starts, sampling),
            None or an integer in 0..2**32 - 1.
        name: name used in log keys and plots.
    """

    # Whether the attack differentiates the model (then logits recovered
    # from probabilities matter, see `_labels`).
    uses_gradients = True

    def __init__(
        self,
        epsilon=DEFAULT_EPSILON,
        input_range=None,
        use_predicted_labels=False,
        batch_size=256,
        seed=None,
        name=None,
    ):
        owner = type(self).__name__
        self.epsilon = check_number(epsilon, "epsilon", positive=False, owner=owner)
        self.input_range = check_input_range(input_range, owner)
        self.use_predicted_labels = bool(use_predicted_labels)
        self.batch_size = check_positive_int(batch_size, "batch_size", owner=owner)
        self.seed = check_seed(seed, owner=owner)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.name = name or getattr(type(self), "registered_name", owner.lower())
        # Set by `generate` for the batch being perturbed (multi-input models).
        self._perturbed = None
        self._context = None

    # Public API ------------------------------------------------------------

    def generate(self, model, x, y=None, verbose=0, inputs=None):
        """Adversarial versions of inputs `x` for `model`.

        Args:
            model: a classifier with one output of class scores (logits or
                probabilities).
            x: float inputs, a numpy array or tensor; for a model with
                several inputs, a dict (keyed by input name) or list of
                arrays, of which `inputs` names the one to perturb.
            y: integer labels (or one-hot); None with
                `use_predicted_labels=True`.
            verbose: 1 shows a Keras progress bar over the examples.
            inputs: for a multi-input model, the float input to perturb (a
                name or index); the other inputs are held fixed. None for a
                single-input model.

        Returns:
            A float32 numpy array shaped like `x`, inside `input_range`; for
            a multi-input model, `x`'s structure with the perturbed input
            replaced by its float32 adversarial version.

        Raises:
            ValueError: for integer inputs, inputs whose shape does not fit
                the model, mismatched labels, a multi-input model without
                `inputs`, a model with several outputs, or outputs that are
                not class scores.
        """
        owner = type(self).__name__
        # Before any forward pass: on JAX a call on inputs of the wrong shape
        # can leave the model's variables empty.
        check_model_inputs(model, x, "x", owner)
        perturbed = perturbed_input(model, x, inputs, owner)
        if perturbed is None:
            target, context = float_inputs(x, owner), ()
        else:
            target, context = perturbed.split(x)
            target = float_inputs(target, owner, f"x[{perturbed.name!r}]")
            context = tuple(np.asarray(ops.convert_to_numpy(leaf)) for leaf in context)
            x = perturbed.assemble(target, context)
        lo, hi = self._range(target)
        extractor = feature_extractor(model, (), owner)
        labels = self._labels(extractor, x, y)
        self._extractor = extractor
        self._perturbed = perturbed
        self._checked_gradient = False
        count = len(target)
        progress = keras.utils.Progbar(count, verbose=verbose, unit_name="example")
        batches = []
        for start in range(0, count, self.batch_size):
            rows = slice(start, start + self.batch_size)
            batch = ops.convert_to_tensor(target[rows])
            batch_labels = ops.convert_to_tensor(labels[rows])
            self._context = (
                None if perturbed is None
                else tuple(ops.convert_to_tensor(leaf[rows]) for leaf in context)
            )
            batches.append(ops.convert_to_numpy(self.perturb(batch, batch_labels, lo, hi)))
            progress.add(len(batches[-1]))
        self._context = None
        adversarial = np.concatenate(batches).astype(np.float32)
        return adversarial if perturbed is None else perturbed.assemble(adversarial, context)

    def perturb(self, x, labels, lo, hi):
        """The adversarial version of one batch `x` (a backend tensor).

        Implemented by subclasses with `keras.ops`, using `logits(x)`,
        `loss_gradient(x, labels)` and `gradient_and_logits(x, labels)`.
        """
        raise NotImplementedError

    # Helpers for subclasses -------------------------------------------------

    def logits(self, x):
        """The model's logits at `x` (`training=False`)."""
        return self._extractor.forward(self._perturbed)(x, context=self._context)

    def loss_gradient(self, x, labels):
        """The gradient of the summed cross-entropy with respect to `x`."""
        return self.gradient_and_logits(x, labels)[0]

    def gradient_and_logits(self, x, labels):
        """The cross-entropy gradient at `x` and the logits, from one pass.

        Warns once per `generate` call when the gradient vanishes for most
        of the batch (gradient masking).
        """
        gradient, logits = self._extractor.input_gradient(
            cross_entropy, with_outputs=True, perturbed=self._perturbed
        )(x, labels, context=self._context)
        if not self._checked_gradient:
            self._checked_gradient = True
            flat = ops.reshape(ops.abs(gradient), (ops.shape(gradient)[0], -1))
            zero = float(ops.convert_to_numpy(ops.mean(ops.cast(ops.max(flat, 1) == 0, "float32"))))
            if zero > _ZERO_GRADIENT_FRACTION:
                warnings.warn(
                    f"{type(self).__name__}: the loss gradient is exactly zero for "
                    f"{zero:.0%} of the first batch. The model may mask its "
                    "gradients (saturated softmax, non-differentiable layers); "
                    "gradient attacks then overestimate robustness. Check with a "
                    "black-box attack such as SquareAttack.",
                    UserWarning,
                    stacklevel=4,
                )
        return gradient, logits

    def worst_of_restarts(self, x, labels, run, restarts):
        """Per example, the worst case over `restarts` calls of `run()`.

        That is a misclassified input if any run found one, else the input
        with the highest cross-entropy.
        """
        if restarts == 1:
            return run()
        best = None
        for _ in range(restarts):
            candidate = run()
            logits = self.logits(candidate)
            loss = cross_entropy(logits, labels)
            fooled = ops.argmax(logits, axis=-1) != ops.cast(labels, "int32")
            if best is None:
                best, best_loss, best_fooled = candidate, loss, fooled
                continue
            # A run wins where it fools and the best does not, or where both
            # agree on fooling and its loss is higher.
            better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (loss > best_loss))
            best = ops.where(per_example(better, x), candidate, best)
            best_loss = ops.where(better, loss, best_loss)
            best_fooled = best_fooled | fooled
        return best

    def _range(self, x):
        owner = type(self).__name__
        if self.input_range is None:
            lo, hi = float(x.min()), float(x.max())
            if not lo < hi:
                raise ValueError(
                    f"{owner}: cannot infer `input_range` from constant inputs; pass "
                    "`input_range=(lo, hi)`."
                )
            warnings.warn(
                f"{owner}: no `input_range` given; using the range of the inputs, "
                f"({lo:g}, {hi:g}). Pass `input_range` (e.g. (0, 1)) to state it.",
                UserWarning,
                stacklevel=3,
            )
            return lo, hi
        lo, hi = self.input_range
        outside = float(np.mean((x < lo) | (x > hi)))
        if outside > 0:
            warnings.warn(
                f"{owner}: {outside:.2%} of the input values lie outside "
                f"`input_range`=({lo:g}, {hi:g}); adversarial inputs are clipped to it.",
                UserWarning,
                stacklevel=3,
            )
        return lo, hi

    def _labels(self, extractor, x, y):
        owner = type(self).__name__
        outputs = extractor.predict(take(x, self.batch_size), batch_size=self.batch_size)
        if self.uses_gradients and not outputs.exact_logits:
            warnings.warn(
                f"{owner}: the model outputs probabilities and its logits cannot "
                "be recovered; the attack differentiates the log of saturated "
                "probabilities, which masks gradients (robust accuracy is then "
                "overestimated). End the model with a linear layer or a Dense "
                "layer with a softmax activation.",
                UserWarning,
                stacklevel=3,
            )
        if self.use_predicted_labels:
            logits = extractor.predict(x, batch_size=self.batch_size).logits
            return np.argmax(logits, axis=1).astype(np.int32)
        if y is None:
            raise ValueError(
                f"{owner}.generate needs the true labels `y`, or " "`use_predicted_labels=True`."
            )
        return class_labels(
            y, num_examples(x), outputs.logits.shape[1], name="y", owner=owner
        )

    def get_config(self):
        return {
            "epsilon": self.epsilon,
            "input_range": self.input_range,
            "use_predicted_labels": self.use_predicted_labels,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def with_epsilon(self, epsilon):
        """A copy of this attack with another budget."""
        return type(self).from_config({**self.get_config(), "epsilon": epsilon})

    def __repr__(self):
        arguments = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({arguments})"


def float_inputs(x, owner, argument="x"):
    """Inputs to attack as a float32 numpy batch, or a ValueError naming `argument`.

    Attacks take one array of finite float inputs: integer pixels would be
    perturbed on the wrong scale, and strings or complex values would only
    fail (or be cast silently) deep inside the attack.
    """
    if x is None or keras.tree.is_nested(x):
        raise ValueError(
            f"{owner}: `{argument}` must be one array of float inputs; received "
            f"{type(x).__name__}."
        )
    x = np.asarray(ops.convert_to_numpy(x))
    if x.dtype.kind in "iub":
        raise ValueError(
            f"{owner}: `{argument}` has the integer dtype {x.dtype}; attacks need float "
            "inputs on the scale the model was trained on (e.g. pixels / 255 with "
            "`input_range=(0, 1)`)."
        )
    if x.dtype.kind != "f":
        raise ValueError(
            f"{owner}: `{argument}` must hold float inputs; received dtype {x.dtype}."
        )
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"{owner}: `{argument}` must be a non-empty batch; received shape {x.shape}."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{owner}: `{argument}` holds NaN or infinite values.")
    return x.astype(np.float32, copy=False)
