"""JAX implementations for keras_reliability.backend."""

import jax
import jax.numpy as jnp


def argmax(x, axis):
    return jnp.argmax(x, axis=axis).astype("int32")


def input_gradient_function(model, loss):
    def total_loss(trainable, non_trainable, x, *args):
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return jnp.sum(loss(outputs, *args))

    gradient = jax.jit(jax.grad(total_loss, argnums=2))

    def call(x, *args):
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        return gradient(trainable, non_trainable, jnp.asarray(x, jnp.float32), *args)

    return call
