"""tensorflow-model-optimization on tf_keras: the oracle our pruning must match."""

import numpy as np
import pytest


def tfmot():
    pytest.importorskip("tf_keras")
    return pytest.importorskip("tensorflow_model_optimization")


def schedule_values(schedule, steps):
    import tensorflow as tf

    out = []
    for t in steps:
        should, sparsity = schedule(tf.constant(t, tf.int64))
        out.append((bool(should.numpy()), float(np.float32(sparsity.numpy()))))
    return out


def masks_over_steps(layer_factory, kernel, x, schedule, steps, **prune_kwargs):
    """Masks of a tfmot-pruned tf_keras layer after each of `steps` training calls."""
    import tensorflow as tf

    sparsity = tfmot().sparsity.keras
    layer = layer_factory()
    wrapped = sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, **prune_kwargs)
    wrapped.build(x.shape)
    layer.kernel.assign(kernel)
    wrapped.pruning_step.assign(0)  # what UpdatePruningStep.on_train_begin does
    result = []
    for _ in range(steps):
        wrapped(tf.constant(x), training=True)
        result.append(wrapped.pruning_vars[0][1].numpy().copy())
    return result
