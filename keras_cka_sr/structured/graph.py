"""The dependency graph of a Keras model's channels: which channels must go together.

Every tensor's last axis is described by a channel map: the spaces (the output channels of
one layer, or of a model input) laid side by side, as `Concatenate` lays them. Elementwise
layers (`Add`, `Multiply`, ...) couple their inputs' spaces channel by channel; coupled
spaces form a group, pruned as one: removing channel j of a group removes it from every
member and from every weight that reads or writes it. A layer the graph does not understand
is a barrier: the channels it reads are kept, and the report names it.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import keras

from keras_cka_sr import _compat

_CHANNEL_PRESERVING = (
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling2D,
    keras.layers.UpSampling3D,
    keras.layers.Identity,
    keras.layers.ActivityRegularization,
)
_MERGES = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax")
# Keras ops (`x + y`, `keras.ops.relu(x)`) that act on each channel alike.
_ELEMENTWISE_BINARY_OPS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Divide"}
_ELEMENTWISE_UNARY_OPS = {
    "Relu", "Relu6", "Sigmoid", "HardSigmoid", "Silu", "HardSilu", "Tanh", "Gelu", "Elu",
    "Selu", "LeakyRelu", "Softplus", "Softsign", "Abs", "Negative", "Exp", "Square", "Sqrt",
    "Cast", "Mish", "Celu", "Glu",
}  # fmt: skip


@dataclasses.dataclass
class Space:
    """The channels one layer writes (or a model input carries), before coupling."""

    id: int
    size: int
    producer: str | None  # the layer path whose kernel makes these channels, if prunable


@dataclasses.dataclass(frozen=True)
class ChannelMap:
    """The layout of a tensor's last axis: spaces side by side, the whole repeated
    `repeat` times (a `Flatten` of H x W positions repeats its input's channels H * W
    times, position-major)."""

    spaces: tuple[int, ...]
    sizes: tuple[int, ...]
    repeat: int = 1

    @property
    def width(self) -> int:
        return sum(self.sizes)


@dataclasses.dataclass(frozen=True)
class Barrier:
    """A layer whose input channels are all kept, and why."""

    layer: str
    class_name: str
    reason: str


@dataclasses.dataclass(frozen=True)
class SlicedAxis:
    """Axis `axis` of weight `weight` of layer `layer` follows channel map `map`."""

    layer: str
    weight: str
    axis: int
    map: ChannelMap


@dataclasses.dataclass(frozen=True)
class MacTerm:
    """A layer's multiply-accumulates: `positions * kernel * in * out`, where `in` and `out`
    are the kept widths of the maps (None: a fixed count, `fixed_in`/`fixed_out`)."""

    layer: str
    positions: int | None
    kernel: int
    in_map: ChannelMap | None
    out_map: ChannelMap | None
    fixed_in: int = 1
    fixed_out: int = 1


@dataclasses.dataclass
class ChannelGroup:
    """Channels pruned together: member spaces coupled channel by channel.

    `layers` are the layers whose weights the group's channels touch; `kept_reason` is None
    when the group may be pruned, else why its channels are all kept.
    """

    id: int
    size: int
    producers: tuple[str, ...]
    layers: tuple[str, ...]
    kept_reason: str | None

    @property
    def prunable(self) -> bool:
        return self.kept_reason is None


class DependencyGraph:
    """The channel dependency graph of a Functional or Sequential Keras 3 model.

    Args:
        model: a built Functional or Sequential model, nested functional or Sequential
            sub-models included (channels_last layers).
        keep: names (or paths, `outer/inner`) of layers whose output channels are kept.

    Examples:
        >>> inp = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
        >>> r = keras.layers.Conv2D(8, 3, padding="same", name="c2")(h)
        >>> h = keras.layers.Add(name="add")([h, r])
        >>> h = keras.layers.GlobalAveragePooling2D()(h)
        >>> model = keras.Model(inp, keras.layers.Dense(2, name="head")(h))
        >>> graph = structured.DependencyGraph(model)
        >>> [(g.producers, g.size, g.prunable) for g in graph.groups]
        [(('c1', 'c2'), 8, True), (('head',), 2, False)]
    """

    def __init__(self, model: keras.Model, keep: tuple[str, ...] | list[str] = ()):
        if not _compat.is_graph_model(model):
            raise TypeError(
                f"`model` must be a Functional or Sequential Keras model (a graph of layer "
                f"calls to trace); got {type(model).__name__}. A subclassed model has no "
                f"graph: rebuild it with `keras.Model(inputs, outputs)`."
            )
        if not model.built or not model.inputs:
            raise ValueError(
                f"`model` {model.name!r} is not built on an input: build it first, e.g. "
                f"start a Sequential with `keras.Input(shape)`."
            )
        wrapped = [
            layer.name
            for layer in _compat.flatten_layers(model, include_self=False)
            if type(layer).__name__ == "PruneLowMagnitude"
        ]
        if wrapped:
            raise ValueError(
                f"`model` still has pruning wrappers ({', '.join(wrapped[:3])}"
                f"{', ...' if len(wrapped) > 3 else ''}): call "
                f"`keras_cka_sr.pruning.strip_pruning(model)` first."
            )
        self.model = model
        self.spaces: list[Space] = []
        self.barriers: list[Barrier] = []
        self.sliced: list[SlicedAxis] = []
        self.config_edits: dict[str, tuple[str, ChannelMap]] = {}
        self.mac_terms: list[MacTerm] = []
        self.uncounted: list[str] = []
        self._parent: list[int] = []
        self._kept_reasons: dict[int, list[str]] = {}
        self._keep = set(keep)
        self._kept_layers_found: set[str] = set()
        self._trace(model)
        missing = self._keep - self._kept_layers_found
        if missing:
            raise ValueError(
                f"`keep` names layers the model has no prunable output of: {sorted(missing)}."
            )
        self.groups = self._groups()

    # ---- union-find over spaces -------------------------------------------------------
    def _new_space(self, size: int, producer: str | None, kept_reason: str | None = None):
        space = Space(len(self.spaces), size, producer)
        self.spaces.append(space)
        self._parent.append(space.id)
        if kept_reason:
            self._kept_reasons.setdefault(space.id, []).append(kept_reason)
        return ChannelMap((space.id,), (size,))

    def root(self, space: int) -> int:
        while self._parent[space] != space:
            self._parent[space] = self._parent[self._parent[space]]
            space = self._parent[space]
        return space

    def _keep_map(self, channel_map: ChannelMap, reason: str) -> None:
        for space in channel_map.spaces:
            self._kept_reasons.setdefault(self.root(space), []).append(reason)

    def _couple(self, maps: list[ChannelMap], where: str) -> ChannelMap:
        first = maps[0]
        aligned = all(m.sizes == first.sizes and m.repeat == first.repeat for m in maps)
        if not aligned:
            for m in maps:
                self._keep_map(m, f"{where}: coupled channels whose layouts do not line up")
            return first
        for m in maps[1:]:
            for a, b in zip(first.spaces, m.spaces):
                ra, rb = self.root(a), self.root(b)
                if ra != rb:
                    self._parent[rb] = ra
                    self._kept_reasons.setdefault(ra, []).extend(self._kept_reasons.pop(rb, []))
        return first

    # ---- tracing ------------------------------------------------------------------------
    def _trace(self, model) -> None:
        maps = {}
        for tensor in model.inputs:
            maps[id(tensor)] = self._new_space(
                _last_dim(tensor.shape, "model input"), None, "model input"
            )
        outputs = self._trace_model(model, "", [maps[id(t)] for t in model.inputs], model.inputs)
        for channel_map in outputs:
            self._keep_map(channel_map, "model output")

    def _trace_model(self, model, prefix, in_maps, in_tensors) -> list[ChannelMap]:
        if isinstance(model, keras.Sequential):
            return self._trace_sequential(model, prefix, in_maps, in_tensors)
        maps = {id(t): m for t, m in zip(model.inputs, in_maps)}
        nodes = _compat.graph_nodes(model)
        # Calls within this graph: other graphs built on the same layers (a feature model, a
        # CKA-SR copy) add nodes to a layer without sharing it here.
        calls = collections.Counter(id(node.operation) for node in nodes)
        for node in nodes:
            op = node.operation
            if isinstance(op, keras.layers.InputLayer):
                continue
            path = prefix + op.name
            ins = [maps[id(t)] for t in node.input_tensors]
            shapes_in = [tuple(t.shape) for t in node.input_tensors]
            shapes_out = [tuple(t.shape) for t in node.outputs]
            outs = self._layer(op, path, ins, shapes_in, shapes_out, node, calls[id(op)])
            for tensor, channel_map in zip(node.outputs, outs):
                maps[id(tensor)] = channel_map
        return [maps[id(t)] for t in model.outputs]

    def _trace_sequential(self, model, prefix, in_maps, in_tensors) -> list[ChannelMap]:
        maps, shapes = in_maps, [tuple(t.shape) for t in in_tensors]
        calls = collections.Counter(id(layer) for layer in model.layers)
        for layer in model.layers:
            out_shape = layer.compute_output_shape(shapes[0])
            out_shapes = [tuple(out_shape)]
            maps = self._layer(
                layer, prefix + layer.name, maps, shapes, out_shapes, None, calls[id(layer)]
            )
            shapes = out_shapes
        return maps

    def _layer(self, layer, path, ins, shapes_in, shapes_out, node, calls) -> list[ChannelMap]:
        if _compat.is_graph_model(layer):
            inner = [keras.KerasTensor(s) for s in shapes_in]
            return self._trace_model(layer, path + "/", ins, inner)
        if calls > 1:
            return self._barrier(layer, path, ins, shapes_out, "called more than once (shared)")
        if not isinstance(layer, keras.layers.Layer):
            return self._op(layer, path, ins, shapes_in, shapes_out, node)
        if getattr(layer, "quantization_mode", None) or getattr(layer, "lora_enabled", False):
            return self._barrier(layer, path, ins, shapes_out, "quantized or LoRA weights")
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return self._barrier(layer, path, ins, shapes_out, "channels_first data format")
        if isinstance(layer, _CONVS):
            return self._conv(layer, path, ins, shapes_in, shapes_out)
        if isinstance(layer, _DEPTHWISE):
            return self._depthwise(layer, path, ins, shapes_out)
        if isinstance(layer, _SEPARABLE):
            return self._separable(layer, path, ins, shapes_out)
        if isinstance(layer, keras.layers.Dense):
            return self._dense(layer, path, ins, shapes_in)
        if isinstance(layer, keras.layers.BatchNormalization):
            if _normalized_axis(layer.axis, len(shapes_in[0])) != len(shapes_in[0]) - 1:
                return self._barrier(layer, path, ins, shapes_out, "normalizes another axis")
            for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
                self.sliced.append(SlicedAxis(path, weight, 0, ins[0]))
            return ins
        if isinstance(layer, keras.layers.Activation):
            if _activation_name(layer.activation) in _CHANNEL_MIXING_ACTIVATIONS:
                return self._barrier(layer, path, ins, shapes_out, "softmax mixes channels")
            return ins
        if isinstance(layer, keras.layers.Rescaling):
            if not (_is_number(layer.scale) and _is_number(layer.offset)):
                return self._barrier(layer, path, ins, shapes_out, "per-channel scale")
            return ins
        if isinstance(layer, _CHANNEL_PRESERVING):
            return ins
        if isinstance(layer, _MERGES):
            if len({s[-1] for s in shapes_in}) != 1:
                return self._barrier(layer, path, ins, shapes_out, "broadcasts the channel axis")
            return [self._couple(ins, path)]
        if isinstance(layer, keras.layers.Concatenate):
            rank = len(shapes_in[0])
            if _normalized_axis(layer.axis, rank) != rank - 1:
                return [self._couple(ins, path)]
            if any(m.repeat != 1 for m in ins):
                return self._barrier(layer, path, ins, shapes_out, "concatenates flattened maps")
            spaces = sum((m.spaces for m in ins), ())
            return [ChannelMap(spaces, sum((m.sizes for m in ins), ()))]
        if isinstance(layer, keras.layers.Flatten):
            return self._flatten(layer, path, ins, shapes_in, shapes_out)
        if isinstance(layer, keras.layers.Reshape):
            if ins[0].repeat == 1 and shapes_out[0][-1] == shapes_in[0][-1]:
                self.config_edits[path] = ("target_shape", ins[0])
                return ins
            return self._barrier(layer, path, ins, shapes_out, "moves the channel axis")
        reason = {
            keras.layers.LayerNormalization: "normalizes across the channels",
            keras.layers.GroupNormalization: "normalizes across the channels",
            keras.layers.UnitNormalization: "normalizes across the channels",
            keras.layers.Softmax: "softmax mixes channels",
        }.get(type(layer), "a layer the dependency graph does not understand")
        return self._barrier(layer, path, ins, shapes_out, reason)

    def _barrier(self, layer, path, ins, shapes_out, reason) -> list[ChannelMap]:
        barrier = Barrier(path, type(layer).__name__, reason)
        if barrier not in self.barriers:  # a shared layer: one entry for all its calls
            self.barriers.append(barrier)
        for channel_map in ins:
            self._keep_map(channel_map, f"read by {path} ({type(layer).__name__}): {reason}")
        if not _counted_anyway(layer):
            if layer.count_params() if isinstance(layer, keras.layers.Layer) else 0:
                self.uncounted.append(path)
        else:
            self._fixed_conv_macs(layer, path, shapes_out)
        return [
            self._new_space(_last_dim(s, path), None, f"written by barrier {path}")
            for s in shapes_out
        ]

    def _op(self, op, path, ins, shapes_in, shapes_out, node) -> list[ChannelMap]:
        name = type(op).__name__
        scalars_only = node is not None and _compat.node_scalar_arguments_only(node)
        if name in _ELEMENTWISE_UNARY_OPS and len(ins) == 1 and scalars_only:
            return ins
        if name in _ELEMENTWISE_BINARY_OPS and scalars_only:
            if len(ins) == 1:
                return ins
            if len({s[-1] for s in shapes_in}) == 1:
                return [self._couple(ins, path)]
        return self._barrier(op, path, ins, shapes_out, "a Keras op the graph does not understand")

    def _produce(self, layer, path) -> ChannelMap:
        activation = getattr(layer, "activation", None)
        reason = None
        if activation is not None and _activation_name(activation) in _CHANNEL_MIXING_ACTIVATIONS:
            reason = f"{path}'s softmax activation mixes its channels"
        for name in (path, path.split("/")[-1]):
            if name in self._keep:
                reason = f"kept by `keep` ({name})"
                self._kept_layers_found.add(name)
        size = layer.filters if hasattr(layer, "filters") else layer.units
        return self._new_space(size, path, reason)

    def _conv(self, layer, path, ins, shapes_in, shapes_out) -> list[ChannelMap]:
        if layer.groups != 1:
            return self._barrier(layer, path, ins, shapes_out, f"grouped ({layer.groups} groups)")
        out = self._produce(layer, path)
        self.config_edits[path] = ("filters", out)
        rank = len(layer.kernel_size)
        self.sliced += [
            SlicedAxis(path, "kernel", rank, ins[0]),
            SlicedAxis(path, "kernel", rank + 1, out),
            SlicedAxis(path, "bias", 0, out),
        ]
        self.mac_terms.append(
            MacTerm(path, _positions(shapes_out[0]), math.prod(layer.kernel_size), ins[0], out)
        )
        return [out]

    def _depthwise(self, layer, path, ins, shapes_out) -> list[ChannelMap]:
        if layer.depth_multiplier != 1:
            return self._barrier(layer, path, ins, shapes_out, "depth_multiplier > 1")
        rank = len(layer.kernel_size)
        self.sliced += [
            SlicedAxis(path, "kernel", rank, ins[0]),
            SlicedAxis(path, "bias", 0, ins[0]),
        ]
        kernel = math.prod(layer.kernel_size)
        self.mac_terms.append(MacTerm(path, _positions(shapes_out[0]), kernel, ins[0], None))
        return ins

    def _separable(self, layer, path, ins, shapes_out) -> list[ChannelMap]:
        if layer.depth_multiplier != 1:
            return self._barrier(layer, path, ins, shapes_out, "depth_multiplier > 1")
        out = self._produce(layer, path)
        self.config_edits[path] = ("filters", out)
        rank = len(layer.kernel_size)
        self.sliced += [
            SlicedAxis(path, "depthwise_kernel", rank, ins[0]),
            SlicedAxis(path, "pointwise_kernel", rank, ins[0]),
            SlicedAxis(path, "pointwise_kernel", rank + 1, out),
            SlicedAxis(path, "bias", 0, out),
        ]
        positions = _positions(shapes_out[0])
        kernel = math.prod(layer.kernel_size)
        self.mac_terms += [
            MacTerm(path, positions, kernel, ins[0], None),
            MacTerm(path, positions, 1, ins[0], out),
        ]
        return [out]

    def _dense(self, layer, path, ins, shapes_in) -> list[ChannelMap]:
        out = self._produce(layer, path)
        self.config_edits[path] = ("units", out)
        self.sliced += [
            SlicedAxis(path, "kernel", 0, ins[0]),
            SlicedAxis(path, "kernel", 1, out),
            SlicedAxis(path, "bias", 0, out),
        ]
        self.mac_terms.append(MacTerm(path, _positions(shapes_in[0]), 1, ins[0], out))
        return [out]

    def _flatten(self, layer, path, ins, shapes_in, shapes_out) -> list[ChannelMap]:
        positions = _positions(shapes_in[0])
        if positions is None or ins[0].repeat != 1:
            return self._barrier(layer, path, ins, shapes_out, "flattens unknown positions")
        return [dataclasses.replace(ins[0], repeat=positions)]

    def _fixed_conv_macs(self, layer, path, shapes_out) -> None:
        kernel = math.prod(layer.kernel_size)
        positions = _positions(shapes_out[0])
        if isinstance(layer, _CONVS):
            per_group = layer.kernel.shape[-2]
            self.mac_terms.append(
                MacTerm(path, positions, kernel, None, None, per_group, layer.filters)
            )
        elif isinstance(layer, _DEPTHWISE):
            channels = layer.kernel.shape[-2] * layer.depth_multiplier
            self.mac_terms.append(MacTerm(path, positions, kernel, None, None, 1, channels))
        else:  # separable
            channels = layer.depthwise_kernel.shape[-2] * layer.depth_multiplier
            self.mac_terms += [
                MacTerm(path, positions, kernel, None, None, 1, channels),
                MacTerm(path, positions, 1, None, None, channels, layer.filters),
            ]

    # ---- groups -------------------------------------------------------------------------
    def _groups(self) -> list[ChannelGroup]:
        members: dict[int, list[Space]] = {}
        for space in self.spaces:
            members.setdefault(self.root(space.id), []).append(space)
        touched: dict[int, list[str]] = {}
        for sliced in self.sliced:
            for space in sliced.map.spaces:
                layers = touched.setdefault(self.root(space), [])
                if sliced.layer not in layers:
                    layers.append(sliced.layer)
        groups = []
        for root, spaces in members.items():
            producers = tuple(s.producer for s in spaces if s.producer is not None)
            if not producers:
                continue  # model inputs and barrier outputs: nothing writes them to prune
            reasons = list(dict.fromkeys(self._kept_reasons.get(root, [])))
            groups.append(
                ChannelGroup(
                    id=root,
                    size=spaces[0].size,
                    producers=producers,
                    layers=tuple(touched.get(root, [])),
                    kept_reason="; ".join(reasons) if reasons else None,
                )
            )
        return groups

    def group_of(self, space: int) -> ChannelGroup | None:
        """The group a space belongs to (None for an input or a barrier's output)."""
        root = self.root(space)
        return next((g for g in self.groups if g.id == root), None)


def _last_dim(shape, where) -> int:
    if not shape or shape[-1] is None:
        raise ValueError(f"{where}: the channel (last) axis of shape {shape} must be known.")
    return int(shape[-1])


def _positions(shape) -> int | None:
    inner = shape[1:-1]
    return None if any(d is None for d in inner) else math.prod(inner)


def _normalized_axis(axis, rank: int) -> int | None:
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return None
        axis = axis[0]
    return axis % rank


def _activation_name(activation) -> str:
    return getattr(activation, "__name__", type(activation).__name__).lower()


def _is_number(value) -> bool:
    import numbers

    return isinstance(value, numbers.Number)


def _counted_anyway(layer) -> bool:
    return isinstance(layer, _CONVS + _DEPTHWISE + _SEPARABLE)
