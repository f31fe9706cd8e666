"""Backend-neutral gradients, for finite-difference checks."""

import keras
import numpy as np


def gradients(fn, arrays):
    """d fn(*arrays) / d arrays, with fn written in keras.ops and returning a scalar.

    An output that does not depend on an input (a constant) has a zero gradient.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(a) for a in arrays]
        with tf.GradientTape() as tape:
            value = fn(*variables)
        grads = tape.gradient(value, variables)
        return [np.zeros_like(a) if g is None else np.asarray(g) for a, g in zip(arrays, grads)]
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
        return [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        value = fn(*tensors)
        if value.requires_grad:
            value.backward()
        return [
            np.zeros_like(a) if t.grad is None else t.grad.numpy() for a, t in zip(arrays, tensors)
        ]
    raise NotImplementedError(backend)
