"""Which weights of which layers are pruned.

Built-in: Dense/EinsumDense kernels, Conv1D/2D/3D and Conv*Transpose kernels,
DepthwiseConv1D/2D depthwise kernels, SeparableConv1D/2D pointwise kernels, Embedding
tables, MultiHeadAttention's query/key/value/output kernels, the kernel and recurrent
kernel of SimpleRNN/LSTM/GRU and of an `RNN` with SimpleRNNCell/LSTMCell/GRUCell cells (or
a `PrunableLayer` cell, or `StackedRNNCells` of those), both directions of `Bidirectional`. Never biases. Layers with no weights and normalization
layers are left alone. Other layers opt in by implementing
`PrunableLayer.get_prunable_weights`; any other layer with weights is an error.

As in tfmot, built-in rules match exact classes: a subclass of `Dense` may compute with
something other than `self.kernel`, so it must say what to prune (`PrunableLayer`).
A layer that is not built yet is accepted only when its class is known (a rule, or known
to have no weights): an unknown unbuilt layer cannot show whether it has weights.
"""

import abc
import dataclasses
import sys

import keras

from keras_cka_sr import _compat

L = keras.layers

_KERNEL_LAYERS = (
    L.Dense,
    L.EinsumDense,
    L.Conv1D,
    L.Conv2D,
    L.Conv3D,
    L.Conv1DTranspose,
    L.Conv2DTranspose,
    L.Conv3DTranspose,
    L.DepthwiseConv1D,
    L.DepthwiseConv2D,
)
_SEPARABLE_LAYERS = (L.SeparableConv1D, L.SeparableConv2D)
_NOTHING_TO_PRUNE = tuple(
    getattr(L, name)
    for name in (
        "BatchNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "UnitNormalization",
        "RMSNormalization",
        "SpectralNormalization",
        "Normalization",
        "PReLU",
    )
    if hasattr(L, name)
)


_RECURRENT = tuple(getattr(L, n) for n in ("SimpleRNN", "LSTM", "GRU") if hasattr(L, n))
_CELLS = tuple(getattr(L, n) for n in ("SimpleRNNCell", "LSTMCell", "GRUCell") if hasattr(L, n))
_WEIGHTLESS = tuple(
    getattr(L, name)
    for name in (
        "InputLayer",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "ELU",
        "Softmax",
        "Identity",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
        "ActivityRegularization",
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        "Masking",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
        "Dot",
        "MaxPooling1D",
        "MaxPooling2D",
        "MaxPooling3D",
        "AveragePooling1D",
        "AveragePooling2D",
        "AveragePooling3D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "GlobalMaxPooling3D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalAveragePooling3D",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "ZeroPadding3D",
        "Cropping1D",
        "Cropping2D",
        "Cropping3D",
        "UpSampling1D",
        "UpSampling2D",
        "UpSampling3D",
        "Rescaling",
        "Resizing",
        "CenterCrop",
    )
    if hasattr(L, name)
)


class PrunableLayer(abc.ABC):
    """Mix into a custom layer to make it prunable: return the weights to prune.

    The layer's `call` must read each of those weights through the attribute that holds
    it (e.g. `self.kernel`), which the pruning wrapper swaps for the masked weight.

    Examples:
        >>> class Scaled(keras.layers.Dense, pruning.PrunableLayer):
        ...     def get_prunable_weights(self):
        ...         return [self.kernel]
        >>> wrapper = pruning.prune_low_magnitude(Scaled(4), pruning.ConstantSparsity(0.5, 0))
        >>> model = keras.Sequential([keras.Input((3,)), wrapper])
        >>> [w.name for w in wrapper.pruned_weights], len(wrapper.layer.weights)  # not the bias
        (['kernel'], 2)
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The variables to prune (e.g. `[self.kernel]`); never biases."""


def check_copyable(layer):
    """Raises for a layer that declares, as the class attribute `pruning_refusal`, why a model
    holding it cannot be pruned (a layer of another part of the library, e.g. the CKA-SR
    penalty: pruning copies the model, and the copy would lose what the layer attaches)."""
    refusal = getattr(type(layer), "pruning_refusal", None)
    if refusal:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}): {refusal}")


def check_maskable(layer):
    """Raises for layers whose `call` does not read the weight the wrapper masks.

    The wrapper's contract: during `call`, the layer (or a sublayer) reads each prunable
    weight through the instance attribute that holds the variable, which the wrapper
    swaps for `weight * mask` while the layer runs. LoRA adds a low-rank update on top
    of the stored kernel, and a quantized layer reads an integer copy: masking the
    stored weight would leave the weight actually used dense, so both are refused.
    """
    for sub in _compat.flatten_layers(layer):
        if getattr(sub, "lora_enabled", False):
            raise ValueError(
                f"Layer {sub.name!r} has LoRA enabled: its kernel is the stored kernel plus a "
                "low-rank update that a mask cannot reach. Prune (and strip_pruning) before "
                "`enable_lora`, or merge the LoRA weights into the kernel first."
            )
        if getattr(sub, "quantization_mode", None):
            raise ValueError(
                f"Layer {sub.name!r} is quantized ({sub.quantization_mode}): it computes with "
                "a quantized copy of its kernel, which a mask cannot reach. Prune, call "
                "`strip_pruning`, then quantize (`model.quantize(...)`)."
            )


def supports(layer):
    """True when `prunable_weights(layer)` is defined (it may be empty). A bare Keras op in
    a functional graph (`h + h2` is an `Add` operation, not a layer) holds no weights."""
    if not isinstance(layer, L.Layer):
        return True
    if _has_own_rule(layer) or type(layer) in _NOTHING_TO_PRUNE + _WEIGHTLESS + _optional():
        return True
    if layer.built and not layer.weights:
        return True
    return _composite_weights(layer) is not None


def prunable_weights(layer):
    """The variables of a built `layer` that pruning masks."""
    if _declares_its_own(layer):
        return list(layer.get_prunable_weights())
    kind = type(layer)
    if kind in _KERNEL_LAYERS:
        return [layer.kernel]
    if kind in _SEPARABLE_LAYERS:
        return [layer.pointwise_kernel]
    if kind is L.Embedding:
        return [layer.embeddings]
    if kind in _reversible_embeddings():
        tied = layer.tie_weights or not hasattr(layer, "reverse_embeddings")
        return [layer.embeddings] if tied else [layer.embeddings, layer.reverse_embeddings]
    if kind is L.MultiHeadAttention:
        return [
            sub.kernel
            for sub in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
        ]
    if kind in _RECURRENT:
        return [layer.cell.kernel, layer.cell.recurrent_kernel]
    if kind is L.RNN and _cell_has_rule(layer.cell):
        return _cell_weights(layer.cell)
    if kind is L.Bidirectional:
        return prunable_weights(layer.forward_layer) + prunable_weights(layer.backward_layer)
    if kind in _NOTHING_TO_PRUNE + _WEIGHTLESS + _optional() or (layer.built and not layer.weights):
        return []
    composite = _composite_weights(layer)
    if composite is not None:
        return composite
    raise ValueError(unsupported_message(layer))


def _composite_weights(layer):
    """The prunable weights of a composite layer (a keras_hub `TransformerDecoder`, a user's
    block of Dense layers), or None when `layer` is not one.

    A composite layer is built, holds sublayers and no variables of its own beyond theirs,
    and every sublayer with weights has a rule (or is itself composite): its prunable
    weights are its sublayers' (each once, in tracking order). Wrapping it masks them in
    place while its own `call` runs, as for MultiHeadAttention's projections."""
    if not layer.built or _compat.is_graph_model(layer):
        return None
    subs = _compat.direct_sublayers(layer)
    if not subs or own_variables(layer):
        return None
    weights, seen = [], set()
    for sub in subs:
        if _has_own_rule(sub):
            found = prunable_weights(sub) if sub.built else []
        elif type(sub) in _NOTHING_TO_PRUNE + _WEIGHTLESS + _optional() or not sub.weights:
            found = []
        else:
            found = _composite_weights(sub)
            if found is None:
                return None
        for weight in found:
            if id(weight) not in seen:
                seen.add(id(weight))
                weights.append(weight)
    return weights


def own_variables(layer):
    """The variables `layer` holds itself, not through a sublayer."""
    held = {id(v) for sub in _compat.flatten_layers(layer, include_self=False) for v in sub.weights}
    return [v for v in layer.weights if id(v) not in held]


def _unsupported_inside(layer):
    """The first layer nested in `layer` that keeps it from being pruned as a composite
    (variables of its own, or a sublayer with weights and no rule), as (layer, reason)."""
    own = own_variables(layer) if layer.built else []
    if own:
        return layer, f"holds variables of its own ({', '.join(v.path for v in own)})"
    for sub in _compat.direct_sublayers(layer):
        if supports(sub):
            continue
        inner = _unsupported_inside(sub) if _compat.direct_sublayers(sub) else None
        return inner or (sub, "has weights but no pruning rule")
    return None


def unsupported_message(layer):
    kind = type(layer)
    inner = _unsupported_inside(layer) if layer.built else None
    if not layer.built and not layer.weights:
        what = "is not built, so it cannot show whether it has weights, and has no pruning rule"
    elif inner is not None and inner[0] is not layer:
        what = (
            f"holds layer {inner[0].path!r} ({type(inner[0]).__name__}), which {inner[1]}, so "
            "its sublayers cannot be pruned in place"
        )
    elif inner is not None and _compat.direct_sublayers(layer):
        what = f"{inner[1]}, so it cannot be pruned through its sublayers"
    else:
        what = "has weights but no pruning rule"
    subclass = next(
        (
            base.__name__
            for base in kind.__mro__[1:]
            if base in _KERNEL_LAYERS + _SEPARABLE_LAYERS + _RECURRENT + _SPECIAL
        ),
        None,
    )
    hint = (
        f" It subclasses {subclass}, whose rule matches that exact class only (as tfmot): "
        "its `call` may not read the weight a mask would replace."
        if subclass
        else ""
    )
    return (
        f"Layer {layer.name!r} ({kind.__name__}) {what}.{hint} "
        "Prunable built-ins: Dense, EinsumDense, Conv*/Conv*Transpose, DepthwiseConv*, "
        "SeparableConv*, Embedding, ReversibleEmbedding, MultiHeadAttention, SimpleRNN, LSTM, "
        "GRU, Bidirectional, and any layer built only of those (a composite layer). "
        "For a custom layer, subclass `keras_cka_sr.pruning.PrunableLayer` and implement "
        "`get_prunable_weights`; or leave the layer out of pruning (prune a list of layers "
        "instead)."
    )


_SPECIAL = (L.Embedding, L.MultiHeadAttention, L.RNN, L.Bidirectional)


def _cell_has_rule(cell):
    if type(cell) is L.StackedRNNCells:
        return all(_cell_has_rule(c) for c in cell.cells)
    return _declares_its_own(cell) or type(cell) in _CELLS


def _cell_weights(cell):
    """An RNN cell's prunable weights: built-in cells' kernel and recurrent kernel (as
    tfmot), a `PrunableLayer` cell's own choice, every cell of `StackedRNNCells`."""
    if type(cell) is L.StackedRNNCells:
        return [w for c in cell.cells for w in _cell_weights(c)]
    if _declares_its_own(cell):
        return list(cell.get_prunable_weights())
    if type(cell) in _CELLS:
        return [cell.kernel, cell.recurrent_kernel]
    raise ValueError(unsupported_message(cell))


def _declares_its_own(layer):
    return isinstance(layer, PrunableLayer) or callable(
        getattr(layer, "get_prunable_weights", None)
    )


def _has_own_rule(layer):
    kind = type(layer)
    if _declares_its_own(layer) or kind in _KERNEL_LAYERS + _SEPARABLE_LAYERS + _RECURRENT:
        return True
    if kind in (L.Embedding, L.MultiHeadAttention) + _reversible_embeddings():
        return True
    if kind is L.RNN:
        return _cell_has_rule(layer.cell)
    if kind is L.Bidirectional:
        return _has_own_rule(layer.forward_layer) and _has_own_rule(layer.backward_layer)
    return False


def has_prunable_rule(layer):
    """True for layers whose weights pruning masks: a built-in rule, a `PrunableLayer`, or a
    composite layer holding at least one prunable sublayer."""
    if _has_own_rule(layer):
        return True
    if not isinstance(layer, L.Layer) or type(layer) in _NOTHING_TO_PRUNE + _WEIGHTLESS:
        return False
    return bool(_composite_weights(layer))


def _reversible_embeddings():
    """Keras' `ReversibleEmbedding` and keras_hub's (a subclass that adds nothing): the tied
    table is pruned once and used twice (lookup and output projection)."""
    kinds = (getattr(L, "ReversibleEmbedding", None), _keras_hub_layer("ReversibleEmbedding"))
    return tuple(k for k in kinds if k is not None)


def _optional():
    """keras_hub layers accepted and not pruned: `PositionEmbedding` (a table of positions,
    not features; a `PrunableLayer` subclass returning `[self.position_embeddings]` prunes it)."""
    kind = _keras_hub_layer("PositionEmbedding")
    return () if kind is None else (kind,)


def _keras_hub_layer(name):
    """A keras_hub layer class when keras_hub is already imported (its layers can only be in a
    model then); never imports it."""
    hub = sys.modules.get("keras_hub")
    return getattr(getattr(hub, "layers", None), name, None)


@dataclasses.dataclass(frozen=True, eq=False)
class Kernel:
    """One prunable weight of a model: `layer` holds it (the wrapped layer, inside its
    `PruneLowMagnitude`, when wrapped); the forward pass uses `variable * mask` when `mask`
    is set (wrapped), `variable` otherwise."""

    layer: keras.layers.Layer
    variable: keras.Variable
    mask: keras.Variable | None = None
    path: str = ""  # the layer holding `variable`, by names from the model down (no wrappers)


def prunable_kernels(model: keras.layers.Layer) -> list[Kernel]:
    """Every prunable weight of `model` (a model or a layer), each once, in layer order.

    The one walk over a model's prunable weights (statistics, summaries, monitors and the
    main job use it): a `PruneLowMagnitude` wrapper gives its pruned weights with their
    masks; a layer with a rule gives the weights its rule names, and its sublayers are not
    read again (a `Bidirectional`'s two directions, MultiHeadAttention's projections); any
    other layer is searched for sublayers (nested models, composite layers). A weight
    reached twice (a layer shared by two models) is listed once. Unbuilt layers have none.
    """
    from keras_cka_sr.pruning.wrapper import PruneLowMagnitude  # it imports this module

    kernels, seen = [], set()

    def add(layer, variable, mask, prefix):
        if id(variable) not in seen:
            seen.add(id(variable))
            path = "/".join([*prefix, layer.name, *holder_chain(layer, variable)])
            kernels.append(Kernel(layer, variable, mask, path))

    def visit(layer, prefix):
        if isinstance(layer, PruneLowMagnitude):
            if layer.built:
                for variable, mask in zip(layer.pruned_weights, layer.masks):
                    add(layer.layer, variable, mask, prefix)
            return
        if has_prunable_rule(layer):
            if layer.built:
                for variable in prunable_weights(layer):
                    add(layer, variable, None, prefix)
            return
        inner = prefix if layer is model else [*prefix, layer.name]
        for sub in _compat.direct_sublayers(layer):
            visit(sub, inner)

    visit(model, [])
    return kernels


def holder_chain(layer, variable) -> list[str]:
    """Names of the sublayers of `layer` leading to the one that holds `variable` (empty when
    `layer` holds it itself): `["self_attention", "query"]` in a TransformerDecoder."""

    def chain(current):
        if any(v is variable for v in own_variables(current)):
            return []
        for sub in _compat.direct_sublayers(current):
            found = chain(sub)
            if found is not None:
                return [sub.name, *found]
        return None

    return chain(layer) or []
