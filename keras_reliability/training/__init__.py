"""Adversarial-training recipes used by `AdversarialTrainingCallback`.

Registered as `"training_recipe"`: `FGSMTraining` ("fgsm"),
`MixedFGSMTraining` ("mix"), `FastFGSMTraining` ("fgsm_rs"), `PGDTraining`
("pgd"), `TRADESTraining` ("trades"), `NoiseTraining` ("noise"),
`FreeTraining` ("free").
"""

from keras_reliability.training.recipes import FastFGSMTraining
from keras_reliability.training.recipes import FGSMTraining
from keras_reliability.training.recipes import FreeTraining
from keras_reliability.training.recipes import MixedFGSMTraining
from keras_reliability.training.recipes import NoiseTraining
from keras_reliability.training.recipes import PGDTraining
from keras_reliability.training.recipes import Recipe
from keras_reliability.training.recipes import TRADESTraining
