"""Mahalanobis distance to class-conditional Gaussians with a shared covariance."""

import numpy as np

from keras_reliability.ood.scorer import FeatureScorer
from keras_reliability.ood.scorer import register_scorer


@register_scorer("mahalanobis")
class Mahalanobis(FeatureScorer):
    """Smallest Mahalanobis distance from a feature to a class mean.

    `fit` estimates one mean per class and a covariance shared by all
    classes (the tied covariance of linear discriminant analysis) from the
    features of labelled training data; the score of an input is
    `min_c (f - mu_c)^T Sigma^+ (f - mu_c)`, with `Sigma^+` the
    pseudo-inverse. This is the single-layer detector of the paper without
    its input preprocessing and layer ensemble.

    Args:
        feature_layer: name or index of the feature layer; None for the input
            of the last layer.
        name: name used in log keys.

    Example:

    >>> scorer = Mahalanobis().fit(model, x_train, y_train)
    >>> scores = scorer.score(model, x_test)

    References:
        Lee, Lee, Lee and Shin, "A Simple Unified Framework for Detecting
        Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018.
    """

    requires_labels = True

    def fit_features(self, features, outputs, labels):
        if labels is None:
            raise ValueError("Mahalanobis.fit needs the labels `y` of the training data.")
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(
                f"Mahalanobis.fit: the training labels hold {len(classes)} class; "
                "at least 2 are needed."
            )
        means = np.stack([features[labels == c].mean(axis=0) for c in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        covariance = centred.T @ centred / len(features)
        self.classes = classes
        self.means = means
        self.precision = np.linalg.pinv(covariance, hermitian=True)

    def score_outputs(self, outputs):
        self._check_fitted()
        features = self.features(outputs)
        projected = features @ self.precision
        # (f - mu)^T P (f - mu) = f^T P f - 2 f^T P mu + mu^T P mu, per class.
        squared = (
            np.einsum("nd,nd->n", projected, features)[:, None]
            - 2.0 * projected @ self.means.T
            + np.einsum("cd,dk,ck->c", self.means, self.precision, self.means)[None, :]
        )
        return np.maximum(squared, 0.0).min(axis=1)
