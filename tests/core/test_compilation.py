"""The penalty compiles into the train step without retracing, and survives mixed precision."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss

BACKEND = keras.backend.backend()


class CountingLoss(CKASimilarityLoss):
    """Counts Python executions of the penalty: once per trace when compiled."""

    calls = 0

    def _penalty(self, features, pairs):
        CountingLoss.calls += 1
        return super()._penalty(features, pairs)


def cnn():
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c3")(x)
    return keras.Model(inp, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.skipif(BACKEND == "torch", reason="torch trains eagerly: nothing is traced")
@pytest.mark.parametrize("every", [1, 5])
def test_no_retracing_per_step(every):
    CountingLoss.calls = 0
    model = attach_cka_loss(
        cnn(), ["c1", "c2", "c3"], CountingLoss(num_samples=8, every_n_steps=every)
    )
    model.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True
    )
    x = np.random.default_rng(0).normal(size=(96, 8, 8, 3)).astype("float32")
    y = np.arange(96) % 2
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    after_first_epoch = CountingLoss.calls
    model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert 1 <= after_first_epoch <= 2  # traced, not run per step (6 steps)
    assert CountingLoss.calls == after_first_epoch


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "jax", reason="JAX's lax.cond outside jit compiles each call")
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jax_branches_in_python_when_eager_and_with_lax_cond_under_jit(jit, monkeypatch):
    """Eager JAX steps (jit_compile=False) pick the penalty's and the mask update's branch
    in Python: lax.cond outside jit compiled both branches every step (19x a step)."""
    import jax

    from keras_cka_sr import pruning

    calls = []
    real = jax.lax.cond
    monkeypatch.setattr(jax.lax, "cond", lambda *a, **k: calls.append(1) or real(*a, **k))
    wrapped = pruning.prune_low_magnitude(cnn(), pruning.ConstantSparsity(0.5, 0, frequency=3))
    loss = CountingLoss(num_samples=8, every_n_steps=5)
    model = attach_cka_loss(wrapped, ["c1", "c2", "c3"], loss)
    model.compile(
        "sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit
    )
    x = np.random.default_rng(0).normal(size=(96, 8, 8, 3)).astype("float32")
    CountingLoss.calls = 0
    model.fit(x, np.arange(96) % 2, batch_size=16, epochs=1, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])  # fmt: skip
    if jit:
        assert calls  # traced once: the branch is a lax.cond in the compiled step
    else:
        assert calls == [] and CountingLoss.calls == 2  # steps 0 and 5 of 6
    assert pruning.sparsity_summary(model).sparsity == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_penalty_is_finite_and_close_to_float32(policy):
    x = np.random.default_rng(1).normal(size=(32, 8, 8, 3)).astype("float32") * 4.0
    loss = CKASimilarityLoss(weight=1.0)
    reference = attach_cka_loss(cnn(), ["c1", "c2", "c3"], loss)
    weights = reference.get_weights()
    reference(x, training=True)
    expected = float(ops.convert_to_numpy(reference.get_layer("cka_regularization").last_penalty))
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = attach_cka_loss(cnn(), ["c1", "c2", "c3"], loss)
        model.set_weights(weights)
        assert model.get_layer("c1").compute_dtype in ("float16", "bfloat16")
        model(x, training=True)
        got = float(ops.convert_to_numpy(model.get_layer("cka_regularization").last_penalty))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert np.isfinite(got)
    # The penalty is 2 x (3 pairs of CKA); each CKA within 1e-2 of float32's.
    assert abs(got - expected) / 6 < 1e-2
