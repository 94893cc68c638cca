"""keras_reliability: trustworthy Keras 3 classifiers inside `model.fit`.

Calibration metrics and calibrators, and callbacks that log reliability
diagnostics every epoch, on the TensorFlow, JAX and PyTorch backends.
"""

from keras_reliability import registry
from keras_reliability import metrics
from keras_reliability import calibration
from keras_reliability import callbacks
from keras_reliability import plotting

__version__ = "0.1.0"
