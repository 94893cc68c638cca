"""PyTorch implementations for keras_reliability.backend."""

import keras
import torch
from keras import ops

from keras_reliability.backend import model_inputs


def argmax(x, axis):
    return torch.argmax(ops.convert_to_tensor(x), dim=axis).to(torch.int32)


def input_gradient_function(model, loss, with_outputs):
    def call(x, *args, context=None):
        x = ops.convert_to_tensor(x, "float32").detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(model_inputs(x, context), training=False)
            value = loss(outputs, *args).sum()
            (gradient,) = torch.autograd.grad(value, x, allow_unused=True, materialize_grads=True)
        return (gradient, outputs.detach()) if with_outputs else gradient

    return call


def forward_function(model):
    def call(x, context=None):
        with torch.no_grad():
            x = ops.convert_to_tensor(x, "float32")
            return model(model_inputs(x, context), training=False)

    return call


def free_adversarial_train_step(model, recipe, seed):
    # The model's own step runs `loss.backward()`, which also fills the
    # `.grad` of the input when the input is a leaf that requires it.
    train_step = model.train_step
    seed_generator = keras.random.SeedGenerator(seed)

    def step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = ops.convert_to_tensor(x, "float32")
        delta = recipe.start(x, seed_generator)
        for _ in range(recipe.replays):
            inputs = recipe.adversarial(x, delta).detach().requires_grad_(True)
            logs = train_step(keras.utils.pack_x_y_sample_weight(inputs, y, sample_weight))
            gradient = inputs.grad if inputs.grad is not None else torch.zeros_like(inputs)
            delta = recipe.update(delta, gradient).detach()
        return logs

    return step
