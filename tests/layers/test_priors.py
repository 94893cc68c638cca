"""Tests for the weight priors (`keras_reliability.layers.priors`).

Densities and KL divergences are checked against float64 numpy formulas
written out here (and against numerical integration), not against the
library's own helpers.
"""

import math
import re

import keras
import numpy as np
import pytest
from keras import ops

from keras_reliability.layers import DenseReparameterization
from keras_reliability.layers import NormalPrior
from keras_reliability.layers import Prior
from keras_reliability.layers import ScaleMixturePrior
from keras_reliability.layers import priors
from keras_reliability.layers import sample_groups

# --------------------------------------------------------------------------
# Independent float64 helpers.
# --------------------------------------------------------------------------


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype=np.float64)


def _normal_pdf(w, loc, scale):
    w = np.asarray(w, dtype=np.float64)
    return np.exp(-0.5 * ((w - loc) / scale) ** 2) / (scale * math.sqrt(2.0 * math.pi))


def _mixture_pdf(w, pi, sigma_1, sigma_2):
    return pi * _normal_pdf(w, 0.0, sigma_1) + (1.0 - pi) * _normal_pdf(w, 0.0, sigma_2)


def _kl_normal(mq, sq, mp, sp):
    mq, sq = np.asarray(mq, np.float64), np.asarray(sq, np.float64)
    return np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2.0 * sp**2) - 0.5


def _log_prob(prior, w):
    return _np(prior.log_prob(ops.convert_to_tensor(np.asarray(w, dtype="float32"))))


# --------------------------------------------------------------------------
# NormalPrior.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (0.5, 2.0), (-1.5, 0.1)])
def test_normal_prior_log_prob_matches_gaussian_density(loc, scale):
    w = np.linspace(loc - 4 * scale, loc + 4 * scale, 41)
    expected = np.log(_normal_pdf(w, loc, scale))
    np.testing.assert_allclose(_log_prob(NormalPrior(loc, scale), w), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "prior",
    [NormalPrior(0.3, 0.7), ScaleMixturePrior(0.25, 1.5, 0.1)],
    ids=["normal", "mixture"],
)
def test_prior_density_integrates_to_one(prior):
    w = np.linspace(-12.0, 12.0, 240001)
    density = np.exp(_log_prob(prior, w))
    assert np.trapezoid(density, w) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("loc, scale", [(0.0, 1.0), (0.5, 2.0)])
def test_normal_prior_kl_divergence_matches_closed_form(loc, scale):
    rng = np.random.default_rng(0)
    q_loc = rng.normal(size=(5, 3)).astype("float32")
    q_scale = rng.uniform(0.01, 3.0, size=(5, 3)).astype("float32")
    result = _np(NormalPrior(loc, scale).kl_divergence(q_loc, q_scale))
    assert result.shape == (5, 3)
    np.testing.assert_allclose(result, _kl_normal(q_loc, q_scale, loc, scale), rtol=1e-5, atol=1e-6)
    # KL >= 0, and == 0 only where the posterior equals the prior.
    assert np.all(result > 0)
    same = _np(NormalPrior(loc, scale).kl_divergence(np.float32(loc), np.float32(scale)))
    assert abs(float(same)) < 1e-6


def test_normal_prior_kl_divergence_matches_numerical_integration():
    prior = NormalPrior(0.5, 2.0)
    q_loc, q_scale = 1.3, 0.4
    w = np.linspace(q_loc - 12 * q_scale, q_loc + 12 * q_scale, 200001)
    q = _normal_pdf(w, q_loc, q_scale)
    integrand = q * (np.log(q) - np.log(_normal_pdf(w, 0.5, 2.0)))
    expected = np.trapezoid(integrand, w)
    result = float(_np(prior.kl_divergence(np.float32(q_loc), np.float32(q_scale))))
    assert result == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------
# ScaleMixturePrior.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pi, sigma_1, sigma_2",
    [(0.5, 1.0, math.exp(-6.0)), (0.25, 1.5, 0.1), (0.9, 0.3, 2.0)],
)
def test_scale_mixture_log_prob_matches_mixture_density(pi, sigma_1, sigma_2):
    w = np.concatenate([np.linspace(-3.0, 3.0, 61), [0.0, 1e-3, -0.004]])
    expected = np.log(_mixture_pdf(w, pi, sigma_1, sigma_2))
    result = _log_prob(ScaleMixturePrior(pi, sigma_1, sigma_2), w)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_scale_mixture_log_prob_is_stable_far_in_the_tails():
    # At |w| = 40 both densities underflow in float32 (and the narrow one in
    # float64); the log-density is then that of the wide component alone.
    prior = ScaleMixturePrior(0.3, 1.0, math.exp(-6.0))
    w = np.array([-40.0, 25.0, 40.0])
    result = _log_prob(prior, w)
    assert np.all(np.isfinite(result))
    expected = math.log(0.3) - 0.5 * w**2 - 0.5 * math.log(2.0 * math.pi)
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_scale_mixture_has_no_closed_form_kl():
    assert ScaleMixturePrior().kl_divergence(np.zeros(3, "float32"), np.ones(3, "float32")) is None


def test_scale_mixture_defaults():
    prior = ScaleMixturePrior()
    assert prior.get_config() == {"pi": 0.5, "sigma_1": 1.0, "sigma_2": math.exp(-6.0)}


# --------------------------------------------------------------------------
# The Prior base class and a custom prior without a closed form.
# --------------------------------------------------------------------------


def test_prior_base_log_prob_is_abstract():
    with pytest.raises(NotImplementedError, match="Prior must implement `log_prob`"):
        Prior().log_prob(np.zeros(2, "float32"))
    assert Prior().kl_divergence(0.0, 1.0) is None


class _StandardNormalWithoutClosedForm(Prior):
    """Normal(0, 1) written as a bare log-density, so the layers must use Monte Carlo."""

    def log_prob(self, w):
        return -0.5 * ops.square(w) - 0.5 * math.log(2.0 * math.pi)


def test_custom_prior_without_closed_form_gives_unbiased_monte_carlo_kl():
    # Inside sample_groups(T) the layer's KL is the mean of T one-sample
    # estimates; for a Normal(0, 1) prior its expectation is the closed form.
    groups = 4000
    layer = DenseReparameterization(
        3,
        use_bias=False,
        kernel_prior=_StandardNormalWithoutClosedForm(),
        kernel_untransformed_scale_initializer=keras.initializers.RandomUniform(-2.0, 0.5),
        seed=11,
    )
    layer.build((None, 4))
    x = np.ones((groups, 4), dtype="float32")
    with sample_groups(groups):
        layer(x)
    estimate = float(_np(layer.losses[0]))

    loc = _np(layer.kernel_loc)
    scale = np.finfo(np.float32).eps + np.logaddexp(0.0, _np(layer.kernel_untransformed_scale))
    exact = float(np.sum(_kl_normal(loc, scale, 0.0, 1.0)))
    # Standard deviation of one estimate: sum over weights of
    # log q(w) - log p(w) = -log s - eps^2 / 2 + w^2 / 2, from numpy draws.
    eps = np.random.default_rng(0).normal(size=(20000,) + loc.shape)
    w = loc + scale * eps
    per_sample = np.sum(-np.log(scale) - 0.5 * eps**2 + 0.5 * w**2, axis=(1, 2))
    standard_error = per_sample.std() / math.sqrt(groups)
    assert abs(estimate - exact) < 5 * standard_error
    # The estimate is not the closed form computed some other way.
    assert estimate != pytest.approx(exact, abs=1e-6)


# --------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: NormalPrior(scale=0.0), "NormalPrior: `scale` must be a positive number; received 0.0"),
        (lambda: NormalPrior(scale=-1), "NormalPrior: `scale` must be a positive number; received -1"),
        (lambda: NormalPrior(scale=float("inf")), "`scale` must be a positive number; received inf"),
        (lambda: NormalPrior(loc=float("nan")), "NormalPrior: `loc` must be a finite number; received nan"),
        (lambda: NormalPrior(loc=float("inf")), "`loc` must be a finite number; received inf"),
        (lambda: NormalPrior(loc="a"), "`loc` must be a finite number; received 'a'"),
        (lambda: ScaleMixturePrior(pi=0), "ScaleMixturePrior: `pi` must be in (0, 1); received 0"),
        (lambda: ScaleMixturePrior(pi=1), "`pi` must be in (0, 1); received 1"),
        (lambda: ScaleMixturePrior(pi=1.5), "`pi` must be in (0, 1); received 1.5"),
        (lambda: ScaleMixturePrior(pi=True), "`pi` must be in (0, 1); received True"),
        (lambda: ScaleMixturePrior(sigma_1=0), "`sigma_1` must be a positive number; received 0"),
        (lambda: ScaleMixturePrior(sigma_2=-1), "`sigma_2` must be a positive number; received -1"),
    ],
)
def test_prior_argument_errors(factory, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        factory()


def test_priors_accept_numpy_scalars_like_their_other_arguments():
    prior = NormalPrior(np.float32(0.5), np.float32(2.0))
    assert prior.get_config() == {"loc": 0.5, "scale": 2.0}
    mixture = ScaleMixturePrior(np.float32(0.25), np.float32(1.5), np.float32(0.5))
    assert mixture.pi == 0.25


# --------------------------------------------------------------------------
# Serialization and `priors.get`.
# --------------------------------------------------------------------------


PRIORS = [NormalPrior(0.5, 2.0), ScaleMixturePrior(0.25, 1.5, 0.1)]


@pytest.mark.parametrize("prior", PRIORS, ids=["normal", "mixture"])
def test_prior_config_round_trip(prior):
    clone = type(prior).from_config(prior.get_config())
    assert type(clone) is type(prior)
    assert clone.get_config() == prior.get_config()
    w = np.linspace(-2.0, 2.0, 9)
    np.testing.assert_array_equal(_log_prob(clone, w), _log_prob(prior, w))


@pytest.mark.parametrize("prior", PRIORS, ids=["normal", "mixture"])
def test_prior_keras_serialization_round_trip(prior):
    serialized = keras.saving.serialize_keras_object(prior)
    assert serialized["registered_name"] == f"keras_reliability>{type(prior).__name__}"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(prior)
    assert clone.get_config() == prior.get_config()
    # `priors.get` accepts the serialized dict too.
    got = priors.get(serialized)
    assert type(got) is type(prior) and got.get_config() == prior.get_config()


def test_prior_repr_lists_config():
    assert repr(NormalPrior(0.5, 2.0)) == "NormalPrior(loc=0.5, scale=2.0)"
    assert repr(ScaleMixturePrior(0.25, 1.5, 0.1)) == "ScaleMixturePrior(pi=0.25, sigma_1=1.5, sigma_2=0.1)"


def test_get_none_is_standard_normal():
    prior = priors.get(None)
    assert isinstance(prior, NormalPrior)
    assert prior.get_config() == {"loc": 0.0, "scale": 1.0}


def test_get_returns_instances_unchanged():
    prior = ScaleMixturePrior(0.3)
    assert priors.get(prior) is prior


@pytest.mark.parametrize(
    "identifier, shown",
    [
        ("x", "'x'"),
        (3.0, "3.0"),
        (keras.saving.serialize_keras_object(keras.initializers.Zeros()), "'class_name': 'Zeros'"),
    ],
    ids=["string", "float", "non-prior-config"],
)
def test_get_rejects_non_priors(identifier, shown):
    with pytest.raises(ValueError, match="`prior` must be a `keras_reliability.layers.Prior`") as info:
        priors.get(identifier)
    assert "received " + shown in str(info.value) or shown in str(info.value).split("received ", 1)[1]
