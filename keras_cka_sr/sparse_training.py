"""Sparse training methods of the paper's experiments, on the pruning wrapper's masks.

* random static sparse training (RST): a random mask fixed at initialisation, with
  Erdős–Rényi-Kernel (ERK) layer-wise densities (Evci et al. 2020), the method the
  paper's reference code plugs CKA-SR into;
* gradual magnitude pruning (GMP) and one-shot pruning use `PolynomialDecay` and
  `ConstantSparsity` from `keras_cka_sr.pruning` directly.

All of them go through `PruneLowMagnitude`'s masks, so there is one mask mechanism.
"""

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr._validation import check_bool, check_float, check_int, check_sparsity
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.schedules import PruningSchedule
from keras_cka_sr.pruning.wrapper import PruneLowMagnitude, collect_prunable_layers

DISTRIBUTIONS = ("erk", "uniform")


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class StaticMask(PruningSchedule):
    """Never updates masks: they stay as set (e.g. by `set_random_masks`).

    `sparsity` is the overall sparsity the masks were drawn for (reported, not used).
    """

    def __init__(self, sparsity):
        self.sparsity = check_sparsity("sparsity", sparsity)

    def __call__(self, step):
        return ops.convert_to_tensor(False), ops.convert_to_tensor(self.sparsity, "float32")

    def get_config(self):
        return {"sparsity": self.sparsity}


def erk_densities(
    shapes: Sequence[Sequence[int]], sparsity: float, power_scale: float = 1.0
) -> list[float]:
    """Per-layer densities with ERK scaling and overall density `1 - sparsity`.

    A layer's density is proportional to `sum(shape) / prod(shape)`; layers whose
    density would exceed 1 are kept dense and the others rescaled (RigL's algorithm).
    """
    sparsity = check_sparsity("sparsity", sparsity)
    power_scale = check_float("power_scale", power_scale)
    sizes = [int(np.prod(s)) for s in shapes]
    raw = [(sum(s) / np.prod(s)) ** power_scale for s in shapes]
    dense = set()
    while True:
        divisor, rhs = 0.0, 0.0
        for i, size in enumerate(sizes):
            if i in dense:
                rhs -= size * sparsity
            else:
                rhs += size * (1.0 - sparsity)
                divisor += raw[i] * size
        epsilon = rhs / divisor
        probabilities = {i: epsilon * raw[i] for i in range(len(sizes)) if i not in dense}
        worst = max(probabilities.values())
        if worst <= 1.0:
            break
        dense.update(i for i, p in probabilities.items() if p == worst)
    return [1.0 if i in dense else probabilities[i] for i in range(len(sizes))]


def set_random_masks(
    model: keras.Model,
    sparsity: float,
    seed: int = 0,
    distribution: str = "erk",
    rescale: bool = False,
) -> dict[str, float]:
    """Draws a random fixed mask for every pruned weight of `model`'s wrappers.

    Each weight keeps exactly `round(density * size)` (at least 1) random entries, with
    ERK or uniform densities for overall sparsity `sparsity`; the stored weights are
    masked too. Returns the densities, by weight path.

    `rescale=True` multiplies each weight's kept entries by `1 / sqrt(kept / size)`
    (sparsity-aware initialization, as Evci et al. and Liu et al.): a layer's output then
    has the variance it had dense. Without it, a net without normalization masked to 98%
    shrinks its activations layer by layer (LeNet-5: 2e-2 at conv1 to 5e-5 at fc2), and
    CKA-SR's gradient can then dominate the task's (README, "Safety").
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"`distribution` must be one of {DISTRIBUTIONS}; got {distribution!r}.")
    sparsity = check_sparsity("sparsity", sparsity)
    seed = check_int("seed", seed, 0)
    rescale = check_bool("rescale", rescale)
    wrappers = collect_prunable_layers(model)
    pairs = [(w, i) for w in wrappers for i in range(len(w.pruned_weights))]
    if not pairs:
        raise ValueError(f"Model {model.name!r} has no pruned weights to mask.")
    shapes = [tuple(w.pruned_weights[i].shape) for w, i in pairs]
    if distribution == "erk":
        densities = erk_densities(shapes, sparsity)
    else:
        densities = [1.0 - sparsity] * len(shapes)
    rng = np.random.default_rng(seed)
    result = {}
    for (wrapper, i), shape, density in zip(pairs, shapes, densities):
        size = int(np.prod(shape))
        keep = max(int(round(density * size)), 1)
        mask = np.zeros(size, dtype="float32")
        mask[rng.permutation(size)[:keep]] = 1.0
        wrapper.masks[i].assign(mask.reshape(shape).astype(wrapper.masks[i].dtype))
        if rescale:
            weight = wrapper.pruned_weights[i]
            factor = float(np.sqrt(size / keep))
            weight.assign(ops.convert_to_numpy(weight) * factor)
        result[wrapper.pruned_weights[i].path] = density
        wrapper.apply_masks()
    return result


def kernel_stats(model: keras.Model, small: float = 1e-3) -> dict:
    """Sparsity and the share of |w| < `small` over the prunable kernels of `model`.

    Kernels are those the pruning registry prunes (wrapped or not); biases and
    normalization weights are left out.
    """
    layers = _compat.flatten_layers(model, include_self=False)
    wrapped = {id(w.layer) for w in layers if isinstance(w, PruneLowMagnitude)}
    values = []
    for layer in layers:
        if isinstance(layer, PruneLowMagnitude):
            for weight, mask in zip(layer.pruned_weights, layer.masks):
                values.append(ops.convert_to_numpy(weight) * ops.convert_to_numpy(mask))
        elif registry.has_prunable_rule(layer) and layer.built and id(layer) not in wrapped:
            values.extend(ops.convert_to_numpy(w) for w in registry.prunable_weights(layer))
    flat = np.concatenate([v.ravel() for v in values]) if values else np.zeros(0)
    return {
        "sparsity": float(np.mean(flat == 0)) if flat.size else math.nan,
        "small_weight_share": float(np.mean(np.abs(flat) < small)) if flat.size else math.nan,
        "num_weights": int(flat.size),
        "magnitudes": np.abs(flat),
    }
