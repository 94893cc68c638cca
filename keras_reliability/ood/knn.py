"""Distance to the k-th nearest training feature, on normalised features."""

import numpy as np
from keras import ops

from keras_reliability.arguments import check_positive_int
from keras_reliability.ood.scorer import FeatureScorer
from keras_reliability.ood.scorer import register_scorer

# Query rows per similarity block: bounds the (rows, bank) matrix in memory.
_QUERY_BLOCK = 512


@register_scorer("knn")
class KNN(FeatureScorer):
    """Euclidean distance to the k-th nearest training feature (both L2-normalised).

    Non-parametric: no class labels and no assumption on the feature
    distribution. The nearest-neighbour search runs with `keras.ops` on the
    backend's device, in blocks of queries.

    Args:
        k: which neighbour's distance is the score (50 in the paper for
            CIFAR-10 with 50,000 training examples; smaller banks want
            smaller k).
        feature_layer: name or index of the feature layer; None for the input
            of the last layer.
        name: name used in log keys.

    Example:

    >>> scorer = KNN(k=10).fit(model, x_train)
    >>> scores = scorer.score(model, x_test)

    References:
        Sun, Ming, Zhu and Li, "Out-of-Distribution Detection with Deep
        Nearest Neighbors", ICML 2022.
    """

    def __init__(self, k=50, feature_layer=None, name=None):
        super().__init__(feature_layer, name)
        self.k = check_positive_int(k, "k", owner="KNN")

    def fit_features(self, features, outputs, labels):
        if len(features) < self.k:
            raise ValueError(
                f"KNN.fit: `k`={self.k} exceeds the {len(features)} training "
                "examples; pass a smaller k or more data."
            )
        self.bank = _normalise(features).astype(np.float32)

    def score_outputs(self, outputs):
        self._check_fitted()
        queries = _normalise(self.features(outputs)).astype(np.float32)
        bank = ops.convert_to_tensor(self.bank)
        similarities = []
        for start in range(0, len(queries), _QUERY_BLOCK):
            block = ops.matmul(
                ops.convert_to_tensor(queries[start : start + _QUERY_BLOCK]), ops.transpose(bank)
            )
            top, _ = ops.top_k(block, self.k)
            similarities.append(ops.convert_to_numpy(top[:, -1]))
        similarity = np.concatenate(similarities).astype(np.float64)
        return np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))

    def get_config(self):
        return {**super().get_config(), "k": self.k}


def _normalise(features):
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)
