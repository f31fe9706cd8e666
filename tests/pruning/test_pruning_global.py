"""Global magnitude pruning (`global_ranking=True`) against a NumPy oracle, on every backend."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import pruning


def model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(
        12, name="hidden", kernel_initializer=keras.initializers.RandomNormal(stddev=0.3)
    )(x)
    outputs = keras.layers.Dense(3, name="out")(x)
    return keras.Model(inputs, outputs)


def data(n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype("float32"), rng.integers(0, 3, n)


def kernels(plain):
    return [ops.convert_to_numpy(plain.get_layer(n).kernel) for n in ("conv", "hidden", "out")]


def oracle_masks(values, sparsity):
    """tfmot's rule over all kernels at once: keep the k = max(round(N (1 - s)), 1)
    largest |w| (ties at the threshold kept), one threshold for every layer."""
    flat = np.concatenate([np.abs(v).ravel() for v in values])
    k = max(int(np.round(flat.size * (1 - sparsity))), 1)
    threshold = np.sort(flat)[flat.size - k]
    return [(np.abs(v) >= threshold).astype("float32") for v in values]


def masks(pruned):
    return [ops.convert_to_numpy(w.masks[0]) for w in pruning.collect_prunable_layers(pruned)]


def test_one_pruning_step_keeps_the_global_top_weights():
    plain = model()
    pruned = pruning.prune_low_magnitude(
        plain, pruning.ConstantSparsity(0.8, 0, frequency=1), global_ranking=True
    )
    callback = pruning.UpdatePruningStep()
    callback.set_model(pruned)
    callback.on_train_begin()
    pruned(data()[0], training=True)
    expected = oracle_masks(kernels(plain), 0.8)
    for got, want in zip(masks(pruned), expected):
        np.testing.assert_array_equal(got, want)
    per_layer = [1 - m.mean() for m in expected]
    assert max(per_layer) - min(per_layer) > 0.1  # uneven: the ranking was global
    total = sum(m.size for m in expected)
    assert sum((m == 0).sum() for m in masks(pruned)) / total == pytest.approx(0.8, abs=1 / total)


@pytest.mark.filterwarnings("ignore:Layer 'conv' is pruned to 100%")
def test_a_compiled_fit_reaches_the_global_top_at_the_target():
    plain = model()
    schedule = pruning.PolynomialDecay(0.2, 0.9, begin_step=0, end_step=6, frequency=2)
    pruned = pruning.prune_low_magnitude(plain, schedule, global_ranking=True)
    # Learning rate 0: the weights stay put, so the nested masks end at the oracle's top.
    pruned.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(True))
    x, y = data()
    pruned.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for got, want in zip(masks(pruned), oracle_masks(kernels(plain), 0.9)):
        np.testing.assert_array_equal(got, want)


def test_global_ranking_survives_saving_and_regroups_at_train_begin(tmp_path):
    pruned = pruning.prune_low_magnitude(
        model(), pruning.ConstantSparsity(0.7, 0, frequency=1), global_ranking=True
    )
    pruned.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    wrappers = pruning.collect_prunable_layers(loaded)
    assert all(w.global_ranking for w in wrappers)
    loaded.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = data()
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    total = sum(m.size for m in masks(loaded))
    assert sum((m == 0).sum() for m in masks(loaded)) / total == pytest.approx(0.7, abs=0.01)


def test_block_and_m_by_n_are_refused():
    with pytest.raises(ValueError, match="global_ranking=True"):
        pruning.PruneLowMagnitude(keras.layers.Dense(4), block_size=(2, 2), global_ranking=True)
    with pytest.raises(ValueError, match="global_ranking=True"):
        pruning.PruneLowMagnitude(
            keras.layers.Dense(4), sparsity_m_by_n=(2, 4), global_ranking=True
        )


def test_different_schedules_are_refused_and_the_model_stays_usable():
    inputs = keras.Input((5,))
    first = pruning.PruneLowMagnitude(
        keras.layers.Dense(4), pruning.ConstantSparsity(0.5, 0), global_ranking=True
    )
    second = pruning.PruneLowMagnitude(
        keras.layers.Dense(2), pruning.ConstantSparsity(0.9, 0), global_ranking=True
    )
    net = keras.Model(inputs, second(first(inputs)))
    net.compile("sgd", "mse")
    x, y = np.ones((4, 5), "float32"), np.zeros((4, 2), "float32")
    with pytest.raises(ValueError, match="must share one schedule"):
        net.fit(x, y, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert net.predict(x, verbose=0).shape == (4, 2)


def test_a_lone_wrapper_without_a_group_says_how_to_group_it():
    wrapper = pruning.PruneLowMagnitude(
        keras.layers.Dense(3), pruning.ConstantSparsity(0.5, 0, frequency=1), global_ranking=True
    )
    wrapper.callback_active = True
    with pytest.raises(ValueError, match="no group of layers"):
        wrapper(np.ones((2, 4), "float32"), training=True)
