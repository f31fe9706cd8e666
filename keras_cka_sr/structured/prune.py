"""`prune_channels`: a physically smaller model, with the channels of each group removed
wherever they are read or written."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr._validation import check_float, check_int
from keras_cka_sr.structured.graph import ChannelMap, DependencyGraph
from keras_cka_sr.structured.importance import (
    IMPORTANCES,
    group_scores,
    layers_by_path,
)

TARGETS = ("channels", "flops")
_UNSCORED = {"bn_scale": "no BatchNormalization in the group to rank by bn_scale"}
SCOPES = ("layer", "global")


@dataclasses.dataclass(frozen=True)
class GroupChange:
    """One channel group's width before and after pruning, and which channels it kept."""

    producers: tuple[str, ...]
    before: int
    after: int
    kept_reason: str | None
    kept: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ChannelPruningReport:
    """What `prune_channels` removed: per group, the widths; the model's MACs (None where a
    spatial size is unknown) and parameters; the barriers whose channels were kept; the
    layers with weights whose MACs are not counted.

    Examples:
        >>> inp = keras.Input((16,))
        >>> h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
        >>> model = keras.Model(inp, keras.layers.Dense(4, name="head")(h))
        >>> _, report = structured.prune_channels(model, 0.5, target="channels")
        >>> [(g.producers, g.before, g.after) for g in report.groups]
        [(('hidden',), 32, 16), (('head',), 4, 4)]
        >>> report.macs_before, report.macs_after, round(report.flops_removed, 2)
        (640, 320, 0.5)
    """

    groups: tuple[GroupChange, ...]
    macs_before: int | None
    macs_after: int | None
    params_before: int
    params_after: int
    barriers: tuple[tuple[str, str, str], ...]
    uncounted: tuple[str, ...]
    target: str
    fraction: float

    @property
    def flops_removed(self) -> float | None:
        """The fraction of multiply-accumulates removed (the same fraction as of FLOPs)."""
        if not self.macs_before or self.macs_after is None:
            return None
        return 1.0 - self.macs_after / self.macs_before

    @property
    def channels_removed(self) -> float:
        """The fraction of prunable channels removed."""
        prunable = [g for g in self.groups if g.kept_reason is None]
        before = sum(g.before for g in prunable)
        return 1.0 - sum(g.after for g in prunable) / before if before else 0.0

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        out = dataclasses.asdict(self)
        out["flops_removed"] = self.flops_removed
        out["channels_removed"] = self.channels_removed
        return out

    def __str__(self) -> str:
        lines = [f"{'group (layers writing it)':<48} {'channels':>12}"]
        for g in self.groups:
            names = ", ".join(g.producers)
            names = names if len(names) <= 46 else names[:43] + "..."
            width = f"{g.before} -> {g.after}" if g.kept_reason is None else f"{g.before} kept"
            lines.append(f"{names:<48} {width:>12}")
        if self.macs_before is not None and self.macs_after is not None:
            lines.append(
                f"MACs {self.macs_before:,} -> {self.macs_after:,} "
                f"({self.flops_removed:.1%} of FLOPs removed)"
            )
        lines.append(f"params {self.params_before:,} -> {self.params_after:,}")
        for layer, class_name, reason in self.barriers:
            lines.append(f"barrier {layer} ({class_name}): {reason}; its input channels kept")
        if self.uncounted:
            lines.append(f"MACs not counted for: {', '.join(self.uncounted)}")
        return "\n".join(lines)


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one sample through the model's Conv, DepthwiseConv,
    SeparableConv and Dense layers (FLOPs = 2 x MACs). Other layers add none; layers with
    weights the graph does not understand are listed by `DependencyGraph(model).uncounted`.

    Examples:
        >>> inp = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(4, 3, padding="same")(inp)  # 64 * 9 * 3 * 4
        >>> h = keras.layers.GlobalAveragePooling2D()(h)
        >>> structured.count_macs(keras.Model(inp, keras.layers.Dense(2)(h)))  # + 4 * 2
        6920
    """
    graph = DependencyGraph(model)
    macs = _macs(graph, {})
    if macs is None:
        raise ValueError(
            "MACs need every spatial size: the model has an input of unknown height, width "
            "or length. Build it on a fixed shape, e.g. `keras.Input((32, 32, 3))`."
        )
    return macs


def _width(graph: DependencyGraph, channel_map: ChannelMap | None, kept: dict) -> int:
    if channel_map is None:
        return 1
    total = 0
    for space, size in zip(channel_map.spaces, channel_map.sizes):
        total += len(kept.get(graph.root(space), range(size)))
    return total * channel_map.repeat


def _macs(graph: DependencyGraph, kept: dict) -> int | None:
    total = 0
    for term in graph.mac_terms:
        if term.positions is None:
            return None
        n_in = _width(graph, term.in_map, kept) * term.fixed_in
        n_out = _width(graph, term.out_map, kept) * term.fixed_out
        total += term.positions * term.kernel * n_in * n_out
    return total


def _indices(graph: DependencyGraph, channel_map: ChannelMap, kept: dict) -> np.ndarray:
    """The original indices along an axis laid out as `channel_map` that survive."""
    parts, offset = [], 0
    for space, size in zip(channel_map.spaces, channel_map.sizes):
        parts.append(offset + np.asarray(kept.get(graph.root(space), range(size)), np.int64))
        offset += size
    one = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return np.concatenate([p * channel_map.width + one for p in range(channel_map.repeat)])


def _kept_count(size: int, remove_fraction: float, round_to: int) -> int:
    keep = size - math.floor(remove_fraction * size + 1e-9)
    keep = min(size, round_to * math.ceil(max(keep, 1) / round_to))
    return keep


def _plan(level, scores, sizes, scope, round_to, pooled):
    """Kept counts per group at a pruning level in [0, 1): the fraction removed from every
    group (layer scope), or the quantile of the pooled normalized scores below which
    channels go (global scope)."""
    if scope == "layer":
        return {g: _kept_count(sizes[g], level, round_to) for g in scores}
    threshold = np.quantile(pooled, level) if level > 0 else -np.inf
    counts = {}
    for g, s in scores.items():
        removed = int(np.sum(s < threshold)) / sizes[g]
        counts[g] = _kept_count(sizes[g], removed, round_to)
    return counts


def _normalized(scores: dict) -> dict:
    out = {}
    for g, s in scores.items():
        mean = float(np.mean(s))
        out[g] = s / mean if mean > 0 else np.zeros_like(s)
    return out


def prune_channels(
    model: keras.Model,
    fraction: float,
    *,
    target: str = "flops",
    importance: str = "l1",
    scope: str = "layer",
    round_to: int = 1,
    keep: tuple[str, ...] | list[str] = (),
    data: tuple | None = None,
    loss: keras.losses.Loss | None = None,
) -> tuple[keras.Model, ChannelPruningReport]:
    """Removes whole channels: returns a smaller model of the same layer classes (weights
    copied, uncompiled) and a report.

    Channels coupled by residual additions, multiplications and concatenations are removed
    together (see `DependencyGraph`); the model's inputs and outputs keep theirs, and so do
    the channels read by a layer the graph does not understand (a barrier, named in the
    report). The pruned model computes what the original computes with the removed
    channels' weights zeroed.

    Args:
        model: a built Functional or Sequential model (not wrapped for pruning).
        fraction: in (0, 1): the fraction of FLOPs (`target="flops"`, counted as MACs) or
            of prunable channels (`target="channels"`) to remove.
        target: "flops" or "channels".
        importance: "l1" or "l2" (norm over every kernel entry a channel's removal
            deletes), "bn_scale" (|gamma| of the group's BatchNormalization layers, network
            slimming; groups without one are kept), or "taylor" (|w * dL/dw| on `data`).
        scope: "layer" (every group loses the same fraction) or "global" (channels ranked
            across groups, each group's scores divided by their mean first).
        round_to: kept channel counts are multiples of this (e.g. 8 for SIMD widths).
        keep: names of layers whose output channels are kept.
        data: `(x, y)` for `importance="taylor"`.
        loss: the loss for "taylor" (default: sparse categorical cross-entropy on logits).

    Examples:
        >>> inp = keras.Input((8, 8, 3))
        >>> h = keras.layers.Conv2D(16, 3, padding="same", name="c1")(inp)
        >>> h = keras.layers.Conv2D(16, 3, padding="same", name="c2")(h)
        >>> h = keras.layers.GlobalAveragePooling2D()(h)
        >>> model = keras.Model(inp, keras.layers.Dense(2)(h))
        >>> small, report = structured.prune_channels(model, 0.5, target="channels")
        >>> [small.get_layer(n).filters for n in ("c1", "c2")]
        [8, 8]
        >>> round(report.flops_removed, 2)
        0.71
    """
    fraction = check_float("fraction", fraction, 0.0, 1.0, False, False)
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}; got {target!r}.")
    if importance not in IMPORTANCES:
        raise ValueError(f"`importance` must be one of {IMPORTANCES}; got {importance!r}.")
    if scope not in SCOPES:
        raise ValueError(f"`scope` must be one of {SCOPES}; got {scope!r}.")
    round_to = check_int("round_to", round_to, 1)
    if importance == "taylor" and data is None:
        raise ValueError('`importance="taylor"` needs `data=(x, y)`: a batch to take gradients on.')
    graph = DependencyGraph(model, keep)
    if not any(g.prunable for g in graph.groups):
        reasons = "; ".join(f"{', '.join(g.producers)}: {g.kept_reason}" for g in graph.groups)
        raise ValueError(
            f"Nothing to prune in {model.name!r}: every channel group is kept "
            f"({reasons or 'no Conv, Dense or SeparableConv layer'})."
        )
    scores = {g: s for g, s in group_scores(graph, importance, data, loss).items() if s is not None}
    sizes = {g.id: g.size for g in graph.groups}
    normalized = _normalized(scores)
    pooled = np.concatenate(list(normalized.values())) if normalized else np.zeros(1)
    counts = _choose_counts(graph, fraction, target, scope, round_to, normalized, sizes, pooled)
    kept = {g: np.sort(np.argsort(-scores[g], kind="stable")[: counts[g]]) for g in counts}
    pruned = _rebuild(model, graph, kept)
    report = ChannelPruningReport(
        groups=tuple(
            GroupChange(
                g.producers,
                g.size,
                len(kept.get(g.id, range(g.size))),
                g.kept_reason if g.id in scores or not g.prunable else _UNSCORED[importance],
                tuple(int(i) for i in kept.get(g.id, range(g.size))),
            )
            for g in graph.groups
        ),
        macs_before=_macs(graph, {}),
        macs_after=_macs(graph, kept),
        params_before=model.count_params(),
        params_after=pruned.count_params(),
        barriers=tuple((b.layer, b.class_name, b.reason) for b in graph.barriers),
        uncounted=tuple(graph.uncounted),
        target=target,
        fraction=fraction,
    )
    achieved = report.flops_removed if target == "flops" else report.channels_removed
    if achieved is not None and achieved < fraction - 0.02:
        warnings.warn(
            f"prune_channels reached {achieved:.1%} of {target} removed, not the "
            f"{fraction:.1%} asked: every prunable group is at its floor (1 channel, or "
            f"`round_to`={round_to}) or the rest is kept ({len(graph.barriers)} barriers). "
            f"See the report.",
            stacklevel=2,
        )
    elif achieved is not None and achieved > fraction + 0.05:
        warnings.warn(
            f"prune_channels removed {achieved:.1%} of {target}, more than the {fraction:.1%} "
            f"asked: kept counts move in steps (multiples of `round_to`={round_to}, whole "
            "channels of small groups), and the first step that reaches the target goes past "
            "it. A smaller `round_to` or scope='global' steps finer. See the report.",
            stacklevel=2,
        )
    return pruned, report


def _choose_counts(graph, fraction, target, scope, round_to, normalized, sizes, pooled):
    plan = lambda level: _plan(level, normalized, sizes, scope, round_to, pooled)  # noqa: E731
    if target == "channels":
        return plan(fraction)
    before = _macs(graph, {})
    if before is None:
        raise ValueError(
            '`target="flops"` needs every spatial size, and the model has an input of '
            "unknown height, width or length: build it on a fixed shape, or use "
            '`target="channels"`.'
        )
    goal = (1.0 - fraction) * before

    def macs_at(level):
        counts = plan(level)
        return _macs(graph, {g: range(n) for g, n in counts.items()})

    low, high = 0.0, 1.0 - 1e-9
    if macs_at(high) > goal:
        return plan(high)
    for _ in range(50):
        middle = (low + high) / 2
        if macs_at(middle) <= goal:
            high = middle
        else:
            low = middle
    return plan(high)


def _rebuild(model, graph: DependencyGraph, kept: dict) -> keras.Model:
    config = copy.deepcopy(model.get_config())
    entries = {}
    _index_entries(config, "", entries)
    for path, (field, channel_map) in graph.config_edits.items():
        layer_config = entries[path]["config"]
        width = _width(graph, channel_map, kept)
        if field == "target_shape":
            layer_config[field] = [*layer_config[field][:-1], width]
        else:
            layer_config[field] = width
    try:
        with _compat.trusted_deserialization():
            new = type(model).from_config(config)
    except Exception as error:
        raise ValueError(
            f"prune_channels rebuilds {model.name!r} from its config with new channel "
            f"counts, and the rebuild failed: {error}. Every custom layer needs "
            f"`get_config` and `@keras.saving.register_keras_serializable()`."
        ) from error
    old_layers, new_layers = layers_by_path(model), layers_by_path(new)
    axes = {}
    for sliced in graph.sliced:
        axes.setdefault((sliced.layer, sliced.weight), []).append((sliced.axis, sliced.map))
    for path, old in old_layers.items():
        fresh = new_layers[path]
        for old_var, new_var in zip(old.weights, fresh.weights):
            value = ops.convert_to_numpy(old_var)
            for axis, channel_map in axes.get((path, old_var.name), ()):
                value = np.take(value, _indices(graph, channel_map, kept), axis=axis)
            if tuple(value.shape) != tuple(new_var.shape):
                raise RuntimeError(
                    f"prune_channels: {path}/{old_var.name} sliced to {value.shape}, but the "
                    f"rebuilt layer holds {tuple(new_var.shape)}; please report this model."
                )
            new_var.assign(value)
    return new


def _index_entries(config: dict, prefix: str, entries: dict) -> None:
    """Maps layer paths to their entries in a (nested) model config; drops the entries'
    build configs so that each layer builds on its new input shape when called."""
    for entry in config.get("layers", []):
        entry.pop("build_config", None)
        name = entry.get("name") or entry["config"]["name"]
        if "layers" in entry.get("config", {}):
            _index_entries(entry["config"], prefix + name + "/", entries)
        else:
            entries[prefix + name] = entry
