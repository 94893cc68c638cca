"""Bayesian and Monte-Carlo layers, Keras 3-native on every backend.

`DenseFlipout`, `DenseReparameterization`, `Conv2DFlipout` and
`Conv2DReparameterization` hold a Gaussian posterior over their weights and
add their KL divergence to the model's losses; `MCDropout` keeps dropout on
at inference; `bayesianize` swaps them into an existing model.
"""

from keras_reliability.layers.bayesianize import bayesianize
from keras_reliability.layers.conv_variational import Conv2DFlipout
from keras_reliability.layers.conv_variational import Conv2DReparameterization
from keras_reliability.layers.dense_variational import DenseFlipout
from keras_reliability.layers.dense_variational import DenseReparameterization
from keras_reliability.layers.mc_dropout import MCDropout
from keras_reliability.layers.priors import NormalPrior
from keras_reliability.layers.priors import Prior
from keras_reliability.layers.priors import ScaleMixturePrior
from keras_reliability.layers.sampling import sample_groups
from keras_reliability.layers.variational import VariationalLayer

__all__ = [
    "Conv2DFlipout",
    "Conv2DReparameterization",
    "DenseFlipout",
    "DenseReparameterization",
    "MCDropout",
    "NormalPrior",
    "Prior",
    "ScaleMixturePrior",
    "VariationalLayer",
    "bayesianize",
    "sample_groups",
]
