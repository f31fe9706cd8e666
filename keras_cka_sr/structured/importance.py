"""How much each channel of a group matters: one score per channel, summed over every
weight the channel's removal deletes."""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_cka_sr._autodiff import gradients
from keras_cka_sr.structured.graph import ChannelGroup, DependencyGraph

KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")
IMPORTANCES = ("l1", "l2", "bn_scale", "taylor")


def layers_by_path(model, prefix: str = "") -> dict:
    """Every layer of a Functional or Sequential model by its path (`outer/inner` inside
    nested sub-models); the sub-models themselves are not listed."""
    from keras_cka_sr import _compat

    found = {}
    for layer in model.layers:
        if _compat.is_graph_model(layer):
            found.update(layers_by_path(layer, prefix + layer.name + "/"))
        else:
            found[prefix + layer.name] = layer
    return found


def weight_of(layer, name: str):
    """The variable of `layer` called `name`, or None (a layer without bias)."""
    return next((v for v in layer.weights if v.name == name), None)


def channel_slices(graph: DependencyGraph, group: ChannelGroup, values: dict, names):
    """Yields `(array, axis, offset, width, repeat)` for every weight named in `names`
    whose axis carries the group's channels: channel j of the group sits at indices
    `p * width + offset + j` for p < repeat."""
    for sliced in graph.sliced:
        if sliced.weight not in names or (sliced.layer, sliced.weight) not in values:
            continue
        offset = 0
        for space, size in zip(sliced.map.spaces, sliced.map.sizes):
            if graph.root(space) == group.id:
                yield (
                    values[(sliced.layer, sliced.weight)],
                    sliced.axis,
                    offset,
                    sliced.map.width,
                    sliced.map.repeat,
                )
            offset += size


def _per_channel(array, axis, offset, width, repeat, size, power) -> np.ndarray:
    moved = np.moveaxis(np.asarray(array, np.float64), axis, 0).reshape(repeat, width, -1)
    part = np.abs(moved[:, offset : offset + size, :]) ** power
    return part.sum(axis=(0, 2))


def group_scores(
    graph: DependencyGraph, importance: str = "l1", data=None, loss=None
) -> dict[int, np.ndarray | None]:
    """A score per channel for every prunable group (None where `bn_scale` finds no
    BatchNormalization in the group)."""
    model = graph.model
    layers = layers_by_path(model)
    names = ("gamma",) if importance == "bn_scale" else KERNELS
    values = {}
    for sliced in graph.sliced:
        variable = weight_of(layers[sliced.layer], sliced.weight)
        if sliced.weight in names and variable is not None:
            values[(sliced.layer, sliced.weight)] = ops.convert_to_numpy(variable)
    if importance == "taylor":
        values = _taylor_products(model, layers, values, data, loss)
    power = 2 if importance == "l2" else 1
    scores = {}
    for group in graph.groups:
        if not group.prunable:
            continue
        total, found = np.zeros(group.size), False
        for array, axis, offset, width, repeat in channel_slices(graph, group, values, names):
            total += _per_channel(array, axis, offset, width, repeat, group.size, power)
            found = True
        scores[group.id] = (np.sqrt(total) if power == 2 else total) if found else None
    return scores


def _taylor_products(model, layers, values, data, loss):
    """|w * dL/dw| for every kernel in `values`, the gradient summed over `data`'s batches
    (inference-mode forward passes)."""
    import keras

    x, y = data
    loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    trainable = list(model.trainable_variables)
    position = {id(v): k for k, v in enumerate(trainable)}
    keys = [key for key in values if id(weight_of(layers[key[0]], key[1])) in position]
    non_trainable = [ops.convert_to_tensor(v) for v in model.non_trainable_variables]
    current = [ops.convert_to_tensor(v) for v in trainable]

    def loss_of(weights, xb, yb):
        outputs, _ = model.stateless_call(weights, non_trainable, xb, training=False)
        return loss(yb, ops.cast(outputs, "float32"))

    total = [np.zeros(tuple(v.shape), np.float64) for v in trainable]
    x, y = np.asarray(x), np.asarray(y)
    for start in range(0, len(x), 256):
        xb, yb = x[start : start + 256], y[start : start + 256]
        grads = gradients(lambda ws, xb=xb, yb=yb: loss_of(ws, xb, yb), current)
        for acc, g in zip(total, grads):
            acc += ops.convert_to_numpy(g).astype(np.float64)
    products = {}
    for key in keys:
        k = position[id(weight_of(layers[key[0]], key[1]))]
        products[key] = np.abs(values[key] * total[k])
    return products
