"""Post-hoc calibrators: Keras layers fitted on held-out logits."""

from keras_reliability.calibration.affine_scaling import MatrixScaling
from keras_reliability.calibration.affine_scaling import VectorScaling
from keras_reliability.calibration.calibrator import Calibrator
from keras_reliability.calibration.temperature_scaling import TemperatureScaling
