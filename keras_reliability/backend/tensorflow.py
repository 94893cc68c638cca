"""TensorFlow implementations for keras_reliability.backend."""

import tensorflow as tf


def argmax(x, axis):
    return tf.argmax(x, axis=axis, output_type=tf.int32)


def input_gradient_function(model, loss):
    @tf.function(reduce_retracing=True)
    def gradient(x, *args):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = tf.reduce_sum(loss(model(x, training=False), *args))
        return tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    def call(x, *args):
        return gradient(tf.convert_to_tensor(x, tf.float32), *args)

    return call
