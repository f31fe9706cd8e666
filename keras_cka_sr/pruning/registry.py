"""Which weights of which layers are pruned.

Built-in: Dense/EinsumDense kernels, Conv1D/2D/3D and Conv*Transpose kernels,
DepthwiseConv1D/2D depthwise kernels, SeparableConv1D/2D pointwise kernels, Embedding
tables, MultiHeadAttention's query/key/value/output kernels. Never biases. Layers with
no weights and normalization layers are left alone. Other layers opt in by implementing
`PrunableLayer.get_prunable_weights`; any other layer with weights is an error.
"""

import abc

import keras

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


class PrunableLayer(abc.ABC):
    """Mix into a custom layer to make it prunable: return the weights to prune.

    The layer's `call` must read each of those weights through the attribute that holds
    it (e.g. `self.kernel`), which the pruning wrapper swaps for the masked weight.
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The variables to prune (e.g. `[self.kernel]`); never biases."""


def check_maskable(layer):
    """Raises for layers whose `call` does not read the weight the wrapper masks.

    The wrapper's contract: during `call`, the layer (or a sublayer) reads each prunable
    weight through the instance attribute that holds the variable, which the wrapper
    swaps for `weight * mask` while the layer runs. LoRA adds a low-rank update on top
    of the stored kernel, and a quantized layer reads an integer copy: masking the
    stored weight would leave the weight actually used dense, so both are refused.
    """
    subs = [layer]
    if isinstance(layer, L.MultiHeadAttention) and layer.built:
        subs += [layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense]
    for sub in subs:
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
    """True when `prunable_weights(layer)` is defined (it may be empty)."""
    return _has_own_rule(layer) or isinstance(layer, _NOTHING_TO_PRUNE) or not layer.weights


def prunable_weights(layer):
    """The variables of a built `layer` that pruning masks."""
    if isinstance(layer, PrunableLayer) or callable(getattr(layer, "get_prunable_weights", None)):
        return list(layer.get_prunable_weights())
    if isinstance(layer, _KERNEL_LAYERS):
        return [layer.kernel]
    if isinstance(layer, _SEPARABLE_LAYERS):
        return [layer.pointwise_kernel]
    if isinstance(layer, L.Embedding):
        return [layer.embeddings]
    if isinstance(layer, L.MultiHeadAttention):
        return [
            sub.kernel
            for sub in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
        ]
    if isinstance(layer, _NOTHING_TO_PRUNE) or not layer.weights:
        return []
    raise ValueError(unsupported_message(layer))


def unsupported_message(layer):
    return (
        f"Layer {layer.name!r} ({type(layer).__name__}) has weights but no pruning rule. "
        "Prunable built-ins: Dense, EinsumDense, Conv*/Conv*Transpose, DepthwiseConv*, "
        "SeparableConv*, Embedding, MultiHeadAttention. For a custom layer, subclass "
        "`keras_cka_sr.pruning.PrunableLayer` and implement `get_prunable_weights`; "
        "or leave the layer out of pruning (prune a list of layers instead)."
    )


def _has_own_rule(layer):
    return (
        isinstance(layer, PrunableLayer)
        or callable(getattr(layer, "get_prunable_weights", None))
        or isinstance(
            layer, _KERNEL_LAYERS + _SEPARABLE_LAYERS + (L.Embedding, L.MultiHeadAttention)
        )
    )


def has_prunable_rule(layer):
    """True for layers whose weights pruning masks (built-in rule or `PrunableLayer`)."""
    return _has_own_rule(layer)
