"""ViM: virtual-logit matching of the feature residual and the logits."""

import keras
import numpy as np

from keras_reliability.arguments import check_positive_int
from keras_reliability.ood.features import output_layer
from keras_reliability.ood.scorer import FeatureScorer
from keras_reliability.ood.scorer import logsumexp
from keras_reliability.ood.scorer import register_scorer


@register_scorer("vim")
class ViM(FeatureScorer):
    """Virtual-logit matching: feature residual norm against the energy.

    The features entering the final linear layer `z = W f + b` are shifted to
    the origin `u = -W^+ b` (where the logits vanish); `fit` finds the
    principal subspace of the training features around `u`. An input's
    residual, its component outside that subspace, is converted into a
    "virtual logit" `alpha * ||residual||`, with `alpha` matching its scale
    to the logits on training data. The score is
    `alpha * ||residual|| - logsumexp(z)`.

    The model's last layer must be a `keras.layers.Dense` (any activation),
    and the feature is its input.

    Args:
        principal_dim: dimension of the principal subspace; None picks it as
            the paper does (1000 for features of 2048 or more dimensions, 512
            from 768, half the feature dimension below that).
        name: name used in log keys.

    References:
        Wang, Li, Feng and Zhang, "ViM: Out-Of-Distribution with
        Virtual-logit Matching", CVPR 2022.
    """

    needs_exact_logits = True

    def __init__(self, principal_dim=None, name=None):
        super().__init__(None, name)
        self.principal_dim = check_positive_int(
            principal_dim, "principal_dim", allow_none=True, owner="ViM"
        )

    def fit_features(self, features, outputs, labels):
        kernel, bias = _final_dense_weights(outputs.extractor.model)
        dimension = features.shape[1]
        principal_dim = self.principal_dim or _default_principal_dim(dimension)
        if not 0 < principal_dim < dimension:
            raise ValueError(
                f"ViM: `principal_dim` must be below the feature dimension "
                f"{dimension}; received {principal_dim}."
            )
        self.origin = -bias @ np.linalg.pinv(kernel)
        centred = features - self.origin
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(centred))
        # eigh sorts ascending: the residual space is spanned by the
        # eigenvectors of the smallest eigenvalues.
        self.residual_basis = eigenvectors[:, : dimension - principal_dim]
        residual_norm = np.linalg.norm(centred @ self.residual_basis, axis=1)
        max_logit = self.logits(outputs).max(axis=1)
        self.alpha = float(max_logit.mean() / max(residual_norm.mean(), 1e-12))

    def score_outputs(self, outputs):
        self._check_fitted()
        residual = (self.features(outputs) - self.origin) @ self.residual_basis
        virtual_logit = self.alpha * np.linalg.norm(residual, axis=1)
        return virtual_logit - logsumexp(self.logits(outputs))

    def get_config(self):
        config = super().get_config()
        del config["feature_layer"]
        return {**config, "principal_dim": self.principal_dim}


def _default_principal_dim(dimension):
    if dimension >= 2048:
        return 1000
    if dimension >= 768:
        return 512
    return dimension // 2


def _final_dense_weights(model):
    last = output_layer(model)
    if not isinstance(last, keras.layers.Dense):
        raise ValueError(
            "ViM needs a model whose last layer is a keras.layers.Dense (the "
            f"linear classifier); model {model.name!r} ends with "
            f"{type(last).__name__} {last.name!r}."
        )
    kernel = keras.ops.convert_to_numpy(last.kernel).astype(np.float64)
    if last.use_bias:
        bias = keras.ops.convert_to_numpy(last.bias).astype(np.float64)
    else:
        bias = np.zeros(kernel.shape[1])
    return kernel, bias
