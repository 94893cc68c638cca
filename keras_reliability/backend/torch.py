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
