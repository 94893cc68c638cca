"""Accuracy under attack, for a range of budgets."""

import numpy as np
from keras import ops

from keras_reliability import distributed
from keras_reliability import registry


def robust_accuracy(model, x, y, attack, epsilons, batch_size=None, verbose=0):
    """Accuracy of `model` on adversarial versions of `x`, per budget.

    Args:
        model: a classifier.
        x: float inputs.
        y: integer (or one-hot) labels.
        attack: an attack instance, name or config (the `"attack"`
            registry); its `epsilon` is replaced by each budget. A name
            builds the attack with its defaults (`input_range` then inferred
            from `x`, with a warning), so pass an instance to set it.
        epsilons: budgets, >= 0; 0 gives the clean accuracy.
        batch_size: overrides the attack's batch size.
        verbose: 1 prints each budget and shows the attack's progress bar.

    Returns:
        A dict `{epsilon: accuracy}` of Python floats, in the order given.
        Robust accuracy is never above the clean accuracy of the same inputs
        for a sound attack; compare with `epsilon=0`.

    Example:

    >>> robust_accuracy(model, x, y, PGD(0.1, input_range=(0, 1)), [0, 0.1, 0.3])
    {0: 0.99, 0.1: 0.93, 0.3: 0.02}

    References:
        Madry et al., "Towards Deep Learning Models Resistant to Adversarial
        Attacks", ICLR 2018 (accuracy-vs-epsilon curves).
    """
    attack = registry.get("attack", attack)
    if isinstance(epsilons, (int, float)) or len(epsilons) == 0:
        raise ValueError(f"`epsilons` must be a non-empty list of budgets; received {epsilons!r}.")
    labels = np.asarray(ops.convert_to_numpy(y))
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)
    labels = labels.reshape(-1)
    config = attack.get_config()
    if batch_size is not None:
        config["batch_size"] = batch_size
    accuracies = {}
    for epsilon in epsilons:
        budgeted = type(attack).from_config({**config, "epsilon": epsilon})
        if verbose:
            print(f"{budgeted.name}, epsilon {epsilon:g}")
        x_adv = budgeted.generate(model, x, labels, verbose) if epsilon > 0 else np.asarray(x)
        predictions = distributed.predict(model, x_adv, batch_size=config["batch_size"])
        accuracies[epsilon] = float(np.mean(np.argmax(predictions, axis=1) == labels))
    return accuracies
