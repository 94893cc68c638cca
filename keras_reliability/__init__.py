"""keras_reliability: trustworthy Keras 3 classifiers inside `model.fit`.

Calibration metrics and calibrators, callbacks that log reliability
diagnostics every epoch, Bayesian and Monte-Carlo layers with predictive
uncertainty, on the TensorFlow, JAX and PyTorch backends.
"""

from keras_reliability import registry
from keras_reliability import attacks
from keras_reliability import metrics
from keras_reliability import calibration
from keras_reliability import callbacks
from keras_reliability import data
from keras_reliability import distributed
from keras_reliability import plotting
from keras_reliability import layers
from keras_reliability import models
from keras_reliability import ood
from keras_reliability import report
from keras_reliability import training
from keras_reliability import uncertainty

__version__ = "0.1.0"
