"""What a pruned model holds, read in NumPy: the tests' view of kernels and steps."""

import numpy as np

from keras_cka_sr import pruning
from keras_cka_sr._numpy import to_numpy


def stored_sparsities(model):
    """The zero share of every stored kernel of `model`, in weight order."""
    return [float(np.mean(to_numpy(w) == 0)) for w in model.weights if w.path.endswith("kernel")]


def pruning_steps(model):
    """The set of `pruning_step` values of the model's pruning wrappers (one when in step)."""
    return {int(to_numpy(layer.pruning_step)) for layer in pruning.collect_prunable_layers(model)}
