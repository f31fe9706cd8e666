"""`copy_weights`: a model's weights into another model of the same layers, matched by
layer path (pruning wrappers seen through), for models Keras' clone cannot rebuild."""

import keras
import numpy as np

from keras_cka_sr import _compat
from keras_cka_sr._numpy import to_numpy
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.wrapper import PruneLowMagnitude


def copy_weights(source: keras.layers.Layer, target: keras.layers.Layer) -> keras.layers.Layer:
    """Copies every weight of `source` into the layer at the same path of `target`.

    Layers are matched by their path of names from the model down
    (`gpt2_backbone/transformer_layer_0/self_attention/query`), a `PruneLowMagnitude`
    wrapper standing for the layer it wraps: a pruned model's kernels go to the same
    kernels of a plain model, as `weight * mask` (the masked weights, what the pruned
    model computes with; masks and counters themselves are not copied). A layer reached by
    two paths (a tied embedding) is copied once. Use it where `strip_pruning` cannot give
    back your model's class, e.g. into a freshly built task model of keras_hub:
    `copy_weights(pruned, keras_hub.models.GPT2CausalLM(backbone=..., preprocessor=...))`.

    Raises `ValueError`, before any weight is written, when a layer of `target` with
    weights has no counterpart in `source` (or the reverse), or when shapes differ; so
    nothing is left at its initial value unnoticed. Returns `target`.

    Examples:
        >>> def build():
        ...     inp = keras.Input((8,))
        ...     return keras.Model(inp, keras.layers.Dense(3, name="head")(inp))
        >>> pruned = pruning.prune_low_magnitude(build(), pruning.ConstantSparsity(0.5, 0))
        >>> plain = pruning.copy_weights(pruned, build())
        >>> tuple(plain.get_layer("head").kernel.shape)
        (8, 3)
    """
    for name, value in (("source", source), ("target", target)):
        if not isinstance(value, keras.layers.Layer):
            raise TypeError(f"`{name}` must be a Keras model or layer; got {type(value).__name__}.")
        if not value.built:
            raise ValueError(f"`{name}` ({value.name!r}) is not built: build or call it first.")
    sources, targets = _holders(source), _holders(target)
    by_path = {path: holder for holder in sources for path in holder[0]}
    matched, missing = [], []
    for paths, new_layer, new_vars in targets:
        old = next((by_path[p] for p in paths if p in by_path), None)
        if old is None:
            missing.append(paths[0])
        else:
            matched.append((paths[0], old, new_vars))
    used = {id(old) for _, old, _ in matched}
    extra = [holder[0][0] for holder in sources if id(holder) not in used]
    if missing or extra:
        raise ValueError(
            f"`source` ({source.name!r}) and `target` ({target.name!r}) do not hold the same "
            f"layers: {missing or 'none'} only in target, {extra or 'none'} only in source "
            "(layers are matched by their path of names; build the target with the same "
            "layer names)."
        )
    pairs = []
    for path, (_, old_layer, old_vars), new_vars in matched:
        if len(old_vars) != len(new_vars):
            raise ValueError(
                f"Layer {path!r} holds {len(old_vars)} weights in `source` and "
                f"{len(new_vars)} in `target`."
            )
        for old, new in zip(old_vars, new_vars):
            value = _masked_value(old_layer, old)
            if tuple(value.shape) != tuple(new.shape):
                raise ValueError(
                    f"Weight {new.path!r} of layer {path!r} has shape {tuple(new.shape)} in "
                    f"`target` and {tuple(value.shape)} in `source`."
                )
            pairs.append((new, value))
    for variable, value in pairs:
        variable.assign(value)
    return target


def _holders(model):
    """[(paths, layer, own variables)] for every layer with variables of `model`, once per
    layer with every path it is reached by (a tied embedding has two), wrappers replaced by
    the layer they wrap (`layer` is then the wrapper, which holds the masks)."""
    found = {}

    def visit(layer, prefix, wrapper):
        if isinstance(layer, PruneLowMagnitude):
            visit(layer.layer, prefix, layer)
            return
        path = prefix if layer is model else [*prefix, layer.name]
        if id(layer) in found:
            found[id(layer)][0].append("/".join(path))
            return
        found[id(layer)] = (["/".join(path)], wrapper or layer, registry.own_variables(layer))
        for sub in _compat.direct_sublayers(layer):
            visit(sub, path, wrapper)

    visit(model, [], None)
    return [holder for holder in found.values() if holder[2]]


def _masked_value(holder, variable):
    """`variable` as the forward pass uses it: times its mask when a wrapper prunes it."""
    value = to_numpy(variable)
    if isinstance(holder, PruneLowMagnitude) and holder.built:
        for weight, mask in zip(holder.pruned_weights, holder.masks):
            if weight is variable:
                return value * to_numpy(mask)
    return np.asarray(value)
