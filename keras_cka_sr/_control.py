"""Control flow (private): `cond`, Keras' `ops.cond` without JAX's eager cost."""

import keras
from keras import ops


def cond(pred, true_fn, false_fn):
    """`ops.cond(pred, true_fn, false_fn)`, except that on JAX a concrete `pred` (an eager
    step: `jit_compile=False`, `run_eagerly=True`) picks its branch in Python. Outside
    `jit`, `jax.lax.cond` compiles both branches on every call: a small CNN's eager step
    went from 0.19 s to 3.6 s with a penalty due every 5th step. Traced and symbolic
    predicates (under `jit`, in a functional model's graph) still get `ops.cond`."""
    if keras.backend.backend() == "jax" and not isinstance(pred, keras.KerasTensor):
        import jax

        if not isinstance(pred, jax.core.Tracer):
            return true_fn() if bool(pred) else false_fn()
    return ops.cond(pred, true_fn, false_fn)
