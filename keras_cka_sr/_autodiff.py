"""Gradients of a scalar function of backend tensors, on whichever backend Keras runs."""

import keras


def gradients(fn, values):
    """`d fn(values) / d values` for a list of backend tensors; a value `fn` does not
    depend on gets a zero gradient."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return list(jax.grad(lambda vs: fn(vs))(list(values)))
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.convert_to_tensor(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(values)
            result = fn(values)
        grads = tape.gradient(result, values)
        return [tf.zeros_like(v) if g is None else g for v, g in zip(values, grads)]
    if backend == "torch":
        import torch

        values = [v.detach().clone().requires_grad_(True) for v in values]
        result = fn(values)
        grads = torch.autograd.grad(result, values, allow_unused=True)
        return [torch.zeros_like(v) if g is None else g for v, g in zip(values, grads)]
    raise NotImplementedError(f"Gradients on the {backend!r} backend are not supported.")


def compiled(fn):
    """`fn` compiled where the backend compiles (jax.jit, tf.function); torch runs eagerly."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn
