"""Sparse training methods of the paper's experiments, on the pruning wrapper's masks.

* random static sparse training (RST): a random mask fixed at initialisation, with
  Erdős–Rényi-Kernel (ERK) layer-wise densities (Evci et al. 2020), the method the
  paper's reference code plugs CKA-SR into;
* gradual magnitude pruning (GMP) and one-shot pruning use `PolynomialDecay` and
  `ConstantSparsity` from `keras_cka_sr.pruning` directly.

All of them go through `PruneLowMagnitude`'s masks, so there is one mask mechanism.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_cka_sr import _compat
from keras_cka_sr._numpy import to_numpy
from keras_cka_sr._validation import check_sparsity
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.schedules import PruningSchedule
from keras_cka_sr.pruning.wrapper import PruneLowMagnitude
from keras_cka_sr.sparse.allocation import erk_densities
from keras_cka_sr.sparse.init_pruning import prune_at_initialization

__all__ = ["StaticMask", "erk_densities", "kernel_stats", "set_random_masks"]

DISTRIBUTIONS = ("erk", "uniform")  # the order of the CLI choices


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
        return self._nested({"sparsity": self.sparsity})


def set_random_masks(
    model: keras.Model,
    sparsity: float,
    seed: int = 0,
    distribution: str = "erk",
    rescale: bool = False,
    keep_first_last_dense: bool = False,
) -> dict[str, float]:
    """Draws a random fixed mask for every pruned weight of `model`'s wrappers.

    Layer densities are ERK or uniform for overall sparsity `sparsity`, with integer
    counts that keep exactly `round((1 - sparsity) * N)` of the N pruned weights; the
    stored weights are masked too. Returns the densities, by weight path.

    `rescale=True` multiplies each weight's kept entries by `1 / sqrt(kept / size)`
    (sparsity-aware initialization, as Evci et al. and Liu et al.): a layer's output then
    has the variance it had dense. Without it, a net without normalization masked to 98%
    shrinks its activations layer by layer (LeNet-5: 2e-2 at conv1 to 5e-5 at fc2), and
    CKA-SR's gradient can then dominate the task's (README, "Safety").
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"`distribution` must be one of {DISTRIBUTIONS}; got {distribution!r}.")
    return prune_at_initialization(
        model,
        "random",
        sparsity,
        allocation=distribution,
        keep_first_last_dense=keep_first_last_dense,
        rescale=rescale,
        seed=seed,
    )


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
                values.append(to_numpy(weight) * to_numpy(mask))
        elif registry.has_prunable_rule(layer) and layer.built and id(layer) not in wrapped:
            values.extend(to_numpy(w) for w in registry.prunable_weights(layer))
    flat = np.concatenate([v.ravel() for v in values]) if values else np.zeros(0)
    return {
        "sparsity": float(np.mean(flat == 0)) if flat.size else math.nan,
        "small_weight_share": float(np.mean(np.abs(flat) < small)) if flat.size else math.nan,
        "num_weights": int(flat.size),
        "magnitudes": np.abs(flat),
    }
