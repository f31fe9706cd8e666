"""Statistics of a model's prunable kernels: sparsity and the share of small weights."""

import math

import keras
import numpy as np

from keras_cka_sr._numpy import to_numpy
from keras_cka_sr.pruning import registry


def kernel_stats(model: keras.Model, small: float = 1e-3) -> dict:
    """Sparsity and the share of |w| < `small` over the prunable kernels of `model`.

    Kernels are those the pruning registry prunes (wrapped or not); biases and
    normalization weights are left out.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> stats = sparse.kernel_stats(model)
        >>> stats["num_weights"], stats["sparsity"]
        (432, 0.0)
    """
    values = [
        to_numpy(k.variable) * (1 if k.mask is None else to_numpy(k.mask))
        for k in registry.prunable_kernels(model)
    ]
    flat = np.concatenate([v.ravel() for v in values]) if values else np.zeros(0)
    return {
        "sparsity": float(np.mean(flat == 0)) if flat.size else math.nan,
        "small_weight_share": float(np.mean(np.abs(flat) < small)) if flat.size else math.nan,
        "num_weights": int(flat.size),
        "magnitudes": np.abs(flat),
    }
