"""ViM: virtual-logit matching of the feature residual and the logits."""

import keras
import numpy as np

from keras_reliability.arguments import check_positive_int
from keras_reliability.models import classification_head
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

    Raises:
        ValueError: at `fit`, if `principal_dim` is not below the feature
            dimension, or if the centred training features have numerical
            rank <= `principal_dim` (their residual RMS norm is below 1e-4 of
            their RMS norm): the residual would be rounding noise and
            `alpha`, fitted on it, meaningless.

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
        origin = -bias @ np.linalg.pinv(kernel)
        centred = features - origin
        eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred / len(centred))
        # eigh sorts ascending: the residual space is spanned by the
        # eigenvectors of the smallest eigenvalues.
        _check_residual_carries_variance(eigenvalues, principal_dim, dimension)
        residual_basis = eigenvectors[:, : dimension - principal_dim]
        residual_norm = np.linalg.norm(centred @ residual_basis, axis=1)
        max_logit = self.logits(outputs).max(axis=1)
        self.origin = origin
        self.residual_basis = residual_basis
        self.alpha = float(max_logit.mean() / residual_norm.mean())

    def score_outputs(self, outputs):
        self._check_fitted()
        residual = (self.features(outputs) - self.origin) @ self.residual_basis
        virtual_logit = self.alpha * np.linalg.norm(residual, axis=1)
        return virtual_logit - logsumexp(self.logits(outputs))

    def get_config(self):
        config = super().get_config()
        del config["feature_layer"]
        return {**config, "principal_dim": self.principal_dim}


# Smallest RMS residual norm, relative to the RMS norm of the centred
# features, that ViM accepts as a residual (1e-8 of the feature energy).
# Directions the features do not span keep only rounding: ~1e-8 to 1e-6 from
# float32 features and the float64 eigen-decomposition, which `alpha` (mean
# max-logit over mean residual norm) would turn into 1e6 to 1e12. Genuine
# residuals can be small (the trained digits MLP of the tests has a direction
# at 7e-4), hence a floor well below them. TF32 matmuls on GPUs round at
# ~1e-3, above the floor: noise of that size is not caught.
_MIN_RESIDUAL_RATIO = 1e-4


def _check_residual_carries_variance(eigenvalues, principal_dim, dimension):
    """Raises a `ValueError` when the residual space holds only rounding noise.

    Args:
        eigenvalues: ascending eigenvalues of the second moment of the
            centred training features.
        principal_dim: dimension of the principal subspace.
        dimension: the feature dimension.

    Raises:
        ValueError: if the `dimension - principal_dim` smallest eigenvalues
            sum to at most `_MIN_RESIDUAL_RATIO ** 2` of the total, i.e. the
            features have numerical rank <= `principal_dim`.
    """
    # Rounding can leave tiny negative eigenvalues of a PSD matrix.
    eigenvalues = np.maximum(eigenvalues, 0.0)
    total = float(eigenvalues.sum())
    residual = float(eigenvalues[: dimension - principal_dim].sum())
    floor = _MIN_RESIDUAL_RATIO**2 * total
    if residual > floor:
        return
    rank = int(np.sum(eigenvalues > floor))
    ratio = np.sqrt(residual / total) if total > 0 else 0.0
    if rank > 1:
        advice = f"Pass a `principal_dim` below {rank}, or read features"
    else:
        advice = "Read features"
    raise ValueError(
        f"ViM: the training features (dimension {dimension}), centred at the "
        f"origin of the logits, have numerical rank {rank} <= `principal_dim`="
        f"{principal_dim}: their residual outside the principal subspace is "
        f"rounding noise ({ratio:.2g} of the feature norm, RMS), and `alpha` "
        f"fitted on it would be meaningless. {advice} that span more "
        "dimensions (e.g. a layer before a linear bottleneck, or with fewer "
        "dead ReLU units)."
    )


def _default_principal_dim(dimension):
    if dimension >= 2048:
        return 1000
    if dimension >= 768:
        return 512
    return dimension // 2


def _final_dense_weights(model):
    last = classification_head(model, "ViM")
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
