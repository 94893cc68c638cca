"""Base class of the Bayesian layers: a Gaussian posterior over the weights.

Every kernel weight has a posterior Normal(loc, scale) with
`scale = eps + softplus(untransformed_scale)` (eps of float32, 1.19e-7), the
parameterisation of `tfp.layers`, so that `interop.tfp.from_tfp` copies the
variables one to one.
Subclasses say how the weights act on the inputs (`_linear`), and a class
attribute chooses the gradient estimator: "reparameterization" draws one
kernel per call, "flipout" draws one perturbation and decorrelates it across
the examples of the batch with random sign flips.
"""

import keras
import numpy as np
from keras import ops

from keras_reliability import backend
from keras_reliability.arguments import check_number
from keras_reliability.layers import priors
from keras_reliability.layers import sampling

# Floor on the posterior standard deviation: float32 eps, as in `tfp.layers`
# (`default_loc_scale_fn`).
SCALE_FLOOR = float(np.finfo(np.float32).eps)


def untransformed_scale(scale):
    """The untransformed parameter whose posterior standard deviation is `scale`."""
    scale = np.asarray(scale, dtype=np.float64)
    if np.any(scale <= SCALE_FLOOR):
        raise ValueError(
            f"A posterior scale must be > {SCALE_FLOOR:.3g} (float32 eps); received {scale.min()!r}."
        )
    shifted = scale - SCALE_FLOOR
    # Inverse of softplus, stable for large arguments.
    return shifted + np.log(-np.expm1(-shifted))


def _default_untransformed_scale_initializer():
    # softplus(-3) ~ 0.049: close to a point mass, as in `tfp.layers`.
    return keras.initializers.RandomNormal(mean=-3.0, stddev=0.1)


class VariationalLayer(keras.layers.Layer):
    """A layer with a mean-field Gaussian posterior over its kernel (and bias).

    The KL divergence of the posterior from the prior, times `kl_weight`, is
    added with `add_loss` at every call: in closed form when the prior has one
    (`NormalPrior`), else as a one-sample Monte-Carlo estimate from the weights
    drawn in that call.

    Inside `sample_groups(T)` (Monte-Carlo prediction on a batch stacked T
    times) every layer draws one kernel per copy, flipout included: flipout
    rows are uncorrelated but share the magnitude of one perturbation, which
    after a nonlinearity correlates the copies and biases a Monte-Carlo
    average.

    Subclasses set `estimator` and implement `_kernel_shape(input_shape)`,
    `_linear(inputs, kernel)`, `_linear_per_group(inputs, kernels)` (inputs
    holding `len(kernels)` stacked copies of a batch) and
    `_sign_shapes(inputs)` (flipout only), and set `channel_axis`, the axis
    of the outputs that the bias is added to.
    """

    estimator = None
    channel_axis = -1

    def __init__(
        self,
        *,
        activation=None,
        use_bias=True,
        bayesian_bias=False,
        kernel_loc_initializer="glorot_uniform",
        kernel_untransformed_scale_initializer=None,
        bias_initializer="zeros",
        bias_untransformed_scale_initializer=None,
        kernel_prior=None,
        bias_prior=None,
        kl_weight=1.0,
        sample_at_inference=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bayesian_bias = bool(bayesian_bias)
        if self.bayesian_bias and not self.use_bias:
            raise ValueError(f"{owner}: `bayesian_bias=True` needs `use_bias=True`.")
        self.kernel_loc_initializer = keras.initializers.get(kernel_loc_initializer)
        self.kernel_untransformed_scale_initializer = keras.initializers.get(
            kernel_untransformed_scale_initializer
            or _default_untransformed_scale_initializer()
        )
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.bias_untransformed_scale_initializer = keras.initializers.get(
            bias_untransformed_scale_initializer or _default_untransformed_scale_initializer()
        )
        self.kernel_prior = priors.get(kernel_prior, "kernel_prior")
        self.bias_prior = priors.get(bias_prior, "bias_prior")
        self.kl_weight = check_number(kl_weight, "kl_weight", positive=False, owner=owner)
        self.sample_at_inference = bool(sample_at_inference)
        self.seed = seed
        # Distinct draws on every tf.distribute replica (keras-team/keras#20611).
        self.seed_generator = backend.replica_seed_generator(seed)

    # Weights.

    def _build_posterior(self, kernel_shape, bias_shape):
        # autocast=False: under mixed precision the KL is summed in float32
        # (a float16 sum over many weights overflows); `call` casts the
        # sampled kernel to the compute dtype itself.
        self.kernel_loc = self.add_weight(
            name="kernel_loc",
            shape=kernel_shape,
            initializer=self.kernel_loc_initializer,
            autocast=False,
        )
        self.kernel_untransformed_scale = self.add_weight(
            name="kernel_untransformed_scale",
            shape=kernel_shape,
            initializer=self.kernel_untransformed_scale_initializer,
            autocast=False,
        )
        self.bias_loc = None
        self.bias_untransformed_scale = None
        if self.use_bias:
            self.bias_loc = self.add_weight(
                name="bias_loc",
                shape=bias_shape,
                initializer=self.bias_initializer,
                autocast=False,
            )
        if self.bayesian_bias:
            self.bias_untransformed_scale = self.add_weight(
                name="bias_untransformed_scale",
                shape=bias_shape,
                initializer=self.bias_untransformed_scale_initializer,
                autocast=False,
            )

    @property
    def kernel_scale(self):
        """Posterior standard deviation of each kernel weight."""
        return SCALE_FLOOR + ops.softplus(self.kernel_untransformed_scale)

    @property
    def bias_scale(self):
        """Posterior standard deviation of each bias, or None if it is deterministic."""
        if self.bias_untransformed_scale is None:
            return None
        return SCALE_FLOOR + ops.softplus(self.bias_untransformed_scale)

    # Forward pass.

    def call(self, inputs, training=None):
        sample = bool(training) or self.sample_at_inference
        groups = sampling.num_sample_groups() if sample else 1
        kernel_loc = self.kernel_loc.value
        kernel_scale = self.kernel_scale
        if not sample:
            kernel_noise = None
            outputs = self._linear(inputs, self._compute(kernel_loc))
        elif groups > 1:
            kernel_noise = self._normal((groups,) + tuple(kernel_loc.shape))
            kernels = kernel_loc + kernel_scale * kernel_noise
            outputs = self._linear_per_group(inputs, self._compute(kernels))
        elif self.estimator == "flipout":
            kernel_noise = self._normal(kernel_loc.shape)
            outputs = self._linear(inputs, self._compute(kernel_loc))
            outputs = outputs + self._flipout_perturbation(
                inputs, self._compute(kernel_scale * kernel_noise)
            )
        else:
            kernel_noise = self._normal(kernel_loc.shape)
            kernel = kernel_loc + kernel_scale * kernel_noise
            outputs = self._linear(inputs, self._compute(kernel))

        kl = self._divergence(self.kernel_prior, kernel_loc, kernel_scale, kernel_noise)
        if self.use_bias:
            bias, bias_kl = self._bias(sample, groups)
            outputs = self._add_bias(outputs, self._compute(bias), groups)
            if bias_kl is not None:
                kl = kl + bias_kl
        self.add_loss(self.kl_weight * kl)

        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _bias(self, sample, groups):
        loc = self.bias_loc.value
        if not self.bayesian_bias:
            return loc, None
        scale = self.bias_scale
        noise = None
        shape = tuple(loc.shape) if groups == 1 else (groups,) + tuple(loc.shape)
        bias = loc
        if sample:
            noise = self._normal(shape)
            bias = loc + scale * noise
        return bias, self._divergence(self.bias_prior, loc, scale, noise)

    def _add_bias(self, outputs, bias, groups):
        if len(bias.shape) == 1:
            if self.channel_axis == -1:
                return outputs + bias
            broadcast = [1] * len(outputs.shape)
            broadcast[self.channel_axis] = bias.shape[0]
            return outputs + ops.reshape(bias, broadcast[1:])
        # One bias sample per group: (groups, channels) against outputs that
        # stack `groups` copies of the batch along axis 0.
        moved = ops.moveaxis(outputs, self.channel_axis, -1)
        moved_shape = tuple(moved.shape[1:])
        grouped = ops.reshape(moved, (groups, -1, bias.shape[-1])) + bias[:, None, :]
        return ops.moveaxis(ops.reshape(grouped, (-1,) + moved_shape), -1, self.channel_axis)

    def _flipout_perturbation(self, inputs, delta_kernel):
        # Wen et al. 2018: x @ (dW * s r^T) = ((x * s) @ dW) * r per example,
        # with Rademacher signs s (inputs) and r (outputs).
        input_shape, output_shape = self._sign_shapes(inputs)
        sign_in = self._rademacher(input_shape)
        sign_out = self._rademacher(output_shape)
        return self._linear(inputs * sign_in, delta_kernel) * sign_out

    # KL divergence.

    def _divergence(self, prior, loc, scale, noise):
        """KL(posterior || prior) summed over the weights, in float32."""
        closed_form = prior.kl_divergence(loc, scale)
        if closed_form is not None:
            return ops.sum(closed_form)
        if noise is None:
            noise = self._normal(tuple(loc.shape))
        # log q(w) - log p(w) at w = loc + scale * noise; with several sample
        # groups, the mean over groups.
        weights = loc + scale * noise
        log_q = priors.normal_log_prob(noise, 0.0, 1.0) - ops.log(scale)
        samples = ops.sum(log_q - prior.log_prob(weights))
        groups = 1 if len(noise.shape) == len(loc.shape) else noise.shape[0]
        return samples / groups

    # Randomness.

    def _normal(self, shape):
        return keras.random.normal(shape, dtype=self.variable_dtype, seed=self.seed_generator)

    def _rademacher(self, shape):
        bits = keras.random.randint(shape, 0, 2, seed=self.seed_generator)
        return ops.cast(2 * bits - 1, self.compute_dtype)

    def _compute(self, value):
        return ops.cast(value, self.compute_dtype)

    # Serialization.

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "bayesian_bias": self.bayesian_bias,
                "kernel_loc_initializer": keras.initializers.serialize(
                    self.kernel_loc_initializer
                ),
                "kernel_untransformed_scale_initializer": keras.initializers.serialize(
                    self.kernel_untransformed_scale_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "bias_untransformed_scale_initializer": keras.initializers.serialize(
                    self.bias_untransformed_scale_initializer
                ),
                "kernel_prior": keras.saving.serialize_keras_object(self.kernel_prior),
                "bias_prior": keras.saving.serialize_keras_object(self.bias_prior),
                "kl_weight": self.kl_weight,
                "sample_at_inference": self.sample_at_inference,
                "seed": self.seed,
            }
        )
        return config
