"""Statistics of a model's prunable kernels: sparsity and the share of small weights."""

import math

import keras
import numpy as np

from keras_cka_sr import _compat
from keras_cka_sr._numpy import to_numpy
from keras_cka_sr.pruning import registry
from keras_cka_sr.pruning.wrapper import PruneLowMagnitude


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
