"""JAX implementations for keras_reliability.backend."""

import jax
import jax.numpy as jnp


def argmax(x, axis):
    return jnp.argmax(x, axis=axis).astype("int32")


def input_gradient(loss_fn, x):
    return jax.grad(lambda inputs: jnp.sum(loss_fn(inputs)))(x)
