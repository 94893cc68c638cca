"""The only backend-specific code of keras_reliability.

One small module per Keras backend (`tensorflow.py`, `jax.py`, `torch.py`)
implements the same functions with the backend's native ops, where
`keras.ops` is slower or lacks what is needed. Callers use the functions
below, which dispatch on `keras.backend.backend()`; an unknown backend falls
back to `keras.ops`.
"""

import contextlib
import importlib

import keras
from keras import ops

_NATIVE = ("tensorflow", "jax", "torch")


def _native_module():
    name = keras.backend.backend()
    if name not in _NATIVE:
        return None
    return importlib.import_module(f"keras_reliability.backend.{name}")


def _module_for(feature):
    module = _native_module()
    if module is None:
        raise NotImplementedError(
            f"{feature} is not implemented for the {keras.backend.backend()!r} backend."
        )
    return module


def argmax(x, axis=-1):
    """Index of the maximum along `axis`, as int32 (first one on ties).

    `keras.ops.argmax` maps -0.0 to a tiny negative number first (three
    extra passes over the data, for a flush-to-zero corner case that does
    not change the predicted class); on 1M x 100 logits under TensorFlow it
    costs 3x the native op.
    """
    module = _native_module()
    if module is None:
        return ops.cast(ops.argmax(x, axis=axis), "int32")
    return module.argmax(x, axis)


def model_inputs(x, context):
    """What a model of a perturbed input and its `context` is called on.

    `x` alone without a context; `(x, context)` otherwise, the other inputs
    of a multi-input model, which are held fixed and not differentiated.
    """
    return x if context is None else (x, context)


def input_gradient_function(model, loss, with_outputs=False):
    """A compiled function returning the gradient of a loss w.r.t. the inputs.

    The model runs with `training=False` and its current weights at every
    call (weights are inputs of the compiled function, not constants), so the
    function stays valid while the model trains.

    Args:
        model: a `keras.Model` (or layer) mapping a batch of inputs to outputs.
        loss: `loss(outputs, *args)` -> per-example losses, written with
            `keras.ops`; `args` are extra tensors (e.g. labels).
        with_outputs: also return the model's outputs of the same pass.

    Returns:
        `gradient(x, *args, context=None)`: the gradient of
        `sum(loss(model(x), *args))` with respect to `x`, a backend tensor
        shaped like `x`, or the pair `(gradient, outputs)` with
        `with_outputs=True`. With a `context` (a tuple of tensors: the inputs
        of a multi-input model that are not differentiated), the model is
        called on `(x, context)`. Compiled with `jax.jit` on JAX and
        `tf.function` on TensorFlow; eager autograd on PyTorch.
    """
    return _module_for("Input gradients").input_gradient_function(model, loss, with_outputs)


def forward_function(model):
    """A compiled `model(x, training=False)` that follows the model's weights.

    Returns `forward(x, context=None)` (see `input_gradient_function` for
    `context`). Compiled with `jax.jit` (weights passed as arguments) on JAX
    and `tf.function` on TensorFlow; eager without autograd on PyTorch.
    """
    module = _native_module()
    if module is None:
        return lambda x, context=None: model(model_inputs(x, context), training=False)
    return module.forward_function(model)


def adversarial_train_step(model, logits_model, train_step, transform, seed):
    """A train step that transforms each batch with input gradients first.

    Args:
        model: the model being trained.
        logits_model: a model sharing `model`'s weights that returns logits.
        train_step: the model's own `train_step` (the backend's signature).
        transform: `transform(data, gradient, logits, seed) -> data`, written
            with `keras.ops`; `gradient(x, targets)` is the gradient with
            respect to `x` of the summed cross-entropy of `logits_model(x)`
            against `targets` (integer labels or probabilities) and
            `logits(x)` the logits, both at the weights of the current step
            with `training=False`; `seed` is a seed for `keras.random`.
        seed: int seed of the transform's randomness.

    Returns:
        The function to install as `model.train_step`.
    """
    module = _module_for("Adversarial training")
    if hasattr(module, "adversarial_train_step"):
        # JAX: the step carries the weights in its state.
        return module.adversarial_train_step(model, logits_model, train_step, transform, seed)
    # TensorFlow and PyTorch steps read the weights from the variables.
    gradient = input_gradient_function(logits_model, cross_entropy)
    seed_generator = replica_seed_generator(seed)

    def logits(x):
        return logits_model(x, training=False)

    def step(data):
        return train_step(transform(data, gradient, logits, seed_generator))

    return step


def recover_train_state(model, args):
    """Gives back to `model` the weights a train function that raised had taken.

    Keras' JAX `fit` moves the weights out of the variables into the state
    it passes to `train_function(state, data)` (the variables hold None
    meanwhile) and puts them back only from the state of a step that
    returned, so an error inside the first step (while tracing, or a
    KeyboardInterrupt) left a model whose variables are None. This assigns
    the state's arrays to the emptied variables, unless the step already
    consumed them. Nothing to do on the other backends.
    """
    module = _native_module()
    if module is not None and hasattr(module, "recover_train_state"):
        module.recover_train_state(model, args)


def keep_variables(model):
    """A context manager that keeps `model` usable when Keras' JAX trainer fails.

    Keras' JAX `predict`, `evaluate` and `fit` empty the model's variables
    (None) while they run and fill them again only after steps that
    returned: an error in the first step (inputs of the wrong shape from a
    dataset, a KeyboardInterrupt while compiling) left `'NoneType' object
    is not callable` behind. On an exception inside the block, the variables
    it emptied get back their values from before the block, or from the
    state of the last step that ran. A no-op on the other backends.

    Example: `with backend.keep_variables(model): model.predict(dataset)`.
    """
    module = _native_module()
    if module is not None and hasattr(module, "keep_variables"):
        return module.keep_variables(model)
    return contextlib.nullcontext()


def is_end_of_data(error):
    """Whether a train function raised `error` because its data ran out.

    `fit` catches these and goes on with the next epoch.
    """
    module = _native_module()
    errors = getattr(module, "END_OF_DATA_ERRORS", (StopIteration,))
    return isinstance(error, errors)


def replica_seed_generator(seed):
    """A `keras.random.SeedGenerator` whose seeds differ between data-parallel replicas.

    Under `tf.distribute` every replica runs the step on its share of the
    batch, and Keras' own generator hands them all the same seed
    (keras-team/keras#20611): their random perturbations would repeat one
    another. TensorFlow's generator folds the replica id into each seed (one
    device keeps the plain seeds). JAX traces the global batch, so it draws
    once for all devices.
    """
    module = _native_module()
    if module is not None and hasattr(module, "ReplicaSeedGenerator"):
        return module.ReplicaSeedGenerator(seed)
    return keras.random.SeedGenerator(seed)


def free_adversarial_train_step(model, recipe, seed):
    """A train step that replays each batch, Shafahi et al.'s "free" training.

    Each of `recipe.replays` replays is one optimizer step on
    `recipe.adversarial(x, delta)`; the same backward pass gives the input
    gradient that `recipe.update(delta, gradient)` turns into the next
    perturbation. `recipe.start(x, seed)` draws the first one. Loss, loss
    scaling, metrics and optimizer are the model's own, as in its compiled
    train step.

    Returns:
        The function to install as `model.train_step`.
    """
    return _module_for("Free adversarial training").free_adversarial_train_step(model, recipe, seed)


def cross_entropy(logits, targets):
    """Per-example cross-entropy of `targets` (int labels or probabilities).

    Labels may be `(N,)` or `(N, 1)` (what `keras.datasets.cifar10` gives):
    a last axis of width 1 is a label, not a one-class distribution.
    """
    log_probabilities = ops.log_softmax(logits, axis=-1)
    if len(targets.shape) == len(logits.shape) and targets.shape[-1] == logits.shape[-1]:
        return -ops.sum(ops.cast(targets, log_probabilities.dtype) * log_probabilities, axis=-1)
    if len(targets.shape) == len(logits.shape):
        targets = ops.squeeze(targets, -1)
    targets = ops.cast(targets, "int32")
    picked = ops.take_along_axis(log_probabilities, ops.expand_dims(targets, -1), axis=-1)
    return -ops.squeeze(picked, -1)
