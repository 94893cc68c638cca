"""Histogram binning, a calibrator for keras-reliability.

Installed, it registers the `calibrator` "histogram_binning":
`keras_reliability.registry.get("calibrator", "histogram_binning")` finds it
without an import of this package.
"""

from keras_reliability_histogram_binning.histogram_binning import HistogramBinning

__all__ = ["HistogramBinning"]
__version__ = "0.1.0"
