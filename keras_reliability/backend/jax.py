"""JAX implementations for keras_reliability.backend."""

import contextlib

import jax
import jax.numpy as jnp
import keras

from keras_reliability.backend import model_inputs


def argmax(x, axis):
    return jnp.argmax(x, axis=axis).astype("int32")


def input_gradient_function(model, loss, with_outputs):
    def total_loss(trainable, non_trainable, x, context, *args):
        outputs, _ = model.stateless_call(
            trainable, non_trainable, model_inputs(x, context), training=False
        )
        return jnp.sum(loss(outputs, *args)), outputs

    gradient = jax.jit(jax.grad(total_loss, argnums=2, has_aux=True))

    def call(x, *args, context=None):
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        result = gradient(
            trainable, non_trainable, jnp.asarray(x, jnp.float32), context, *args
        )
        return result if with_outputs else result[0]

    return call


def forward_function(model):
    @jax.jit
    def forward(trainable, non_trainable, x, context):
        return model.stateless_call(
            trainable, non_trainable, model_inputs(x, context), training=False
        )[0]

    def call(x, context=None):
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        return forward(trainable, non_trainable, jnp.asarray(x, jnp.float32), context)

    return call


def adversarial_train_step(model, logits_model, train_step, transform, seed):
    from keras_reliability.backend import cross_entropy

    # The JAX trainer carries the weights in `state`, not in the variables:
    # the gradient must read them from there, in `logits_model`'s order.
    trainable_index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    non_trainable_index = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
    iterations = [v is model.optimizer.iterations for v in model.optimizer.variables].index(True)
    base_key = jax.random.PRNGKey(0 if seed is None else seed)

    def step(state, data):
        trainable, non_trainable, optimizer_variables, _ = state

        def value(variable):
            if id(variable) in trainable_index:
                return trainable[trainable_index[id(variable)]]
            return non_trainable[non_trainable_index[id(variable)]]

        weights = [value(v) for v in logits_model.trainable_variables]
        others = [value(v) for v in logits_model.non_trainable_variables]

        def logits(x):
            outputs, _ = logits_model.stateless_call(weights, others, x, training=False)
            return outputs

        def gradient(x, targets):
            return jax.grad(lambda inputs: jnp.sum(cross_entropy(logits(inputs), targets)))(x)

        key = jax.random.fold_in(base_key, optimizer_variables[iterations])
        return train_step(state, transform(data, gradient, logits, key))

    return step


def _variable_groups(model):
    # In the order of Keras' JAX trainer state (`_get_jax_state`).
    optimizer = getattr(model, "optimizer", None)
    return [
        ("trainable_variables", model.trainable_variables),
        ("non_trainable_variables", model.non_trainable_variables),
        ("optimizer_variables", list(optimizer.variables) if optimizer is not None else []),
        ("metrics_variables", model.metrics_variables),
    ]


def _refill(variables, values):
    """Assigns `values` to the variables that Keras' trainer emptied (None)."""
    if values is None or len(values) != len(variables):
        return
    for variable, value in zip(variables, values):
        if getattr(variable, "_value", 0) is not None:
            continue  # not emptied by the trainer
        if not isinstance(value, jax.Array) or value.is_deleted():
            continue  # donated to a step that ran: lost
        variable.assign(value)


def recover_train_state(model, args):
    if not args or not isinstance(args[0], (tuple, list)) or len(args[0]) != 4:
        return
    for (_, variables), values in zip(_variable_groups(model), args[0]):
        _refill(variables, values)


@contextlib.contextmanager
def keep_variables(model):
    groups = _variable_groups(model)
    # References, not copies: valid until a compiled step consumes them.
    saved = [[getattr(v, "_value", None) for v in variables] for _, variables in groups]
    try:
        yield
    except BaseException:
        state = getattr(model, "_jax_state", None) or {}
        for (name, variables), values in zip(groups, saved):
            _refill(variables, values)
            _refill(variables, state.get(name))  # the last step's state
        raise


def free_adversarial_train_step(model, recipe, seed):
    # Keras' JAX train step, differentiating its loss function with respect
    # to the inputs (argument 3) as well as the weights, in one backward
    # pass (keras/src/backend/jax/trainer.py).
    iterations = [v is model.optimizer.iterations for v in model.optimizer.variables].index(True)
    base_key = jax.random.PRNGKey(0 if seed is None else seed)
    value_and_gradients = jax.value_and_grad(
        model.compute_loss_and_updates, argnums=(0, 3), has_aux=True
    )

    def step(state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = jnp.asarray(x, jnp.float32)
        delta = recipe.start(x, jax.random.fold_in(base_key, optimizer_variables[iterations]))
        for _ in range(recipe.replays):
            inputs = recipe.adversarial(x, delta)
            (_, aux), (gradients, input_gradient) = value_and_gradients(
                trainable,
                non_trainable,
                metrics_variables,
                inputs,
                y,
                sample_weight,
                training=True,
                optimizer_variables=optimizer_variables,
            )
            unscaled_loss, y_pred, non_trainable, metrics_variables = aux
            trainable, optimizer_variables = model.optimizer.stateless_apply(
                optimizer_variables, gradients, trainable
            )
            logs, metrics_variables = model._update_metrics_variables(
                metrics_variables, unscaled_loss, inputs, y, y_pred, sample_weight
            )
            delta = recipe.update(delta, input_gradient)
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    return step
