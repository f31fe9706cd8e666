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


def hessian_vector_product(fn, values, vectors):
    """`H v`: the gradient of `<d fn / d values, vectors>` with `vectors` held constant."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return list(jax.jvp(jax.grad(fn), (list(values),), (list(vectors),))[1])
    if backend == "tensorflow":
        import tensorflow as tf

        values = [tf.convert_to_tensor(v) for v in values]
        with tf.GradientTape() as outer:
            outer.watch(values)
            with tf.GradientTape() as inner:
                inner.watch(values)
                result = fn(values)
            grads = inner.gradient(result, values)
            dot = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(grads, vectors) if g is not None])
        hv = outer.gradient(dot, values)
        return [tf.zeros_like(v) if h is None else h for v, h in zip(values, hv)]
    if backend == "torch":
        import torch

        values = [v.detach().clone().requires_grad_(True) for v in values]
        grads = torch.autograd.grad(fn(values), values, create_graph=True, allow_unused=True)
        dot = sum((g * v).sum() for g, v in zip(grads, vectors) if g is not None)
        hv = torch.autograd.grad(dot, values, allow_unused=True)
        return [torch.zeros_like(v) if h is None else h for v, h in zip(values, hv)]
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
