"""The reliability report: one self-contained HTML page of a run's reliability."""

from keras_reliability.report.reliability_report import ReliabilityReport
from keras_reliability.report.reliability_report import write_report

__all__ = ["ReliabilityReport", "write_report"]
