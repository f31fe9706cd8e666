"""Reading and setting the masks of a model's `PruneLowMagnitude` wrappers (the one mask
mechanism every sparse method here writes to)."""

import contextlib

import keras
import numpy as np

from keras_cka_sr._numpy import to_numpy
from keras_cka_sr.pruning.wrapper import PruneLowMagnitude, collect_prunable_layers


def pruned_slots(model: keras.Model) -> list[tuple[PruneLowMagnitude, int]]:
    """(wrapper, index) of every pruned weight in `model`, in layer order."""
    slots = [(w, i) for w in collect_prunable_layers(model) for i in range(len(w.pruned_weights))]
    if not slots:
        raise ValueError(
            f"Model {model.name!r} has no pruned weights: wrap it with "
            "keras_cka_sr.pruning.prune_low_magnitude (e.g. with a StaticMask schedule) first."
        )
    for wrapper, _ in slots:
        if not wrapper.built:
            raise ValueError(
                f"Layer {wrapper.name!r} is not built; build the model (keras.Input) first."
            )
    return slots


def edge_indices(slots, keep_first_last_dense: bool) -> list[int]:
    """Indices of the first and the last pruned weight when they are to stay dense."""
    return sorted({0, len(slots) - 1}) if keep_first_last_dense else []


def effective_weights(slots) -> list[np.ndarray]:
    """`weight * mask` of every slot, as NumPy arrays."""
    return [to_numpy(w.pruned_weights[i]) * to_numpy(w.masks[i]) for w, i in slots]


def current_masks(slots) -> list[np.ndarray]:
    return [to_numpy(w.masks[i]) for w, i in slots]


RESCALE = ("none", "density", "norm")


def assign_masks(slots, masks, rescale: str = "none", dense_norms=None) -> dict[str, float]:
    """Sets each slot's mask (and masks its stored weight); returns densities by path.

    Sparsity-aware initialization, so that each layer's output keeps the scale it had
    dense: `rescale="density"` multiplies kept entries by `1 / sqrt(density)` (Evci et al.
    2020; Liu et al. 2022; right for a random mask, which keeps a `density` share of the
    squared norm in expectation); `rescale="norm"` by `||w|| / ||w * mask||`, the measured
    share (for a mask that selected large weights, as SNIP and GraSP do: there
    `1 / sqrt(density)` blows the output up), with `||w||` from `dense_norms` when the
    stored weights were masked before (SynFlow's rounds).
    """
    if rescale not in RESCALE:
        raise ValueError(f"`rescale` must be one of {RESCALE}; got {rescale!r}.")
    densities = {}
    for k, ((wrapper, i), mask) in enumerate(zip(slots, masks)):
        variable = wrapper.masks[i]
        mask = np.asarray(mask, dtype="float32").reshape(variable.shape)
        variable.assign(mask.astype(variable.dtype))
        density = float(np.sum(mask, dtype=np.float64)) / mask.size
        if rescale != "none" and density > 0:
            weight = wrapper.pruned_weights[i]
            value = to_numpy(weight)
            if rescale == "density":
                factor = 1.0 / np.sqrt(density)
            else:
                kept = np.sqrt(np.sum(np.square(value * mask, dtype=np.float64)))
                dense = (
                    dense_norms[k]
                    if dense_norms is not None
                    else np.sqrt(np.sum(np.square(value, dtype=np.float64)))
                )
                factor = dense / kept if kept else 1.0
            weight.assign(value * factor)
        densities[wrapper.pruned_weights[i].path] = density
    for wrapper in {id(w): w for w, _ in slots}.values():
        wrapper.apply_masks()
    return densities


@contextlib.contextmanager
def scoring(slots):
    """Training-mode passes that only score weights (their state updates are discarded):
    the wrappers do not warn about a missing `UpdatePruningStep`."""
    wrappers = list({id(w): w for w, _ in slots}.values())
    saved = [w.callback_active for w in wrappers]
    try:
        for wrapper in wrappers:
            wrapper.callback_active = True
        yield
    finally:
        for wrapper, active in zip(wrappers, saved):
            wrapper.callback_active = active
