"""Callbacks that log reliability diagnostics inside `model.fit`."""

from keras_reliability.callbacks.calibration_callback import CalibrationCallback
from keras_reliability.callbacks.ood_monitor import OODMonitorCallback
from keras_reliability.callbacks.adversarial_training import AdversarialTrainingCallback
