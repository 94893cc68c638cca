"""ODIN: temperature scaling plus a small input perturbation."""

import numpy as np
from keras import ops

from keras_reliability.arguments import check_number
from keras_reliability.arguments import check_positive_int
from keras_reliability.data import check_finite_inputs
from keras_reliability.data import check_input_shapes
from keras_reliability.models import feature_extractor
from keras_reliability.ood.scorer import OODScorer
from keras_reliability.ood.scorer import register_scorer
from keras_reliability.ood.scorer import softmax


@register_scorer("odin")
class ODIN(OODScorer):
    """ODIN score: `-max softmax(f(x~) / T)` at a perturbed input `x~`.

    Each input is moved by `epsilon` in the direction that raises the
    temperature-scaled softmax score of its predicted class,
    `x~ = x - epsilon * sign(grad_x -log S_yhat(x; T))`. The move raises the
    score of in-distribution inputs more than that of OOD inputs, and the
    temperature spreads the scores apart. It needs one input-gradient pass and
    one forward pass per batch, so it runs the model itself rather than
    sharing the callback's forward pass.

    Args:
        temperature: positive softmax temperature `T` (1000 in the paper).
        epsilon: perturbation size, >= 0, in the units of the model's inputs
            (0.0014 in the paper for inputs in [0, 1] divided by the
            per-channel std; 0 disables the perturbation).
        batch_size: examples per gradient pass.
        name: name used in log keys.

    Example:

    >>> scores = ODIN(temperature=1000, epsilon=0.002).score(model, x)

    References:
        Liang, Li and Srikant, "Enhancing The Reliability of
        Out-of-distribution Image Detection in Neural Networks", ICLR 2018.
    """

    shares_forward_pass = False

    def __init__(self, temperature=1000.0, epsilon=0.0014, batch_size=128, name=None):
        super().__init__(name)
        self.temperature = check_number(temperature, "temperature", positive=True, owner="ODIN")
        self.epsilon = check_number(epsilon, "epsilon", positive=False, owner="ODIN")
        self.batch_size = check_positive_int(batch_size, "batch_size", owner="ODIN")

    def score(self, model, x, batch_size=None):
        extractor = feature_extractor(model, (), "ODIN")
        batch_size = (
            check_positive_int(batch_size, "batch_size", allow_none=True) or self.batch_size
        )
        x = _check_inputs(model, x)
        if self.epsilon > 0:
            # Checks the outputs (class scores, softmax inside the model or not).
            extractor.predict(x[:batch_size], batch_size=batch_size)
            # Compiled once per model and scorer, kept by the extractor.
            gradient = extractor.input_gradient(self._loss)
            x = np.concatenate(
                [
                    batch - self.epsilon * np.sign(ops.convert_to_numpy(gradient(batch)))
                    for batch in np.array_split(x, max(1, -(-len(x) // batch_size)))
                ]
            )
        logits = extractor.predict(x, batch_size=batch_size).logits.astype(np.float64)
        return -softmax(logits / self.temperature).max(axis=-1)

    def _loss(self, logits):
        # -log S_yhat(x; T), the loss whose descent raises the score.
        return -ops.max(ops.log_softmax(logits / self.temperature, axis=-1), axis=-1)

    def score_outputs(self, outputs):
        raise NotImplementedError("ODIN runs its own passes: call `score(model, x)`.")

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "epsilon": self.epsilon,
            "batch_size": self.batch_size,
        }


def _check_inputs(model, x):
    """`x` as float32 inputs of `model`, refused (naming `x`) before any pass.

    ODIN perturbs one input array, so `x` must be a non-empty array of real
    numbers shaped like the model's input; a forward pass on anything else
    fails inside Keras (and on JAX can leave the model unusable).
    """
    if x is None or isinstance(x, (str, bytes, dict)):
        raise ValueError(
            f"ODIN: `x` must be an array of inputs; received {type(x).__name__}."
        )
    try:
        x = np.asarray(ops.convert_to_numpy(x))
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"ODIN: `x` must be an array of inputs; could not read it "
            f"({type(error).__name__}: {error})."
        ) from None
    if x.dtype.kind not in "fiu":
        raise ValueError(
            f"ODIN: `x` must hold real numbers (floats or integers); received dtype {x.dtype}."
        )
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"ODIN: `x` must be a non-empty batch; received shape {x.shape}.")
    check_input_shapes(model, x, "x", "ODIN")
    check_finite_inputs(x, "x", "ODIN")
    return x.astype(np.float32)

