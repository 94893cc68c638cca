"""Bayesian 2D convolutions: Conv2DReparameterization and Conv2DFlipout."""

import math

import keras
from keras import ops

from keras_reliability.arguments import check_positive_int
from keras_reliability.layers.variational import VariationalLayer

_ARGS_DOC = """
    Args:
        filters: positive int, number of output channels.
        kernel_size: int or tuple of 2 ints, height and width of the window.
        strides: int or tuple of 2 ints.
        padding: "valid" or "same".
        data_format: "channels_last" or "channels_first"; default
            `keras.config.image_data_format()`.
        dilation_rate: int or tuple of 2 ints.
        activation, use_bias, bayesian_bias, kernel_loc_initializer,
        kernel_untransformed_scale_initializer, bias_initializer,
        bias_untransformed_scale_initializer, kernel_prior, bias_prior,
        kl_weight, sample_at_inference, seed: as in `DenseFlipout`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).
"""


def _pair(value, name, owner):
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2:
        raise ValueError(f"{owner}: `{name}` must be an int or a tuple of 2 ints; received {value!r}.")
    return tuple(check_positive_int(v, name, owner=owner) for v in values)


class _VariationalConv2D(VariationalLayer):
    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.filters = check_positive_int(filters, "filters", owner=owner)
        self.kernel_size = _pair(kernel_size, "kernel_size", owner)
        self.strides = _pair(strides, "strides", owner)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate", owner)
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"{owner}: `padding` must be 'valid' or 'same'; received {padding!r}.")
        self.padding = padding
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"{owner}: `data_format` must be 'channels_last' or 'channels_first'; "
                f"received {data_format!r}."
            )
        self.data_format = data_format
        self.channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[self.channel_axis]
        if channels is None:
            raise ValueError(f"{type(self).__name__}: the channel axis of the inputs must be known; received shape {input_shape}.")
        self._build_posterior(self.kernel_size + (channels, self.filters), (self.filters,))
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={self.channel_axis: channels})

    def _linear(self, inputs, kernel):
        return ops.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )

    def _linear_per_group(self, inputs, kernels):
        # One grouped convolution: copy t of the batch moves into channel
        # group t, whose filters are kernel sample t.
        groups = kernels.shape[0]
        channels_last = self.data_format == "channels_last"
        spatial = tuple(inputs.shape[1:3] if channels_last else inputs.shape[2:4])
        channels = inputs.shape[self.channel_axis]
        if channels_last:
            stacked = ops.reshape(inputs, (groups, -1) + spatial + (channels,))
            stacked = ops.transpose(stacked, (1, 2, 3, 0, 4))
            stacked = ops.reshape(stacked, (-1,) + spatial + (groups * channels,))
        else:
            stacked = ops.reshape(inputs, (groups, -1, channels) + spatial)
            stacked = ops.transpose(stacked, (1, 0, 2, 3, 4))
            stacked = ops.reshape(stacked, (-1, groups * channels) + spatial)
        kernel = ops.transpose(kernels, (1, 2, 3, 0, 4))
        kernel = ops.reshape(kernel, self.kernel_size + (channels, groups * self.filters))
        outputs = self._linear(stacked, kernel)
        if channels_last:
            out_spatial = tuple(outputs.shape[1:3])
            outputs = ops.reshape(outputs, (-1,) + out_spatial + (groups, self.filters))
            outputs = ops.transpose(outputs, (3, 0, 1, 2, 4))
            return ops.reshape(outputs, (-1,) + out_spatial + (self.filters,))
        out_spatial = tuple(outputs.shape[2:4])
        outputs = ops.reshape(outputs, (-1, groups, self.filters) + out_spatial)
        outputs = ops.transpose(outputs, (1, 0, 2, 3, 4))
        return ops.reshape(outputs, (-1, self.filters) + out_spatial)

    def _sign_shapes(self, inputs):
        # One sign per example and channel, shared over the spatial positions
        # (as in `tfp.layers.Convolution2DFlipout`).
        batch = ops.shape(inputs)[0]
        channels = inputs.shape[self.channel_axis]
        if self.data_format == "channels_last":
            return (batch, 1, 1, channels), (batch, 1, 1, self.filters)
        return (batch, channels, 1, 1), (batch, self.filters, 1, 1)

    def compute_output_shape(self, input_shape):
        channels_last = self.data_format == "channels_last"
        spatial = input_shape[1:3] if channels_last else input_shape[2:4]
        out = []
        for size, kernel, stride, dilation in zip(
            spatial, self.kernel_size, self.strides, self.dilation_rate
        ):
            if size is None:
                out.append(None)
            elif self.padding == "same":
                out.append(math.ceil(size / stride))
            else:
                out.append((size - dilation * (kernel - 1) - 1) // stride + 1)
        if channels_last:
            return (input_shape[0], *out, self.filters)
        return (input_shape[0], self.filters, *out)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_reliability")
class Conv2DReparameterization(_VariationalConv2D):
    __doc__ = (
        """2D convolution with a Gaussian posterior over its filters (Bayes by Backprop).

    Each call draws one kernel `W = loc + scale * eps` and convolves with it;
    the KL divergence times `kl_weight` goes to the layer's losses. A drop-in
    replacement for `keras.layers.Conv2D` (without `groups`).
"""
        + _ARGS_DOC
        + """
    Example:

    >>> layer = Conv2DReparameterization(16, 3, padding="same", activation="relu")

    References:
        Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015.
    """
    )

    estimator = "reparameterization"


@keras.saving.register_keras_serializable(package="keras_reliability")
class Conv2DFlipout(_VariationalConv2D):
    __doc__ = (
        """2D convolution with a Gaussian posterior and Flipout perturbations.

    Output `conv(x, loc) + conv(x * s, dW) * r` with one perturbation `dW` per
    call and random signs `s`, `r` per example and channel. A drop-in
    replacement for `keras.layers.Conv2D` (without `groups`).
"""
        + _ARGS_DOC
        + """
    Example:

    >>> layer = Conv2DFlipout(16, 3, padding="same", activation="relu")

    References:
        Wen et al., "Flipout: Efficient Pseudo-Independent Weight Perturbations
        on Mini-Batches", ICLR 2018.
    """
    )

    estimator = "flipout"
