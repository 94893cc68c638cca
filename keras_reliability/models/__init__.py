"""The only place that reads a model.

Which output, what kind of values it holds (logits, probabilities,
log-probabilities, one sigmoid or logit column, or not class scores), the
classification head and its features, logits recovered exactly in one
compiled pass, and class labels normalised once. Every callback, scorer,
attack, calibrator and uncertainty function asks here; see
`docs/architecture.md`.
"""

from keras_reliability.models.extractor import PENULTIMATE
from keras_reliability.models.extractor import FeatureExtractor
from keras_reliability.models.extractor import ModelOutputs
from keras_reliability.models.extractor import NonFiniteOutputsError
from keras_reliability.models.extractor import feature_extractor
from keras_reliability.models.extractor import feature_key
from keras_reliability.models.extractor import run_without_activation
from keras_reliability.models.graph import check_model
from keras_reliability.models.graph import check_single_input
from keras_reliability.models.graph import output_model
from keras_reliability.models.graph import resolve_layer
from keras_reliability.models.inputs import PerturbedInput
from keras_reliability.models.inputs import perturbed_input
from keras_reliability.models.labels import class_labels
from keras_reliability.models.outputs import ModelReading
from keras_reliability.models.outputs import check_output
from keras_reliability.models.outputs import read_model
from keras_reliability.models.outputs import classification_head
from keras_reliability.models.outputs import select_output
