"""Reading and setting the masks of a model's `PruneLowMagnitude` wrappers (the one mask
mechanism every sparse method here writes to)."""

import contextlib

import keras
import numpy as np
from keras import ops

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
    return [
        ops.convert_to_numpy(w.pruned_weights[i]) * ops.convert_to_numpy(w.masks[i])
        for w, i in slots
    ]


def current_masks(slots) -> list[np.ndarray]:
    return [ops.convert_to_numpy(w.masks[i]) for w, i in slots]


def assign_masks(slots, masks, rescale: bool = False) -> dict[str, float]:
    """Sets each slot's mask (and masks its stored weight); returns densities by path.

    `rescale=True` multiplies a weight's kept entries by `1 / sqrt(density)` (sparsity-aware
    initialization, Evci et al. 2020; Liu et al. 2022): the layer's output keeps the
    variance it had dense.
    """
    densities = {}
    for (wrapper, i), mask in zip(slots, masks):
        variable = wrapper.masks[i]
        mask = np.asarray(mask, dtype="float32").reshape(variable.shape)
        variable.assign(mask.astype(variable.dtype))
        density = float(np.sum(mask, dtype=np.float64)) / mask.size
        if rescale and density > 0:
            weight = wrapper.pruned_weights[i]
            weight.assign(ops.convert_to_numpy(weight) / np.sqrt(density))
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
