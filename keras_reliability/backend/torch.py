"""PyTorch implementations for keras_reliability.backend."""

import torch
from keras import ops


def argmax(x, axis):
    return torch.argmax(ops.convert_to_tensor(x), dim=axis).to(torch.int32)
