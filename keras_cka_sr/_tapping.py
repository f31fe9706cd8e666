"""Tapping layer outputs (private): layer names and groups, the pairs compared within
groups, and the re-tracing of a functional or Sequential graph that collects the outputs."""

from collections.abc import Sequence
from typing import TypeAlias

import keras

from keras_cka_sr import _compat

PAIRS = ("all", "adjacent")
# Layer names, or lists of them (groups: only layers within a list are compared).
LayerNames: TypeAlias = Sequence[str] | Sequence[Sequence[str]]


def compared_pairs(groups, num_features: int, pairs: str = "all"):
    """The unordered (i, j) index pairs compared within `groups` (None: one group of all
    `num_features`), all pairs or only neighbours by position ("adjacent")."""
    if pairs not in PAIRS:
        raise ValueError(f"`pairs` must be one of {PAIRS}; got {pairs!r}.")
    groups = groups if groups is not None else [list(range(num_features))]
    for group in groups:
        for index in group:
            if index >= num_features:
                raise ValueError(
                    f"`groups` refers to feature {index}, but only {num_features} "
                    "features were given."
                )
    result = []
    for group in groups:
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                if pairs == "adjacent" and b - a != 1:
                    continue
                result.append((group[a], group[b]))
    return result


def trace_taps(model, names):
    """Re-traces `model` on new inputs; returns (inputs, outputs, {name: tapped output})."""
    _check_built(model)
    available = _layer_names(model)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"`layer_names` has names not found in model {model.name!r}: {unknown}. "
            f"Available layers: {sorted(available)}."
        )
    inputs_named = [n for n in names if n in _input_layer_names(model)]
    if inputs_named:
        raise ValueError(
            f"`layer_names` names the Input layer(s) {inputs_named} of model {model.name!r}: "
            "their output is the input data, not a representation the model computes. "
            "Tap the layers after them."
        )
    tracer = _Tracer(set(names))
    inputs = [keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name) for x in model.inputs]
    structured_inputs = (
        _compat.structure_inputs(model, inputs) if _compat.is_functional(model) else inputs[0]
    )
    outputs = tracer.trace(model, structured_inputs)
    missing = [n for n in names if n not in tracer.tapped]
    if missing:
        raise ValueError(
            f"Layers {missing} are not on the path from the inputs to the outputs of "
            f"model {model.name!r}, so their outputs cannot be tapped."
        )
    return structured_inputs, outputs, tracer.tapped


def _check_built(model):
    """A Sequential model without an Input has no graph to trace yet."""
    if not isinstance(model, keras.Sequential):
        return
    try:
        model.outputs  # public; raises AttributeError until the graph exists
    except AttributeError:
        raise ValueError(
            f"Sequential model {model.name!r} has no input shape yet, so its graph cannot be "
            "traced: start it with `keras.Input(shape)` (or call `model.build((None, ...))` "
            "or the model on data once) before attaching CKA-SR."
        ) from None


def parse_layer_names(layer_names) -> tuple[list[str], list[list[int]] | None]:
    """`(names, groups)` from a list of names (groups None) or a list of lists of names
    (groups as index lists into the unique `names`); validated."""
    if isinstance(layer_names, str) or not isinstance(layer_names, (list, tuple)):
        raise TypeError(
            "`layer_names` must be a list of layer names or a list of lists of names; "
            f"got {layer_names!r}."
        )
    if layer_names and all(isinstance(g, (list, tuple)) for g in layer_names):
        names, groups = [], []
        for group in layer_names:
            if len(group) < 2:
                raise ValueError(
                    f"Each list in `layer_names` needs at least 2 layer names; got {list(group)}."
                )
            if len(set(group)) != len(group):
                raise ValueError(
                    f"A list in `layer_names` names a layer more than once: {list(group)}; "
                    "a layer compared with itself has CKA 1 and adds nothing. Name each "
                    "layer once per list."
                )
            indices = []
            for n in group:
                if n not in names:
                    names.append(n)
                indices.append(names.index(n))
            groups.append(indices)
    else:
        names, groups = list(layer_names), None
        if len(set(names)) != len(names):
            raise ValueError(f"`layer_names` lists a name more than once: {names}.")
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"`layer_names` entries must be strings; got {layer_names!r}.")
    if len(names) < 2:
        raise ValueError(
            f"CKA-SR compares layers: `layer_names` needs at least 2 names; got {names}."
        )
    return names, groups


def _aliases(layer):
    names = [layer.name]
    inner = getattr(layer, "layer", None)
    if isinstance(layer, keras.layers.Wrapper) and inner is not None:
        names.append(inner.name)
    return names


def _layer_names(model):
    names = set()
    for layer in model.layers:
        names.update(_aliases(layer))
        if _compat.is_graph_model(layer):
            names.update(_layer_names(layer))
    return names


def _input_layer_names(model):
    names = set()
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            names.add(layer.name)
        elif _compat.is_graph_model(layer):
            names.update(_input_layer_names(layer))
    return names


def unique_name(model, base):
    taken = _layer_names(model)
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


class _Tracer:
    """Calls a model's layers again on new symbolic inputs, recording tapped outputs."""

    def __init__(self, names):
        self.names = names
        self.tapped = {}

    def trace(self, model, inputs):
        if isinstance(model, keras.Sequential):
            _check_built(model)
            x = inputs
            for layer in model.layers:
                x = self.call_layer(layer, x)
            return x
        return _compat.run_graph(model, inputs, self.call_layer)

    def call_layer(self, layer, *args, **kwargs):
        if _compat.is_graph_model(layer):
            if len(args) != 1:
                raise ValueError(f"Nested model {layer.name!r} must take one input argument.")
            outputs = self.trace(layer, args[0])
            if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
                outputs = outputs[0]
        else:
            outputs = layer(*args, **kwargs)
        for alias in _aliases(layer):
            if alias in self.names:
                if alias in self.tapped:
                    raise ValueError(
                        f"Layer {alias!r} is called more than once in the model, so its "
                        "output to tap is ambiguous. Tap a layer that is called once."
                    )
                if keras.tree.is_nested(outputs):
                    kind = type(outputs).__name__
                    raise ValueError(
                        f"Layer {alias!r} returns a {kind}, not one tensor; CKA compares one "
                        "tensor per layer. Tap a layer that returns a single tensor (e.g. a "
                        "layer applied to the output you want to compare)."
                    )
                self.tapped[alias] = outputs
        return outputs


def check_feature_list(features, who: str) -> None:
    """Raises unless `features` is a list or tuple of at least 2 tensors (`who`: the start
    of the message, e.g. "CKASimilarityLoss needs")."""
    if not isinstance(features, (list, tuple)) or len(features) < 2:
        got = len(features) if isinstance(features, (list, tuple)) else type(features).__name__
        raise ValueError(f"{who} a list of at least 2 feature tensors; got {got}.")
