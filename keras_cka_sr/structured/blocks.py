"""Residual blocks as units to remove: find them, score how close each is to the identity,
and rebuild the model without the chosen ones (their skip path kept).

A residual block here is a two-input `Add` (layer or `x + y` op) one of whose inputs, the
skip, is the tensor the other input's branch starts from: every path back from the branch
reaches the skip, and nothing outside the block reads the branch's tensors. Removing the
block makes the Add's output its skip input. Blocks whose shortcut is a projection (a
convolution on the skip) change the shape and are not removable this way.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_cka_sr import _compat, cka
from keras_cka_sr.structured.importance import KERNELS

CRITERIA = ("cka", "angular", "l1")


@dataclasses.dataclass(frozen=True)
class ResidualBlock:
    """An identity-shortcut residual block: the `Add` that closes it, the index of its skip
    input, and the layers of its residual branch (input side first).

    Examples:
        >>> inp = keras.Input((6,))
        >>> h = keras.layers.Dense(6, name="branch")(inp)
        >>> model = keras.Model(inp, keras.layers.Add(name="add")([h, inp]))
        >>> (block,) = structured.residual_blocks(model)
        >>> block.add, block.skip_index, block.branch
        ('add', 1, ('branch',))
    """

    add: str
    skip_index: int
    branch: tuple[str, ...]


def residual_blocks(model: keras.Model) -> list[ResidualBlock]:
    """The identity-shortcut residual blocks of a Functional model's top-level graph, in
    graph order.

    Examples:
        >>> inp = keras.Input((8, 8, 4))
        >>> r = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
        >>> out = keras.layers.Add(name="add")([inp, keras.layers.ReLU(name="relu")(r)])
        >>> structured.residual_blocks(keras.Model(inp, out))
        [ResidualBlock(add='add', skip_index=0, branch=('conv', 'relu'))]
    """
    if not _compat.is_functional(model):
        raise TypeError(
            f"`model` must be a Functional Keras model (a graph to find blocks in); got "
            f"{type(model).__name__}."
        )
    nodes = _compat.graph_nodes(model)
    readers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            readers.setdefault(id(tensor), []).append(node)
    order = {id(n): k for k, n in enumerate(nodes)}
    blocks = []
    for node in nodes:
        if type(node.operation).__name__ != "Add" or len(node.input_tensors) != 2:
            continue
        for skip_index in (0, 1):
            skip = node.input_tensors[skip_index]
            branch = _branch(node.input_tensors[1 - skip_index], skip, readers, node)
            if branch is not None:
                branch.sort(key=lambda n: order[id(n)])
                names = tuple(n.operation.name for n in branch)
                blocks.append(ResidualBlock(node.operation.name, skip_index, names))
                break
    return blocks


def _branch(start, skip, readers, add_node):
    """The nodes between `skip` and `start` (None if some path misses `skip`, or a tensor
    inside is read from outside)."""
    if start is skip:
        return None
    found, stack = {}, [start]
    while stack:
        tensor = stack.pop()
        if tensor is skip:
            continue
        history = getattr(tensor, "_keras_history", None)
        if history is None or isinstance(history.operation, keras.layers.InputLayer):
            return None  # reached a model input without passing the skip
        node = _compat.producer_node(tensor)
        if id(node) in found:
            continue
        found[id(node)] = node
        stack.extend(node.input_tensors)
    inside = set(found) | {id(add_node)}
    for node in found.values():
        for tensor in node.outputs:
            if any(id(reader) not in inside for reader in readers.get(id(tensor), [])):
                return None
    return list(found.values())


def block_scores(
    model: keras.Model, x, criterion: str = "cka", blocks: list[ResidualBlock] | None = None
) -> dict[str, float]:
    """How much each residual block changes its input, by its Add's name.

    `"cka"`: linear CKA between the block's input (the skip) and its output (the Add) on
    the probe batch `x` (1: the block changes nothing a linear read-out would see; remove
    the highest first). `"angular"`: the mean over samples of arccos(cosine)/pi between
    input and output (0: unchanged; remove the lowest first). `"l1"`: the summed |w| of the
    residual branch's kernels (x unused; remove the lowest first).

    Examples:
        >>> inp = keras.Input((8, 8, 4))
        >>> r = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
        >>> model = keras.Model(inp, keras.layers.Add(name="add")([inp, r]))
        >>> x = np.random.default_rng(0).normal(size=(16, 8, 8, 4)).astype("float32")
        >>> 0.0 < structured.block_scores(model, x)["add"] <= 1.0
        True
    """
    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {CRITERIA}; got {criterion!r}.")
    blocks = residual_blocks(model) if blocks is None else blocks
    if not blocks:
        return {}
    if criterion == "l1":
        layers = {layer.name: layer for layer in model.layers}
        return {
            b.add: float(
                sum(
                    np.abs(ops.convert_to_numpy(v)).sum()
                    for name in b.branch
                    if name in layers
                    for v in layers[name].weights
                    if v.name in KERNELS
                )
            )
            for b in blocks
        }
    nodes = {n.operation.name: n for n in _compat.graph_nodes(model)}
    tensors = []
    for b in blocks:
        node = nodes[b.add]
        tensors += [node.input_tensors[b.skip_index], node.outputs[0]]
    probe = keras.Model(_compat.structure_inputs(model, model.inputs), tensors)
    values = [ops.convert_to_numpy(t) for t in probe(x, training=False)]
    scores = {}
    for k, b in enumerate(blocks):
        before, after = values[2 * k], values[2 * k + 1]
        if criterion == "cka":
            scores[b.add] = float(cka.linear_cka(before, after))
        else:
            a = before.reshape(len(before), -1).astype(np.float64)
            c = after.reshape(len(after), -1).astype(np.float64)
            cosine = (a * c).sum(1) / np.maximum(
                np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1), 1e-12
            )
            scores[b.add] = float(np.mean(np.arccos(np.clip(cosine, -1.0, 1.0)) / np.pi))
    return scores


def remove_blocks(model: keras.Model, adds: list[str]) -> keras.Model:
    """A copy of `model` without the residual blocks closed by the Adds named in `adds`:
    each such Add's output becomes its skip input (weights copied; uncompiled).

    Examples:
        >>> inp = keras.Input((8, 8, 4))
        >>> r = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
        >>> h = keras.layers.Add(name="add")([inp, r])
        >>> model = keras.Model(inp, keras.layers.Conv2D(2, 1, name="head")(h))
        >>> smaller = structured.remove_blocks(model, ["add"])
        >>> [layer.name for layer in smaller.layers]
        ['input_layer', 'head']
    """
    blocks = {b.add: b for b in residual_blocks(model)}
    unknown = [name for name in adds if name not in blocks]
    if unknown:
        raise ValueError(
            f"`adds` names no identity-shortcut residual block: {unknown}; the model's are "
            f"{sorted(blocks)} (see `structured.residual_blocks`)."
        )
    removed = {b: blocks[b].skip_index for b in adds}

    def call(operation, *args, **kwargs):
        if operation.name in removed and type(operation).__name__ == "Add":
            inputs = args[0] if len(args) == 1 else args
            return inputs[removed[operation.name]]
        return operation(*args, **kwargs)

    inputs = [
        keras.Input(batch_shape=t.shape, dtype=t.dtype, name=_compat.tensor_operation(t).name)
        for t in model.inputs
    ]
    shared = keras.Model(
        _compat.structure_inputs(model, inputs),
        _compat.run_graph(model, _compat.structure_inputs(model, inputs), call),
        name=model.name,
    )
    with _compat.trusted_deserialization():
        copy = type(shared).from_config(shared.get_config())
    copy.set_weights(shared.get_weights())
    return copy
