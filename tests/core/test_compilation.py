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
