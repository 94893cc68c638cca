"""Accuracy under attack, for a range of budgets."""

import numpy as np

from keras_reliability import registry
from keras_reliability.arguments import check_numbers
from keras_reliability.data import check_model_inputs
from keras_reliability.models import class_labels
from keras_reliability.models import feature_extractor
from keras_reliability.models import perturbed_input

_OWNER = "robust_accuracy"


def robust_accuracy(model, x, y, attack, epsilons, batch_size=None, verbose=0, inputs=None):
    """Accuracy of `model` on adversarial versions of `x`, per budget.

    Args:
        model: a classifier.
        x: float inputs; for a model with several inputs, a dict or list of
            arrays (see `inputs`).
        y: integer (or one-hot) labels.
        attack: an attack instance, name or config (the `"attack"`
            registry); its `epsilon` is replaced by each budget. A name
            builds the attack with its defaults (`input_range` then inferred
            from `x`, with a warning), so pass an instance to set it.
        epsilons: a non-empty list (or tuple, or 1-D array) of budgets,
            finite numbers >= 0; 0 gives the clean accuracy.
        batch_size: overrides the attack's batch size.
        verbose: 1 prints each budget and shows the attack's progress bar.
        inputs: for a multi-input model, the float input the attack
            perturbs (a name or index); the others are held fixed.

    Returns:
        A dict `{epsilon: accuracy}` of Python floats (the budgets as
        floats), in the order given.
        Robust accuracy is never above the clean accuracy of the same inputs
        for a sound attack; compare with `epsilon=0`.

    Example:

    >>> robust_accuracy(model, x, y, PGD(0.1, input_range=(0, 1)), [0, 0.1, 0.3])
    {0.0: 0.99, 0.1: 0.93, 0.3: 0.02}

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018 (accuracy-vs-epsilon curves).
    """
    # Both checked before any forward pass: a bad budget would otherwise
    # surface from the attack's constructor, as its `epsilon`, after the
    # clean predictions.
    attack = registry.get("attack", attack, argument="attack", owner=_OWNER)
    epsilons = check_numbers(epsilons, "epsilons", positive=False, owner=_OWNER)
    extractor = feature_extractor(model, (), _OWNER)
    check_model_inputs(model, x, "x", _OWNER)
    perturbed_input(model, x, inputs, _OWNER)  # refused before any pass
    clean = extractor.predict(x, batch_size=batch_size)
    labels = class_labels(y, len(clean), clean.logits.shape[1], name="y", owner=_OWNER)
    config = attack.get_config()
    if batch_size is not None:
        config["batch_size"] = batch_size
    accuracies = {}
    for epsilon in epsilons:
        budgeted = type(attack).from_config({**config, "epsilon": epsilon})
        if verbose:
            print(f"{budgeted.name}, epsilon {epsilon:g}")
        if epsilon > 0:
            logits = extractor.predict(
                budgeted.generate(model, x, labels, verbose, inputs=inputs), batch_size=config["batch_size"]
            ).logits
        else:
            logits = clean.logits
        accuracies[epsilon] = float(np.mean(np.argmax(logits, axis=1) == labels))
    return accuracies
