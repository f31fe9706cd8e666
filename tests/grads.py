"""Backend-neutral gradients, for finite-difference checks."""

import keras
import numpy as np


def gradients(fn, arrays):
    """d fn(*arrays) / d arrays, with fn written in keras.ops and returning a scalar."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(a) for a in arrays]
        with tf.GradientTape() as tape:
            value = fn(*variables)
        return [np.asarray(g) for g in tape.gradient(value, variables)]
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        fn(*tensors).backward()
        return [t.grad.numpy() for t in tensors]
    raise NotImplementedError(backend)
