"""The per-bin summary behind a reliability diagram."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics of top-label confidence against accuracy.

    Produced by `keras_reliability.metrics.reliability_bins` and drawn by
    `keras_reliability.plotting.reliability_diagram`. All arrays are numpy.

    Attributes:
        edges: float array `(num_bins + 1,)`, bin boundaries. Bin `i` holds
            confidences in `(edges[i], edges[i + 1]]` (the first bin also
            holds 0).
        count: float array `(num_bins,)`, (weighted) number of examples per bin.
        confidence: float array `(num_bins,)`, mean confidence per bin, NaN
            where a bin is empty.
        accuracy: float array `(num_bins,)`, fraction correct per bin, NaN
            where a bin is empty.
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def num_bins(self):
        return len(self.count)

    @property
    def total(self):
        """Total (weighted) number of examples."""
        return float(np.sum(self.count))

    @property
    def gap(self):
        """`confidence - accuracy` per bin (positive = overconfident)."""
        return self.confidence - self.accuracy

    @property
    def expected_calibration_error(self):
        """Count-weighted mean of `|accuracy - confidence|` over bins."""
        filled = self.count > 0
        weights = self.count[filled] / self.total
        return float(np.sum(weights * np.abs(self.gap[filled])))

    @property
    def overall_confidence(self):
        filled = self.count > 0
        return float(
            np.sum(self.count[filled] * self.confidence[filled]) / self.total
        )

    @property
    def overall_accuracy(self):
        filled = self.count > 0
        return float(
            np.sum(self.count[filled] * self.accuracy[filled]) / self.total
        )
