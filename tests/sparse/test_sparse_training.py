import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import pruning, sparse
from keras_cka_sr.app import zoo
from keras_cka_sr.callbacks import CKAMonitor


def test_erk_densities_reach_overall_sparsity_and_favour_small_layers():
    shapes = [(5, 5, 1, 6), (5, 5, 6, 16), (400, 120), (120, 84), (84, 10)]
    densities = sparse.erk_densities(shapes, 0.95)
    sizes = np.array([np.prod(s) for s in shapes])
    assert np.sum(np.array(densities) * sizes) / sizes.sum() == pytest.approx(0.05, rel=1e-9)
    assert all(0 < d <= 1 for d in densities)
    assert densities[0] == max(densities) and densities[2] < densities[4]
    # At lower sparsity the small first layer would exceed density 1: it is kept dense.
    assert sparse.erk_densities(shapes, 0.5)[0] == 1.0


def test_random_static_masks_are_fixed_during_training():
    model = zoo.lenet5((28, 28, 1), 10)
    pruned = pruning.prune_low_magnitude(model, pruning.StaticMask(0.9))
    sparse.set_random_masks(pruned, 0.9, seed=3)
    before = [
        ops.convert_to_numpy(m).copy()
        for w in pruning.collect_prunable_layers(pruned)
        for m in w.masks
    ]
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    pruned.fit(
        x,
        np.arange(64) % 10,
        epochs=1,
        batch_size=16,
        verbose=0,
        callbacks=[pruning.UpdatePruningStep()],
    )
    after = [
        ops.convert_to_numpy(m) for w in pruning.collect_prunable_layers(pruned) for m in w.masks
    ]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    stats = sparse.kernel_stats(pruning.strip_pruning(pruned))
    assert stats["sparsity"] == pytest.approx(0.9, abs=1e-3)


@pytest.mark.parametrize("name", zoo.NAMES)
def test_zoo_models_tap_groups(name):
    model = zoo.build(name, (28, 28, 1), 10, resnet_width=4)
    groups = zoo.tap_groups(model)
    assert all(len(g) >= 2 for g in groups)
    if name.startswith("resnet"):
        assert len(groups) == 3 and all(n.endswith("_out") for g in groups for n in g)


def test_cka_monitor_logs_mean_and_matrices():
    model = zoo.mlp((8, 8, 1), 3, width=16)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype("float32")
    monitor = CKAMonitor(x[:32], zoo.tap_groups(model))
    history = model.fit(x, np.arange(64) % 3, epochs=2, verbose=0, callbacks=[monitor]).history
    assert len(monitor.matrices) == 2 and monitor.matrices[0].shape == (3, 3)
    assert 0 < history["cka_mean"][-1] <= 1.0
    np.testing.assert_allclose(np.diag(monitor.matrices[-1]), 1.0, atol=1e-5)


def test_cka_monitor_config_leaves_out_the_probe():
    monitor = CKAMonitor(np.zeros((64, 2), "float32"), [["a", "b"], ["b", "c"]], unbiased=False)
    config = monitor.get_config()
    assert config == {
        "layer_names": [["a", "b"], ["b", "c"]],
        "unbiased": False,
        "pairs": "all",
        "log_key": "cka_mean",
    }
    assert CKAMonitor(np.zeros((4, 2)), **config).names == ["a", "b", "c"]


def test_cka_monitor_mean_is_over_the_pairs_the_loss_sums():
    matrix = np.array([[1.0, 0.2, 0.9], [0.2, 1.0, 0.6], [0.9, 0.6, 1.0]])
    probe = np.zeros((4, 2))
    every = CKAMonitor(probe, ["a", "b", "c"])
    assert every.mean_within_groups(matrix) == pytest.approx((0.2 + 0.9 + 0.6) / 3)
    adjacent = CKAMonitor(probe, ["a", "b", "c"], pairs="adjacent")
    assert adjacent.mean_within_groups(matrix) == pytest.approx((0.2 + 0.6) / 2)
    grouped = CKAMonitor(probe, [["a", "b", "c"], ["c", "a"]], pairs="adjacent")
    assert grouped.mean_within_groups(matrix) == pytest.approx((0.2 + 0.6 + 0.9) / 3)


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
def test_rescale_keeps_each_layers_output_scale(distribution):
    model = zoo.mlp((8, 8, 1), 3, width=64)
    pruned = pruning.prune_low_magnitude(model, pruning.StaticMask(0.9))
    before = [
        ops.convert_to_numpy(w).copy()
        for wrapper in pruning.collect_prunable_layers(pruned)
        for w in wrapper.pruned_weights
    ]
    sparse.set_random_masks(pruned, 0.9, seed=1, distribution=distribution, rescale=True)
    wrappers = pruning.collect_prunable_layers(pruned)
    pairs = [(w, i) for w in wrappers for i in range(len(w.pruned_weights))]
    for (wrapper, i), original in zip(pairs, before):
        mask = ops.convert_to_numpy(wrapper.masks[i])
        kept = mask.sum()
        factor = np.sqrt(mask.size / kept)
        np.testing.assert_allclose(
            ops.convert_to_numpy(wrapper.pruned_weights[i]), original * mask * factor, rtol=1e-6
        )
    # The first layer's pre-activation spread matches the dense layer's (within sampling).
    x = np.random.default_rng(0).random((512, 64)).astype("float32")
    dense_out = x @ before[0]
    sparse_out = x @ ops.convert_to_numpy(wrappers[0].pruned_weights[0])
    assert np.std(sparse_out) == pytest.approx(np.std(dense_out), rel=0.25)


def test_rescale_must_be_a_bool():
    model = pruning.prune_low_magnitude(zoo.mlp((8, 8, 1), 3, width=8), pruning.StaticMask(0.5))
    with pytest.raises(TypeError, match="rescale"):
        sparse.set_random_masks(model, 0.5, rescale="yes")
