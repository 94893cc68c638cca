"""JAX implementations for keras_reliability.backend."""

import jax.numpy as jnp


def argmax(x, axis):
    return jnp.argmax(x, axis=axis).astype("int32")
