"""Vector and matrix scaling: affine maps of the logits fitted by NLL."""

import keras
import numpy as np
from keras import ops

from keras_reliability import registry
from keras_reliability.calibration import lbfgs
from keras_reliability.calibration.calibrator import Calibrator
from keras_reliability.arguments import check_number
from keras_reliability.calibration.calibrator import softmax_nll


def _check_num_classes(layer, shape, argument, num_classes):
    """Raises a ValueError naming `argument` when its last axis is not `num_classes`.

    The parameters have one entry per class, fixed when the layer is built
    (by its first `fit` or call); other class counts would fail inside the
    backend with a broadcasting or matmul error. An unknown (symbolic) size
    is left to the backend.
    """
    columns = shape[-1] if len(shape) else None
    if columns is not None and columns != num_classes:
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} has parameters for "
            f"{num_classes} classes, but `{argument}` has {columns} columns "
            f"(shape {tuple(shape)}). Use a new calibrator for another number "
            "of classes."
        )


def _preconditioner(penalty_curvature):
    """Per-parameter scale that evens out the curvature an L2 penalty adds.

    The NLL's own curvature is of order 1 per parameter; a penalty
    `c * x**2 / 2` adds `c`. Searching over `x * sqrt(1 + c)` keeps the
    problem well conditioned even for penalties of 1e9.
    """
    return 1.0 / np.sqrt(1.0 + penalty_curvature)


@keras.saving.register_keras_serializable(package="keras_reliability")
@registry.register("calibrator", "vector_scaling")
class VectorScaling(Calibrator):
    """Scales and shifts each class's logit: `z * scale + bias`.

    Fitted by minimising the held-out NLL (plus `bias_l2 * mean(bias**2)`)
    with L-BFGS on the host. Unlike temperature scaling it can change the
    predicted class. Parameters are non-trainable: they are set by `fit`.

    Args:
        from_logits: whether inputs are logits (default) or probabilities.
        bias_l2: L2 penalty on the biases, >= 0.
        **kwargs: base layer arguments.

    Example:

    ```python
    vs = VectorScaling().fit(val_logits, val_labels)
    calibrated_logits = vs(test_logits)
    ```

    References:
        - Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    def __init__(self, from_logits=True, bias_l2=0.0, **kwargs):
        super().__init__(from_logits=from_logits, **kwargs)
        self.bias_l2 = check_number(bias_l2, "bias_l2", positive=False)

    def build(self, input_shape):
        num_classes = input_shape[-1]
        self.scale = self.add_weight(
            shape=(num_classes,), initializer="ones", trainable=False, name="scale"
        )
        self.bias = self.add_weight(
            shape=(num_classes,), initializer="zeros", trainable=False, name="bias"
        )

    def _scale(self, logits):
        _check_num_classes(self, logits.shape, "inputs", self.scale.shape[0])
        return logits * ops.cast(self.scale, logits.dtype) + ops.cast(
            self.bias, logits.dtype
        )

    def _fit_logits(self, logits, labels, weights):
        num_classes = logits.shape[1]
        _check_num_classes(self, logits.shape, "y_pred", self.scale.shape[0])

        def loss_and_gradient(parameters):
            scale, bias = parameters[:num_classes], parameters[num_classes:]
            loss, grad_scaled = softmax_nll(logits * scale + bias, labels, weights)
            loss += self.bias_l2 * np.mean(bias**2)
            grad_scale = np.sum(grad_scaled * logits, axis=0)
            grad_bias = grad_scaled.sum(axis=0) + 2 * self.bias_l2 * bias / num_classes
            return loss, np.concatenate([grad_scale, grad_bias])

        start = np.concatenate([np.ones(num_classes), np.zeros(num_classes)])
        bias_curvature = 2 * self.bias_l2 / num_classes
        scale = _preconditioner(
            np.concatenate([np.zeros(num_classes), np.full(num_classes, bias_curvature)])
        )
        solution, *_ = lbfgs.minimize(
            loss_and_gradient, start, scale=scale, name="VectorScaling.fit"
        )
        self.scale.assign(solution[:num_classes])
        self.bias.assign(solution[num_classes:])

    def get_config(self):
        config = super().get_config()
        config["bias_l2"] = self.bias_l2
        return config


@keras.saving.register_keras_serializable(package="keras_reliability")
@registry.register("calibrator", "matrix_scaling")
class MatrixScaling(Calibrator):
    """A full affine map of the logits, `z @ kernel + bias`, with ODIR.

    Minimises the held-out NLL plus Kull et al.'s off-diagonal and intercept
    regularisation (ODIR):
    `off_diagonal_l2 * mean(offdiag(kernel)**2) + bias_l2 * mean(bias**2)`.
    Without regularisation matrix scaling has K * (K + 1) free parameters and
    overfits quickly with many classes; Kull et al. choose both penalties by
    cross-validation. Parameters are non-trainable: they are set by `fit`.

    Args:
        from_logits: whether inputs are logits (default) or probabilities.
        off_diagonal_l2: penalty on the off-diagonal kernel entries, >= 0.
        bias_l2: penalty on the biases, >= 0.
        **kwargs: base layer arguments.

    Example:

    ```python
    ms = MatrixScaling(off_diagonal_l2=1e-2, bias_l2=1e-2)
    ms.fit(val_logits, val_labels)
    ```

    References:
        - Kull et al., "Beyond temperature scaling: Obtaining well-calibrated
          multi-class probabilities with Dirichlet calibration", NeurIPS 2019.
    """

    def __init__(self, from_logits=True, off_diagonal_l2=0.0, bias_l2=0.0, **kwargs):
        super().__init__(from_logits=from_logits, **kwargs)
        self.off_diagonal_l2 = check_number(off_diagonal_l2, "off_diagonal_l2", positive=False)
        self.bias_l2 = check_number(bias_l2, "bias_l2", positive=False)

    def build(self, input_shape):
        num_classes = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(num_classes, num_classes),
            initializer="identity",
            trainable=False,
            name="kernel",
        )
        self.bias = self.add_weight(
            shape=(num_classes,), initializer="zeros", trainable=False, name="bias"
        )

    def _scale(self, logits):
        _check_num_classes(self, logits.shape, "inputs", self.kernel.shape[0])
        return ops.matmul(logits, ops.cast(self.kernel, logits.dtype)) + ops.cast(
            self.bias, logits.dtype
        )

    def _fit_logits(self, logits, labels, weights):
        num_classes = logits.shape[1]
        _check_num_classes(self, logits.shape, "y_pred", self.kernel.shape[0])
        size = num_classes * num_classes
        off_diagonal = 1.0 - np.eye(num_classes)
        num_off_diagonal = max(num_classes * (num_classes - 1), 1)

        def loss_and_gradient(parameters):
            kernel = parameters[:size].reshape(num_classes, num_classes)
            bias = parameters[size:]
            loss, grad_scaled = softmax_nll(logits @ kernel + bias, labels, weights)
            penalised = kernel * off_diagonal
            loss += self.off_diagonal_l2 * np.sum(penalised**2) / num_off_diagonal
            loss += self.bias_l2 * np.mean(bias**2)
            grad_kernel = logits.T @ grad_scaled
            grad_kernel += 2 * self.off_diagonal_l2 * penalised / num_off_diagonal
            grad_bias = grad_scaled.sum(axis=0) + 2 * self.bias_l2 * bias / num_classes
            return loss, np.concatenate([grad_kernel.ravel(), grad_bias])

        start = np.concatenate([np.eye(num_classes).ravel(), np.zeros(num_classes)])
        kernel_curvature = 2 * self.off_diagonal_l2 * off_diagonal / num_off_diagonal
        bias_curvature = np.full(num_classes, 2 * self.bias_l2 / num_classes)
        scale = _preconditioner(
            np.concatenate([kernel_curvature.ravel(), bias_curvature])
        )
        solution, *_ = lbfgs.minimize(
            loss_and_gradient, start, scale=scale, name="MatrixScaling.fit"
        )
        self.kernel.assign(solution[:size].reshape(num_classes, num_classes))
        self.bias.assign(solution[size:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {"off_diagonal_l2": self.off_diagonal_l2, "bias_l2": self.bias_l2}
        )
        return config
