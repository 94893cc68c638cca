"""PyTorch implementations for keras_reliability.backend."""

import torch
from keras import ops


def argmax(x, axis):
    return torch.argmax(ops.convert_to_tensor(x), dim=axis).to(torch.int32)


def input_gradient_function(model, loss):
    def call(x, *args):
        x = ops.convert_to_tensor(x, "float32").detach().requires_grad_(True)
        with torch.enable_grad():
            value = loss(model(x, training=False), *args).sum()
            (gradient,) = torch.autograd.grad(value, x, allow_unused=True, materialize_grads=True)
        return gradient

    return call


def adversarial_train_step(model, logits_model, train_step, transform, seed):
    import keras

    from keras_reliability.backend import cross_entropy

    gradient = input_gradient_function(logits_model, cross_entropy)
    seed_generator = keras.random.SeedGenerator(seed)

    def logits(x):
        return logits_model(x, training=False)

    def step(data):
        return train_step(transform(data, gradient, logits, seed_generator))

    return step
