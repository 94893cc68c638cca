"""Adversarial attacks and accuracy under attack (registry kind `attack`).

`attack.generate(model, x, y)` returns adversarial inputs inside the
declared `input_range`; the model runs with `training=False` and the loss is
the cross-entropy of its logits. Registered names: `FGSM` ("fgsm"), `PGD`
("pgd", L-inf or L2, random starts and restarts), `APGD` ("apgd", Auto-PGD
on the cross-entropy) and `SquareAttack` ("square", score-based black-box).
"""

from keras_reliability.attacks.apgd import APGD
from keras_reliability.attacks.attack import Attack
from keras_reliability.attacks.fgsm import FGSM
from keras_reliability.attacks.pgd import PGD
from keras_reliability.attacks.square import SquareAttack
from keras_reliability.attacks.robustness import robust_accuracy
