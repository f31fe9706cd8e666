import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import pruning
from keras_cka_sr.pruning import masks
from tests.support import tfmot_oracle


def ours_masks_over_steps(layer, kernel, x, schedule, steps, **kwargs):
    wrapper = pruning.PruneLowMagnitude(layer, pruning_schedule=schedule, **kwargs)
    model = keras.Sequential([keras.Input(x.shape[1:]), wrapper])
    layer.kernel.assign(kernel)
    # The custom-training-loop protocol, as tfmot's.
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    result = []
    for _ in range(steps):
        wrapper(x, training=True)
        result.append(ops.convert_to_numpy(wrapper.masks[0]).copy())
    return result


def tf_keras_layer(kind):
    import tf_keras

    if kind == "dense":
        return lambda: tf_keras.layers.Dense(12)
    return lambda: tf_keras.layers.Conv2D(6, 3)


def keras_layer(kind):
    return keras.layers.Dense(12) if kind == "dense" else keras.layers.Conv2D(6, 3)


CASES = {
    "dense": ((10, 16), (16, 12)),
    "conv": ((4, 7, 7, 5), (3, 3, 5, 6)),
}


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("ties", [False, True])
def test_masks_match_tfmot_step_for_step(kind, ties):
    tfmot = tfmot_oracle.tfmot()
    rng = np.random.default_rng(1)
    x_shape, k_shape = CASES[kind]
    x = rng.normal(size=x_shape).astype("float32")
    kernel = rng.normal(size=k_shape).astype("float32")
    if ties:  # many equal magnitudes: ties at the threshold are all kept, by both
        kernel = np.round(kernel * 2) / 2
    steps = 12
    theirs = tfmot_oracle.masks_over_steps(
        tf_keras_layer(kind),
        kernel,
        x,
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 10, 3, 2),
        steps,
    )
    mine = ours_masks_over_steps(
        keras_layer(kind), kernel, x, pruning.PolynomialDecay(0.0, 0.8, 0, 10, 3, 2), steps
    )
    for step, (a, b) in enumerate(zip(mine, theirs), start=1):
        np.testing.assert_array_equal(a, b, err_msg=f"mask differs at step {step}")
    if not ties:
        assert 1.0 - mine[-1].mean() == pytest.approx(0.8, abs=1.0 / mine[-1].size)


@pytest.mark.parametrize("pooling", ["AVG", "MAX"])
def test_block_masks_match_tfmot(pooling):
    tfmot = tfmot_oracle.tfmot()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 15)).astype("float32")
    kernel = rng.normal(size=(15, 12)).astype("float32")  # 15 rows: a partial block
    kwargs = dict(block_size=(2, 3), block_pooling_type=pooling)
    theirs = tfmot_oracle.masks_over_steps(
        tf_keras_layer("dense"),
        kernel,
        x,
        tfmot.sparsity.keras.ConstantSparsity(0.6, 0, frequency=1),
        2,
        **kwargs,
    )
    layer = keras.layers.Dense(12)
    mine = ours_masks_over_steps(
        layer, kernel, x, pruning.ConstantSparsity(0.6, 0, frequency=1), 2, **kwargs
    )
    np.testing.assert_array_equal(mine[-1], theirs[-1])


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_m_by_n_masks_match_tfmot(kind):
    tfmot = tfmot_oracle.tfmot()
    rng = np.random.default_rng(3)
    x_shape, k_shape = CASES[kind]
    x = rng.normal(size=x_shape).astype("float32")
    kernel = rng.normal(size=k_shape).astype("float32")
    schedule = dict(target_sparsity=0.5, begin_step=0, frequency=1)
    theirs = tfmot_oracle.masks_over_steps(
        tf_keras_layer(kind),
        kernel,
        x,
        tfmot.sparsity.keras.ConstantSparsity(**schedule),
        3,
        sparsity_m_by_n=(2, 4),
    )
    mine = ours_masks_over_steps(
        keras_layer(kind),
        kernel,
        x,
        pruning.ConstantSparsity(**schedule),
        3,
        sparsity_m_by_n=(2, 4),
    )
    np.testing.assert_array_equal(mine[-1], theirs[-1])


def test_magnitude_mask_keeps_k_largest():
    w = np.array([[0.1, -0.5, 0.3], [0.9, -0.2, 0.05]], "float32")
    threshold, mask = masks.magnitude_mask(w, 0.5)
    np.testing.assert_array_equal(ops.convert_to_numpy(mask), [[0, 1, 1], [1, 0, 0]])
    assert float(ops.convert_to_numpy(threshold)) == pytest.approx(0.3)


def test_magnitude_mask_keeps_at_least_one_weight():
    _, mask = masks.magnitude_mask(np.arange(1, 5, dtype="float32"), 0.99)
    np.testing.assert_array_equal(ops.convert_to_numpy(mask), [0, 0, 0, 1])


def test_magnitude_mask_under_jit_with_traced_sparsity():
    w = np.random.default_rng(0).normal(size=(50,)).astype("float32")
    layer = keras.layers.Lambda(lambda s: masks.magnitude_mask(ops.convert_to_tensor(w), s[0])[1])
    model = keras.Sequential([keras.Input((), batch_size=1), layer])
    out = model.predict(np.array([0.8], "float32"), verbose=0)
    assert int(out.sum()) == 10


def test_m_by_n_ties_keep_lower_index():
    w = np.ones((8, 1), "float32")
    mask = ops.convert_to_numpy(masks.m_by_n_mask(w, (2, 4)))[:, 0]
    np.testing.assert_array_equal(mask, [1, 1, 0, 0, 1, 1, 0, 0])
