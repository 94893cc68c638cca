"""Calibration metrics: functions on arrays and streaming Keras metrics."""

from keras_reliability.metrics.calibration import adaptive_calibration_error
from keras_reliability.metrics.calibration import brier_decomposition
from keras_reliability.metrics.calibration import brier_score
from keras_reliability.metrics.calibration import classwise_calibration_error
from keras_reliability.metrics.calibration import expected_calibration_error
from keras_reliability.metrics.calibration import max_calibration_error
from keras_reliability.metrics.calibration import negative_log_likelihood
from keras_reliability.metrics.calibration import reliability_bins
from keras_reliability.metrics.calibration import (
    root_mean_square_calibration_error,
)
from keras_reliability.metrics.calibration import smooth_ece
from keras_reliability.metrics.calibration_metrics import (
    ExpectedCalibrationError,
)
from keras_reliability.metrics.calibration_metrics import MaxCalibrationError
from keras_reliability.metrics.calibration_metrics import (
    RootMeanSquareCalibrationError,
)
from keras_reliability.metrics.ood import detection_error
from keras_reliability.metrics.ood import evaluate_ood
from keras_reliability.metrics.ood import fpr_at_tpr
from keras_reliability.metrics.ood import ood_aupr_in
from keras_reliability.metrics.ood import ood_aupr_out
from keras_reliability.metrics.ood import ood_auroc
from keras_reliability.metrics.ood import ood_roc_curve
from keras_reliability.metrics.reliability_bins import ReliabilityBins
from keras_reliability.metrics.smooth_ece import smooth_calibration_error
