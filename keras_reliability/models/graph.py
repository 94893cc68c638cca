"""Walking a model's graph: its layers, inputs, outputs and the operation behind a tensor."""

import keras
import numpy as np


def check_model(model, owner):
    """Raises a ValueError naming `model` unless it is a `keras.Model`."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"{owner}: `model` must be a keras.Model; received {type(model).__name__} "
            f"{_short_repr(model)}."
        )
    return model


def model_layers(model, owner):
    """The layers of `model`, without its `InputLayer`s."""
    check_model(model, owner)
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def symbolic_graph(model):
    """`(inputs, outputs)` lists of a functional or Sequential model, or None.

    None for a model without a symbolic graph (a subclassed model, or a
    Sequential model that was never given its input shape).
    """
    try:
        inputs = model.inputs
        outputs = model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return list(inputs), list(outputs)


def output_model(model, index):
    """`model` itself when it has one output, else a model of its output `index`.

    The returned model shares `model`'s layers and weights.
    """
    graph = symbolic_graph(model)
    if graph is None or len(graph[1]) == 1:
        return model
    return keras.Model(
        input_structure(model), graph[1][index], name=f"{model.name}_output_{index}"
    )


def input_names(model):
    """The names by which Keras matches a dict of inputs to the model's inputs.

    The keys of the dict the model was built on, in the order of
    `model.inputs`; otherwise the input tensors' names (`keras.Input(...,
    name=)`). Empty for a model without a symbolic graph.
    """
    structure = getattr(model, "_inputs_struct", None)
    if isinstance(structure, dict):
        return [str(path[0]) for path, _ in keras.tree.flatten_with_path(structure)]
    graph = symbolic_graph(model)
    return [tensor.name for tensor in graph[0]] if graph is not None else []


def input_structure(model):
    """The structure (tensor, dict or list) a functional model's inputs were given in.

    Not `model.input`: once the model is called inside another graph, that
    is the input of the outer call.
    """
    structure = getattr(model, "_inputs_struct", None)
    if structure is not None:
        return structure
    inputs = symbolic_graph(model)[0]
    return inputs[0] if len(inputs) == 1 else inputs


def producer(tensor):
    """`(operation, node)` that produced a symbolic tensor, or `(None, None)`."""
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None, None
    operation, node_index, _ = history
    nodes = getattr(operation, "_inbound_nodes", None) or []
    if node_index >= len(nodes):
        return operation, None
    return operation, nodes[node_index]


def node_inputs(node):
    """The symbolic input tensors of a graph node, flattened."""
    return list(node.input_tensors) if node is not None else []


def check_single_input(model, owner):
    """Raises unless `model` takes one input (when its inputs are known)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # subclassed: unknown until called
        return
    if inputs and len(inputs) != 1:
        raise ValueError(
            f"{owner}: the model must have one input; model {model.name!r} has "
            f"{len(inputs)} inputs ({', '.join(repr(t.name) for t in inputs)})."
        )


def resolve_layer(model, layer, owner):
    """The layer of `model` named (str) or indexed (int) by `layer`.

    Indices count the layers without the `InputLayer`, so an index picks the
    same layer in a Sequential model and its functional twin. None is
    returned for None (the default feature, see `outputs.read_outputs`).
    """
    if layer is None:
        return None
    layers = model_layers(model, owner)
    if isinstance(layer, str):
        for candidate in layers:
            if candidate.name == layer:
                return candidate
        names = ", ".join(repr(candidate.name) for candidate in layers)
        raise ValueError(
            f"{owner}: `feature_layer` {layer!r} is not a layer of model "
            f"{model.name!r}. Its layers: {names}."
        )
    if isinstance(layer, (int, np.integer)) and not isinstance(layer, bool):
        if not -len(layers) <= layer < len(layers):
            raise ValueError(
                f"{owner}: `feature_layer` index {layer} is out of range for "
                f"model {model.name!r}, which has {len(layers)} layers."
            )
        return layers[layer]
    raise ValueError(
        f"{owner}: `feature_layer` must be a layer name, an index or None; received {layer!r}."
    )


def layer_input(layer):
    """The single symbolic input of a layer in its model, or None."""
    try:
        return layer.input
    except (AttributeError, ValueError):
        return None


def layer_output(layer):
    """The single symbolic output of a layer in its model, or a unique sentinel."""
    try:
        return layer.output
    except (AttributeError, ValueError):
        return object()


def _short_repr(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
