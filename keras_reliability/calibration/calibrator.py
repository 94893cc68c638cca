"""Base class of the post-hoc calibrators: a Keras layer with a `fit`."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_reliability import distributed
from keras_reliability.arrays import real_array
from keras_reliability.data import check_model_inputs
from keras_reliability.metrics._inputs import classification_inputs
from keras_reliability.metrics._inputs import float_tensor
from keras_reliability.models import class_labels
from keras_reliability.models import output_model
from keras_reliability.models import read_model
from keras_reliability.models import select_output

# Floor for log(p) when a calibrator receives probabilities: the smallest
# normal float32, so that genuine tiny probabilities (softmax outputs reach
# 1e-23 on CIFAR) keep their log; only exact zeros are clipped.
_PROBABILITY_FLOOR = float(np.finfo(np.float32).tiny)


class Calibrator(keras.layers.Layer):
    """A layer that maps a classifier's outputs to calibrated outputs.

    Subclasses implement `_scale(logits)` (in `keras.ops`) and
    `_fit_logits(logits, labels, weights)` (numpy, float64), and are fitted
    with `fit(outputs, labels)` on held-out data.

    With `from_logits=True` the layer takes logits and returns calibrated
    logits. With `from_logits=False` it takes probabilities, works on their
    logarithms (softmax is shift-invariant, so this equals scaling the
    logits) and returns calibrated probabilities.

    Args:
        from_logits: whether the layer's inputs are logits.
        **kwargs: base layer arguments (`name`, `dtype`, ...).
    """

    supports_binary = False

    def __init__(self, from_logits=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(from_logits, bool):
            raise ValueError(
                f"`from_logits` must be a bool; received {from_logits!r}."
            )
        self.from_logits = from_logits

    def __call__(self, inputs, *args, **kwargs):
        # Keras casts the inputs before `call`: None or strings would fail
        # there, with a message that does not name `inputs`.
        if not (ops.is_tensor(inputs) or isinstance(inputs, keras.KerasTensor)):
            real_array(inputs, "inputs", type(self).__name__)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        if self.from_logits:
            return self._scale(inputs)
        if len(inputs.shape) == 1:
            # A binary classifier's (N,) sigmoid outputs.
            return ops.squeeze(self.call(ops.expand_dims(inputs, -1)), -1)
        probabilities = ops.maximum(inputs, _PROBABILITY_FLOOR)
        if inputs.shape[-1] == 1:
            two_class = ops.concatenate(
                [ops.log(ops.maximum(1.0 - inputs, _PROBABILITY_FLOOR)),
                 ops.log(probabilities)],
                axis=-1,
            )
            # The sigmoid of the scaled log-odds.
            log_odds = self._scale(two_class)
            return ops.sigmoid(log_odds[:, 1:] - log_odds[:, :1])
        return ops.softmax(self._scale(ops.log(probabilities)), axis=-1)

    def fit(self, y_pred, y_true, *, sample_weight=None):
        """Fits the calibration parameters by minimising the NLL.

        Args:
            y_pred: the classifier's outputs on held-out data, `(N, K)`
                logits (or probabilities when `from_logits=False`).
            y_true: integer labels `(N,)` or one-hot `(N, K)`.
            sample_weight: optional non-negative weights `(N,)`.

        Returns:
            The fitted calibrator (`self`).

        Raises:
            ValueError: on invalid inputs (see
                `keras_reliability.metrics.expected_calibration_error`) or
                when the labels hold a single class.
        """
        num_columns = self._num_columns(y_pred)
        if num_columns == 1 and not self.supports_binary:
            raise ValueError(
                f"{type(self).__name__} needs at least two classes; `y_pred` "
                "has one column. Use TemperatureScaling for a binary "
                "sigmoid classifier."
            )
        labels, two_or_more, weights = classification_inputs(
            y_true, y_pred, from_logits=self.from_logits, sample_weight=sample_weight
        )
        labels = ops.convert_to_numpy(labels)
        distinct = np.unique(labels)
        if distinct.size < 2:
            raise ValueError(
                "Cannot fit a calibrator on a single class: every label in "
                f"`y_true` is {int(distinct[0])}."
            )
        logits = np.asarray(ops.convert_to_numpy(two_or_more), dtype=np.float64)
        if not self.from_logits:
            logits = np.log(np.maximum(logits, _PROBABILITY_FLOOR))
        if weights is None:
            weights = np.ones(len(labels))
        else:
            weights = np.asarray(ops.convert_to_numpy(weights), dtype=np.float64)
        if not self.built:
            self.build((None, num_columns))
        self._fit_logits(logits, labels, weights / weights.sum())
        return self

    @staticmethod
    def _num_columns(y_pred):
        shape = ops.shape(float_tensor(y_pred, "y_pred"))
        return 1 if len(shape) == 1 else int(shape[-1])

    @classmethod
    def calibrate(cls, model, x, y, *, from_logits=None, batch_size=None,
                  sample_weight=None, output=None, **kwargs):
        """Fits a calibrator on `(x, y)` and returns the model followed by it.

        Args:
            model: a trained Keras classifier.
            x, y: held-out inputs and labels (not the training data).
            from_logits: whether `model` outputs logits; `None` reads it
                from the model's graph or, failing that, its outputs (and
                warns when only probabilities can be had). A value that
                contradicts the model is refused.
            batch_size: batch size for `model.predict`.
            sample_weight: optional weights for the fit.
            output: for a model with several outputs, the name or index of
                its classification output; `y` holds that output's labels,
                and the returned model outputs the calibrated one alone.
            **kwargs: arguments of the calibrator's constructor.

        Returns:
            A new `keras.Sequential([model, calibrator])` whose outputs are of
            the same kind as the model's (logits or probabilities), in
            float32 whatever the model's dtype policy. The original model is
            shared, not copied.

        Raises:
            ValueError: for a model whose output is not class scores, a
                `from_logits` that contradicts it, inputs that do not fit the
                model, NaN outputs, or invalid labels.
        """
        owner = f"{cls.__name__}.calibrate"
        declared = from_logits
        reading = read_model(model, output=output, from_logits=from_logits, owner=owner)
        reading.require_class_scores()
        check_model_inputs(model, x, "x", owner)
        outputs = select_output(
            distributed.predict(model, x, batch_size=batch_size), reading.output_index
        )
        if not np.all(np.isfinite(outputs)):
            raise ValueError(f"{owner}: model {model.name!r} returned NaN or infinite outputs.")
        reading.resolve(outputs)
        outputs, from_logits = reading.metric_inputs(outputs)
        if reading.outputs_probabilities and declared is None:
            warnings.warn(
                f"{owner}: the model outputs probabilities; calibrating their "
                "logarithms. Calibrating the logits before the softmax is more accurate.",
                stacklevel=2,
            )
        kwargs.setdefault("dtype", "float32")
        calibrator = cls(from_logits=from_logits, **kwargs)
        num_columns = 1 if outputs.ndim == 1 else outputs.shape[-1]
        # Checked here so that the messages name `y`, not fit's `y_true`.
        labels = class_labels(y, len(outputs), max(num_columns, 2), name="y", owner=owner)
        calibrator.fit(outputs, labels, sample_weight=sample_weight)
        return keras.Sequential(
            [output_model(model, reading.output_index), calibrator],
            name=f"{model.name}_calibrated",
        )

    def get_config(self):
        config = super().get_config()
        config["from_logits"] = self.from_logits
        return config

    def compute_output_shape(self, input_shape):
        return input_shape


def softmax_nll(scaled, labels, weights):
    """Weighted mean NLL of `softmax(scaled)` and its gradient wrt `scaled`."""
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(len(labels))
    loss = np.sum(weights * (log_normaliser - shifted[rows, labels]))
    gradient = np.exp(shifted - log_normaliser[:, None])
    gradient[rows, labels] -= 1.0
    return loss, gradient * weights[:, None]
