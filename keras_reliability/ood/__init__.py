"""Out-of-distribution scorers: higher score = more out-of-distribution.

Every scorer follows one contract: `scorer.fit(model, x_train, y_train)`
returns the scorer (a no-op for post-hoc scorers) and
`scorer.score(model, x)` returns one float per example. They are registered
as `"ood_scorer"` plugins under the names in parentheses:

- from the logits: `MaxSoftmax` ("msp"), `MaxLogit` ("maxlogit"), `Energy`
  ("energy"), `Entropy` ("entropy");
- with input perturbation: `ODIN` ("odin");
- from hidden features fitted on training data: `Mahalanobis`
  ("mahalanobis"), `KNN` ("knn"), `ViM` ("vim"), `ReAct` ("react");
- from Monte-Carlo samples: `MutualInformation` ("mutual_information").
"""

from keras_reliability.models import FeatureExtractor
from keras_reliability.models import ModelOutputs
from keras_reliability.ood.knn import KNN
from keras_reliability.ood.logit_scorers import Energy
from keras_reliability.ood.logit_scorers import Entropy
from keras_reliability.ood.logit_scorers import MaxLogit
from keras_reliability.ood.logit_scorers import MaxSoftmax
from keras_reliability.ood.mahalanobis import Mahalanobis
from keras_reliability.ood.mutual_information import MutualInformation
from keras_reliability.ood.odin import ODIN
from keras_reliability.ood.react import ReAct
from keras_reliability.ood.scorer import FeatureScorer
from keras_reliability.ood.scorer import OODScorer
from keras_reliability.ood.vim import ViM
