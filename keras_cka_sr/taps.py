"""`block_taps`: the layers CKA-SR compares in a model it was not written for, found from the
graph: transformer blocks (a keras_hub backbone's `TransformerDecoder`s), else the `Add`
layers that close identity-shortcut residual blocks; grouped as the paper groups ResNet
stages (consecutive blocks of one output shape)."""

import keras

from keras_cka_sr import _compat


def block_taps(model: keras.Model) -> list[list[str]]:
    """Names of a model's block outputs, one list per run of blocks with one output shape.

    A block is, in graph order (nested functional models included, e.g. a keras_hub task
    model's backbone):

    * a layer that holds an attention layer (`keras.layers.MultiHeadAttention` or a
      subclass, such as keras_hub's `CachedMultiHeadAttention`) and returns a tensor of
      its first input's shape: a transformer block (keras_hub's `TransformerEncoder` and
      `TransformerDecoder`, a user's own block layer);
    * if the model has none, an `Add` layer closing an identity-shortcut residual block
      (`structured.residual_blocks`): a ResNet's blocks, or the attention and feed-forward
      sub-blocks of a transformer written layer by layer.

    Names, not layer types or name patterns, are what it returns, so the result goes
    straight to `attach_cka_loss(model, block_taps(model), loss)` or `CKAMonitor`.
    Raises `ValueError` when no two blocks share an output shape (nothing to compare).

    Examples:
        >>> inp = keras.Input((6,))
        >>> h = inp
        >>> for i in range(3):
        ...     h = keras.layers.Add(name=f"block{i}")([h, keras.layers.Dense(6)(h)])
        >>> keras_cka_sr.block_taps(keras.Model(inp, keras.layers.Dense(2)(h)))
        [['block0', 'block1', 'block2']]
    """
    if not isinstance(model, keras.Model) or not _compat.is_functional(model):
        raise TypeError(
            f"`model` must be a functional keras.Model (a graph to find blocks in); got "
            f"{type(model).__name__}."
        )
    blocks = _attention_blocks(model) or _residual_adds(model)
    groups, shapes = [], []
    for name, shape in blocks:
        if shapes and shapes[-1] == shape:
            groups[-1].append(name)
        else:
            groups.append([name])
            shapes.append(shape)
    result = [group for group in groups if len(group) >= 2]
    if not result:
        raise ValueError(
            f"Model {model.name!r} has no two consecutive blocks of one output shape to "
            f"compare; blocks found: {[name for name, _ in blocks] or 'none'} (transformer "
            "layers holding a MultiHeadAttention, or Add layers closing identity-shortcut "
            "residual blocks). Name the layers to compare yourself."
        )
    return result


def _attention_blocks(model):
    found = []
    for node in _compat.graph_nodes(model):
        layer = node.operation
        if _compat.is_functional(layer):
            found += _attention_blocks(layer)
            continue
        if not isinstance(layer, keras.layers.Layer) or not node.input_tensors:
            continue
        holds_attention = any(
            isinstance(sub, keras.layers.MultiHeadAttention)
            for sub in _compat.flatten_layers(layer, include_self=False)
        )
        outputs = keras.tree.flatten(node.outputs)
        same_shape = len(outputs) == 1 and outputs[0].shape == node.input_tensors[0].shape
        if (
            holds_attention
            and same_shape
            and not isinstance(layer, keras.layers.MultiHeadAttention)
        ):
            found.append((layer.name, tuple(outputs[0].shape[1:])))
    return found


def _residual_adds(model):
    from keras_cka_sr.structured.blocks import residual_blocks

    adds = {block.add for block in residual_blocks(model)}
    layers = {layer.name: layer for layer in model.layers}
    found = []
    for node in _compat.graph_nodes(model):
        name = node.operation.name
        if _compat.is_functional(node.operation):
            found += _residual_adds(node.operation)
        elif name in adds and isinstance(layers.get(name), keras.layers.Add):
            found.append((name, tuple(keras.tree.flatten(node.outputs)[0].shape[1:])))
    return found
