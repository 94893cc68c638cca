"""PyTorch implementations for keras_reliability.backend."""

import torch
from keras import ops


def argmax(x, axis):
    return torch.argmax(ops.convert_to_tensor(x), dim=axis).to(torch.int32)


def input_gradient_function(model, loss, with_outputs):
    def call(x, *args):
        x = ops.convert_to_tensor(x, "float32").detach().requires_grad_(True)
        with torch.enable_grad():
            outputs = model(x, training=False)
            value = loss(outputs, *args).sum()
            (gradient,) = torch.autograd.grad(value, x, allow_unused=True, materialize_grads=True)
        return (gradient, outputs.detach()) if with_outputs else gradient

    return call


def forward_function(model):
    def call(x):
        with torch.no_grad():
            return model(ops.convert_to_tensor(x, "float32"), training=False)

    return call
