"""Which input of a multi-input model an attack perturbs.

An attack perturbs one float input; the model's other inputs (metadata,
token ids, a second image held fixed) are its context: they go into every
forward pass unchanged and are not differentiated. The inputs `x` keep the
structure the user gave them (a dict keyed by input names, or a list in the
model's input order); `PerturbedInput` splits `x` into the perturbed array
and the context, and assembles them again inside the compiled passes.
"""

import keras
import numpy as np

from keras_reliability.models.graph import input_names


class PerturbedInput:
    """One input of a structure of inputs, and the structure around it.

    Attributes:
        name: the input's name (the dict key, or the model's input name).
        position: its index in `keras.tree.flatten(x)`.
    """

    def __init__(self, skeleton, position, name):
        self.skeleton = skeleton
        self.position = position
        self.name = name
        # Compiled passes are kept per structure and position.
        self.key = (position, repr(skeleton))

    def split(self, x):
        """`(perturbed, context)`: the perturbed leaf of `x` and the others, a tuple."""
        leaves = keras.tree.flatten(x)
        context = tuple(leaf for i, leaf in enumerate(leaves) if i != self.position)
        return leaves[self.position], context

    def assemble(self, perturbed, context):
        """The structure of inputs with `perturbed` in its place among `context`."""
        leaves = list(context)
        leaves.insert(self.position, perturbed)
        return keras.tree.pack_sequence_as(self.skeleton, leaves)


def perturbed_input(model, x, inputs, owner):
    """The input of `x` that `inputs` names, or None for a single-input model.

    Args:
        model: the attacked model.
        x: its inputs: one array, or a dict or list of arrays.
        inputs: None, or the input to perturb: a name (a key of `x`, or one
            of the model's input names) or an index into the model's inputs.
        owner: the caller's name, for messages.

    Raises:
        ValueError: naming `inputs` when a multi-input model gets no choice,
            or a choice that is not one of its inputs.
    """
    names = input_names(model)
    if not keras.tree.is_nested(x):
        if inputs is not None and inputs not in (0, *names[:1]):
            raise ValueError(
                f"{owner}: `inputs` {inputs!r} names no input of model {model.name!r}, "
                "which takes one input array."
            )
        return None
    skeleton = keras.tree.map_structure(lambda leaf: 0, x)
    if inputs is None and len(keras.tree.flatten(x)) == 1:  # e.g. `[x]`
        return PerturbedInput(skeleton, 0, names[0] if names else "0")
    if inputs is None:
        raise ValueError(
            f"{owner}: model {model.name!r} takes {len(names) or 'several'} inputs "
            f"({', '.join(map(repr, names))}); pass `inputs=` (a name or index) to "
            "choose the float input to perturb. The others are held fixed."
        )
    if isinstance(x, dict):
        keys = list(x)
        if isinstance(inputs, (int, np.integer)) and not isinstance(inputs, bool):
            inputs = names[inputs] if -len(names) <= inputs < len(names) else inputs
        if inputs not in keys:
            raise ValueError(
                f"{owner}: `inputs` must be one of the keys of `x` {keys} or an index "
                f"into the model's inputs {names}; received {inputs!r}."
            )
        paths = [path[0] for path, _ in keras.tree.flatten_with_path(skeleton)]
        return PerturbedInput(skeleton, paths.index(inputs), inputs)
    count = len(keras.tree.flatten(x))
    if isinstance(inputs, str) and inputs in names:
        index = names.index(inputs)
    elif isinstance(inputs, (int, np.integer)) and not isinstance(inputs, bool) and (
        -count <= inputs < count
    ):
        index = int(inputs) % count
    else:
        raise ValueError(
            f"{owner}: `inputs` must be one of the model's inputs {names} or an index "
            f"below {count}; received {inputs!r}."
        )
    return PerturbedInput(skeleton, index, names[index] if names else str(index))
