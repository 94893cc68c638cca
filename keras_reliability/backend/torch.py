"""PyTorch implementations for keras_reliability.backend."""

import torch
from keras.src.backend.torch.core import convert_to_tensor


def argmax(x, axis):
    return torch.argmax(convert_to_tensor(x), dim=axis).to(torch.int32)
