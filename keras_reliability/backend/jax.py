"""JAX implementations for keras_reliability.backend."""

import jax
import jax.numpy as jnp


def argmax(x, axis):
    return jnp.argmax(x, axis=axis).astype("int32")


def input_gradient_function(model, loss, with_outputs):
    def total_loss(trainable, non_trainable, x, *args):
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return jnp.sum(loss(outputs, *args)), outputs

    gradient = jax.jit(jax.grad(total_loss, argnums=2, has_aux=True))

    def call(x, *args):
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        result = gradient(trainable, non_trainable, jnp.asarray(x, jnp.float32), *args)
        return result if with_outputs else result[0]

    return call


def forward_function(model):
    @jax.jit
    def forward(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=False)[0]

    def call(x):
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        return forward(trainable, non_trainable, jnp.asarray(x, jnp.float32))

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
