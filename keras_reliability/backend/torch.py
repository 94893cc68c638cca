"""PyTorch implementations for keras_reliability.backend."""

import torch
from keras import ops


def argmax(x, axis):
    return torch.argmax(ops.convert_to_tensor(x), dim=axis).to(torch.int32)


def input_gradient(loss_fn, x):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x).sum()
        (gradient,) = torch.autograd.grad(loss, x)
    return gradient
