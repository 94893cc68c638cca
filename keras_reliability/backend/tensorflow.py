"""TensorFlow implementations for keras_reliability.backend."""

import tensorflow as tf


def argmax(x, axis):
    return tf.argmax(x, axis=axis, output_type=tf.int32)


def input_gradient_function(model, loss, with_outputs):
    @tf.function(reduce_retracing=True)
    def gradient(x, *args):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = model(x, training=False)
            value = tf.reduce_sum(loss(outputs, *args))
        result = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return (result, outputs) if with_outputs else result

    def call(x, *args):
        return gradient(tf.convert_to_tensor(x, tf.float32), *args)

    return call


def forward_function(model):
    forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return lambda x: forward(tf.convert_to_tensor(x, tf.float32))
