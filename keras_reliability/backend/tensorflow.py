"""TensorFlow implementations for keras_reliability.backend."""

import tensorflow as tf


def argmax(x, axis):
    return tf.argmax(x, axis=axis, output_type=tf.int32)


def input_gradient(loss_fn, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(loss_fn(x))
    return tape.gradient(loss, x)
