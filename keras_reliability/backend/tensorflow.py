"""TensorFlow implementations for keras_reliability.backend."""

import keras
import tensorflow as tf

from keras_reliability.backend import model_inputs


def argmax(x, axis):
    return tf.argmax(x, axis=axis, output_type=tf.int32)


def input_gradient_function(model, loss, with_outputs):
    @tf.function(reduce_retracing=True)
    def gradient(x, context, *args):
        with tf.GradientTape() as tape:
            tape.watch(x)  # the context (other inputs) is not watched
            outputs = model(model_inputs(x, context), training=False)
            value = tf.reduce_sum(loss(outputs, *args))
        result = tape.gradient(value, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return (result, outputs) if with_outputs else result

    def call(x, *args, context=None):
        return gradient(tf.convert_to_tensor(x, tf.float32), context, *args)

    return call


def forward_function(model):
    forward = tf.function(
        lambda x, context: model(model_inputs(x, context), training=False),
        reduce_retracing=True,
    )
    return lambda x, context=None: forward(tf.convert_to_tensor(x, tf.float32), context)


# How a train function says that its data ran out (`fit` catches them).
END_OF_DATA_ERRORS = (StopIteration, tf.errors.OutOfRangeError)


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """Seeds that differ between the replicas of a `tf.distribute` strategy.

    The replica id is added to the first seed word; replica 0 (and a single
    device) draws what `keras.random.SeedGenerator` draws.
    """

    def next(self, ordered=True):
        seed = super().next(ordered)
        context = tf.distribute.get_replica_context()
        if context is None:  # cross-replica context: no replica of its own
            return seed
        replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
        return seed + tf.stack([replica, tf.zeros_like(replica)])


def free_adversarial_train_step(model, recipe, seed):
    # Keras' TensorFlow train step, with the input among the gradient
    # targets of its one backward pass (keras/src/backend/tensorflow/trainer.py).
    seed_generator = ReplicaSeedGenerator(seed)

    def step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.cast(x, tf.float32)
        delta = recipe.start(x, seed_generator)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for _ in range(recipe.replays):
            inputs = recipe.adversarial(x, delta)
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                y_pred = model(inputs, training=True)
                loss = model.compute_loss(
                    x=inputs, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True
                )
                # The loss of one replica is scaled down for distribution.
                model._loss_tracker.update_state(
                    loss * tf.cast(replicas, loss.dtype), sample_weight=tf.shape(inputs)[0]
                )
                if model.optimizer is not None:
                    loss = model.optimizer.scale_loss(loss)
            weights = model.trainable_weights
            *gradients, input_gradient = tape.gradient(
                loss, [*weights, inputs], unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            model.optimizer.apply_gradients(zip(gradients, weights))
            delta = recipe.update(delta, input_gradient)
        return model.compute_metrics(inputs, y, y_pred, sample_weight=sample_weight)

    return step
