import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import _compat, pruning, sparse
from tests.support import sparse_oracle


def mlp(d=5, h=7, c=3, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((d,))
    x = keras.layers.Dense(h, activation="relu", bias_initializer="random_normal")(inp)
    out = keras.layers.Dense(c, bias_initializer="random_normal")(x)
    return pruning.prune_low_magnitude(keras.Model(inp, out), pruning.StaticMask(0.5))


def weights(model):
    (w1, b1), (w2, b2) = (
        [ops.convert_to_numpy(v).astype(np.float64) for v in wrapper.layer.weights]
        for wrapper in pruning.collect_prunable_layers(model)
    )
    return w1, b1, w2, b2


def data(n=12, d=5, c=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype("float32"), rng.integers(0, c, n).astype("int32")


def masks(model):
    return [
        ops.convert_to_numpy(m) for w in pruning.collect_prunable_layers(model) for m in w.masks
    ]


# --- allocation: exact counts -------------------------------------------------------------


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95, 0.98, 0.993])
@pytest.mark.parametrize("distribution", ["uniform", "erk"])
@pytest.mark.parametrize("keep_dense", [(), (0, 3)])
def test_allocation_keeps_exactly_the_global_target(sparsity, distribution, keep_dense):
    shapes = [(3, 3, 1, 6), (5, 5, 6, 16), (400, 120), (120, 10)]
    sizes = [int(np.prod(s)) for s in shapes]
    if keep_dense and sum(sizes[i] for i in keep_dense) > (1 - sparsity) * sum(sizes):
        with pytest.raises(ValueError, match="dense"):
            sparse.layer_densities(shapes, sparsity, distribution, keep_dense)
        return
    densities = sparse.layer_densities(shapes, sparsity, distribution, keep_dense)
    counts = sparse.kept_counts(sizes, densities)
    assert sum(counts) == sparse.total_kept(sizes, sparsity)
    assert all(1 <= k <= n for k, n in zip(counts, sizes))
    assert all(counts[i] == sizes[i] for i in keep_dense)
    scores = [np.random.default_rng(i).random(s) for i, s in enumerate(shapes)]
    for allocation in sparse.ALLOCATIONS:
        kept = sparse.masks_from_scores(scores, sparsity, allocation, keep_dense)
        assert sum(int(m.sum()) for m in kept) == sparse.total_kept(sizes, sparsity)


def test_global_allocation_keeps_the_top_scores_over_all_layers():
    scores = [np.array([[5.0, 1.0], [0.5, 4.0]]), np.array([3.0, 2.0, 0.1, 6.0])]
    kept = sparse.masks_from_scores(scores, 0.5, "global")
    np.testing.assert_array_equal(kept[0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(kept[1], [1, 0, 0, 1])
    kept = sparse.masks_from_scores(scores, 0.5, "uniform")
    np.testing.assert_array_equal(kept[0], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(kept[1], [1, 0, 0, 1])
    with pytest.raises(ValueError, match="NaN or inf"):
        sparse.masks_from_scores([np.array([np.inf, 1.0])], 0.5)


# --- scores against the NumPy oracle ------------------------------------------------------


def test_snip_scores_match_the_numpy_oracle():
    model, (x, y) = mlp(), data()
    expected = sparse_oracle.snip(x.astype(np.float64), y, *weights(model))
    for got, want in zip(sparse.snip_scores(model, x, y), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7 * np.abs(want).max())


def test_snip_scores_sum_over_batches():
    model, (x, y) = mlp(), data(n=12)
    whole = sparse.snip_scores(model, x, y, batch_size=12)
    w = weights(model)
    g = [
        sum(parts)
        for parts in zip(
            sparse_oracle.gradient(x[:6].astype(np.float64), y[:6], *w),
            sparse_oracle.gradient(x[6:].astype(np.float64), y[6:], *w),
        )
    ]
    halves = sparse.snip_scores(model, x, y, batch_size=6)
    for got, grad, kernel in zip(halves, g, (w[0], w[2])):
        np.testing.assert_allclose(got, np.abs(grad * kernel), rtol=1e-4, atol=1e-8)
    assert not all(np.allclose(a, b) for a, b in zip(whole, halves))


@pytest.mark.parametrize("temperature", [1.0, 200.0])
def test_grasp_scores_match_the_numpy_oracle(temperature):
    model, (x, y) = mlp(), data()
    expected = sparse_oracle.grasp(x.astype(np.float64), y, *weights(model), temperature)
    for got, want in zip(sparse.grasp_scores(model, x, y, temperature=temperature), expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_synflow_scores_match_the_numpy_oracle():
    model = mlp()
    for got, want in zip(sparse.synflow_scores(model), sparse_oracle.synflow(*weights(model))):
        np.testing.assert_allclose(got, want, rtol=1e-5)


# --- pruning at initialization ------------------------------------------------------------


@pytest.mark.parametrize("method", sparse.INIT_METHODS)
def test_each_method_keeps_the_exact_count_and_masks_the_weights(method):
    model, (x, y) = mlp(d=20, h=30), data(d=20)
    sparse.prune_at_initialization(model, method, 0.9, x, y, rounds=5)
    kept = masks(model)
    assert sum(int(m.sum()) for m in kept) == round(0.1 * (20 * 30 + 30 * 3))
    for wrapper in pruning.collect_prunable_layers(model):
        kernel = ops.convert_to_numpy(wrapper.layer.kernel)
        assert np.all(kernel[ops.convert_to_numpy(wrapper.masks[0]) == 0] == 0)


def test_synflow_with_one_round_is_the_global_top_of_its_scores():
    model = mlp(d=20, h=30)
    expected = sparse.masks_from_scores(sparse.synflow_scores(model), 0.8, "global")
    sparse.prune_at_initialization(model, "synflow", 0.8, rounds=1)
    for got, want in zip(masks(model), expected):
        np.testing.assert_array_equal(got, want)


def test_iterative_synflow_masks_only_lose_weights_and_avoid_layer_collapse():
    model = mlp(d=20, h=30)
    sparse.prune_at_initialization(model, "synflow", 0.99, rounds=20)
    kept = masks(model)
    assert sum(int(m.sum()) for m in kept) == round(0.01 * 690)
    assert all(m.sum() > 0 for m in kept)  # SynFlow's point: no layer is cut off


def test_keep_first_last_dense():
    keras.utils.set_random_seed(0)
    inp = keras.Input((20,))
    x = keras.layers.Dense(30, activation="relu")(inp)
    x = keras.layers.Dense(30, activation="relu")(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.5))
    x, y = data(d=20)
    densities = sparse.prune_at_initialization(model, "snip", 0.5, x, y, keep_first_last_dense=True)
    first, middle, last = densities.values()
    assert first == last == 1.0 and middle == (795 - 600 - 90) / 900  # round(0.5 * 1590) kept
    with pytest.raises(ValueError, match="dense"):
        sparse.prune_at_initialization(model, "snip", 0.9, x, y, keep_first_last_dense=True)


def test_rescale_divides_kept_weights_by_the_root_of_the_density():
    model = mlp(d=20, h=30)
    before = [ops.convert_to_numpy(w.layer.kernel) for w in pruning.collect_prunable_layers(model)]
    densities = sparse.prune_at_initialization(model, "random", 0.75, rescale=True, seed=3)
    for wrapper, old, density in zip(
        pruning.collect_prunable_layers(model), before, densities.values()
    ):
        mask = ops.convert_to_numpy(wrapper.masks[0]).astype(bool)
        new = ops.convert_to_numpy(wrapper.layer.kernel)
        np.testing.assert_allclose(new[mask], old[mask] / np.sqrt(density), rtol=1e-6)
        assert np.all(new[~mask] == 0)


def test_static_masks_never_change_in_training():
    model, (x, y) = mlp(d=20, h=30), data(n=64, d=20)
    sparse.prune_at_initialization(model, "grasp", 0.9, x, y)
    before = masks(model)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for a, b in zip(before, masks(model)):
        np.testing.assert_array_equal(a, b)
    for wrapper, mask in zip(pruning.collect_prunable_layers(model), before):
        assert np.all(ops.convert_to_numpy(wrapper.layer.kernel)[mask == 0] == 0)


def test_bad_arguments():
    model, (x, y) = mlp(), data()
    with pytest.raises(ValueError, match="method"):
        sparse.prune_at_initialization(model, "lottery", 0.5)
    with pytest.raises(ValueError, match="pass x and y"):
        sparse.prune_at_initialization(model, "snip", 0.5)
    with pytest.raises(ValueError, match="allocation"):
        sparse.prune_at_initialization(model, "snip", 0.5, x, y, allocation="layer")
    with pytest.raises(ValueError, match="sparsity"):
        sparse.prune_at_initialization(model, "snip", 1.0, x, y)
    with pytest.raises(ValueError, match="no pruned weights"):
        sparse.prune_at_initialization(keras.Sequential([keras.Input((3,))]), "random", 0.5)


# --- dynamic sparse training (SET, RigL) --------------------------------------------------


def test_drop_and_grow_drops_the_smallest_and_grows_the_highest_scores():
    weight = np.array([0.0, 0.5, -0.1, 0.0, 2.0, 0.0])
    mask = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    scores = np.array([0.3, 9.0, 0.2, 0.9, 9.0, 0.1])
    new = sparse.dynamic.drop_and_grow(weight, mask, 1, scores)
    np.testing.assert_array_equal(new, [0, 1, 0, 1, 1, 0])  # -0.1 dropped, index 3 grown
    regrown = sparse.dynamic.drop_and_grow(weight, mask, 1, np.array([0, 0, 5.0, 0, 0, 0]))
    np.testing.assert_array_equal(regrown, mask)  # a just-dropped entry may grow back


def test_rigl_dense_gradient_is_the_gradient_at_the_masked_weights():
    model, (x, y) = mlp(), data()
    sparse.prune_at_initialization(model, "random", 0.5, seed=2)
    w1, b1, w2, b2 = weights(model)  # stored kernels are masked
    expected = sparse_oracle.gradient(x.astype(np.float64), y, w1, b1, w2, b2)
    for got, want in zip(sparse.dense_gradients(model, x, y), expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
        assert np.count_nonzero(got) > np.count_nonzero(masks(model)[0]) // 2


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_set_and_rigl_keep_each_layers_count_and_grow_from_zero(method):
    model, (x, y) = mlp(d=20, h=30), data(n=64, d=20)
    sparse.prune_at_initialization(model, "random", 0.8, seed=0)
    counts = [m.sum() for m in masks(model)]
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = sparse.DynamicSparsity(method, update_frequency=2, end_step=15, x=x, y=y, seed=1)
    history = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            history.append(masks(self.model))

    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        callbacks=[pruning.UpdatePruningStep(), callback, Record()],
    )
    assert [step for step, _ in callback.updates] == [2, 4, 6, 8, 10, 12, 14]
    first, last = callback.updates[0][1], callback.updates[-1][1]
    assert all(c > 0 for c in first) and all(a >= b for a, b in zip(first, last))
    for snapshot in history:
        assert [m.sum() for m in snapshot] == counts
    changed = [np.sum(a != b) for a, b in zip(history[0], history[-1])]
    assert all(c > 0 for c in changed)
    for wrapper in pruning.collect_prunable_layers(model):
        kernel = ops.convert_to_numpy(wrapper.layer.kernel)
        assert np.all(kernel[ops.convert_to_numpy(wrapper.masks[0]) == 0] == 0)


def test_grown_weights_start_at_zero():
    model = mlp(d=20, h=30)
    sparse.prune_at_initialization(model, "random", 0.8, seed=0)
    before = masks(model)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = sparse.DynamicSparsity("set", update_frequency=1, end_step=100, seed=0)
    callback.set_model(model)
    callback.on_train_begin()
    callback.update(1)
    for wrapper, old in zip(pruning.collect_prunable_layers(model), before):
        new = ops.convert_to_numpy(wrapper.masks[0])
        grown = (new > 0) & (old == 0)
        assert grown.any()
        assert np.all(ops.convert_to_numpy(wrapper.layer.kernel)[grown] == 0)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "loss-scaled adam"])
def test_grown_weights_start_with_zero_optimizer_state(optimizer):
    model = mlp(d=20, h=30)
    sparse.prune_at_initialization(model, "random", 0.8, seed=0)
    before = masks(model)
    moments = 1 if optimizer == "sgd" else 2
    if optimizer == "sgd":
        optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    elif optimizer == "loss-scaled adam":  # what Keras wraps the optimizer in for float16
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam())
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    wrappers = pruning.collect_prunable_layers(model)
    slots = [_compat.optimizer_slots(model.optimizer, w.layer.kernel) for w in wrappers]
    assert [len(s) for s in slots] == [moments, moments]
    for slot in (v for group in slots for v in group):
        slot.assign(ops.ones(slot.shape))
    callback = sparse.DynamicSparsity("set", update_frequency=1, end_step=100, seed=0)
    callback.set_model(model)
    callback.on_train_begin()
    callback.update(1)
    for wrapper, old, group in zip(wrappers, before, slots):
        grown = (ops.convert_to_numpy(wrapper.masks[0]) > 0) & (old == 0)
        assert grown.any()
        for slot in group:
            value = ops.convert_to_numpy(slot)
            assert np.all(value[grown] == 0) and np.all(value[~grown] == 1)


def test_rigl_resets_the_moments_inside_fit():
    model, (x, y) = mlp(d=20, h=30), data(n=64, d=20)
    sparse.prune_at_initialization(model, "random", 0.8, seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = sparse.DynamicSparsity("rigl", update_frequency=3, end_step=15, x=x, y=y, seed=1)
    seen, later = [], []

    class Check(keras.callbacks.Callback):
        grown = {}

        def on_train_batch_begin(self, batch, logs=None):
            self.before = masks(self.model)

        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:  # stale state everywhere (TF builds the optimizer in step 1)
                for variable in self.model.optimizer.variables:
                    if len(variable.shape) == 2:
                        variable.assign(ops.ones(variable.shape))
            wrappers = pruning.collect_prunable_layers(self.model)
            for i, (wrapper, old) in enumerate(zip(wrappers, self.before)):
                grown = (ops.convert_to_numpy(wrapper.masks[0]) > 0) & (old == 0)
                slots = _compat.optimizer_slots(self.model.optimizer, wrapper.layer.kernel)
                values = [np.abs(ops.convert_to_numpy(slot)) for slot in slots]
                if batch == 3 and i in self.grown:  # one train step after the reset
                    later.append(float(values[0][self.grown[i]].max()))
                seen.extend((int(grown.sum()), float(v[grown].sum())) for v in values)
                if grown.any():
                    self.grown[i] = grown

    model.fit(
        x, y, batch_size=8, epochs=1, verbose=0,
        callbacks=[pruning.UpdatePruningStep(), callback, Check()],
    )  # fmt: skip
    assert any(count > 0 for count, _ in seen)
    assert all(total == 0 for _, total in seen)
    # The next step starts from the reset state: Adam's m is (1 - 0.9) g, not 0.9 x stale 1.
    assert later and max(later) < 0.5


def test_cosine_decay_of_the_update_fraction():
    callback = sparse.DynamicSparsity("set", drop_fraction=0.4, end_step=100)
    callback._end = 100
    assert callback.fraction(0) == pytest.approx(0.4)
    assert callback.fraction(50) == pytest.approx(0.2)
    assert callback.fraction(100) == pytest.approx(0.0)


def test_dynamic_sparsity_arguments():
    with pytest.raises(ValueError, match="pass x and y"):
        sparse.DynamicSparsity("rigl")
    with pytest.raises(ValueError, match="method"):
        sparse.DynamicSparsity("deepr")
    with pytest.raises(ValueError, match="drop_fraction"):
        sparse.DynamicSparsity("set", drop_fraction=0.0)


# --- lottery tickets ----------------------------------------------------------------------


def _lth_train(epochs=1, log=None):
    def train(model, round_index, callbacks):
        model.compile(
            keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        x, y = data(n=64, d=20)
        keras.utils.set_random_seed(round_index)  # a resumed round shuffles alike
        if log is not None:
            log.append((round_index, sparse.lottery.model_weights(model)))
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=epochs,
            verbose=0,
            callbacks=[pruning.UpdatePruningStep(), *callbacks],
        )

    return train


@pytest.mark.parametrize("rewind_step", [0, 3])
def test_lottery_ticket_rewinds_exactly_to_the_saved_weights(rewind_step):
    model = mlp(d=20, h=30)
    log = []
    saved = []

    class Spy(sparse.lottery.RewindPoint):
        def on_train_end(self, logs=None):
            super().on_train_end(logs)
            saved.extend(self.weights)

    original = sparse.lottery.RewindPoint
    sparse.lottery.RewindPoint = Spy
    try:
        summaries = sparse.lottery_ticket(
            model, _lth_train(log=log), 0.9, rounds=2, rewind_step=rewind_step
        )
    finally:
        sparse.lottery.RewindPoint = original
    assert [round(s["sparsity"], 4) for s in summaries] == [
        0.0,
        round(1 - round(np.sqrt(0.1) * 690) / 690, 4),
        round(1 - 69 / 690, 4),
    ]
    for _, start in log[1:]:  # every weight is the saved one, or pruned to 0
        for value, rewound in zip(start, saved, strict=True):
            assert np.all((value == rewound) | (value == 0)) and np.any(value == rewound)
    if rewind_step == 0:
        for value, rewound in zip(log[0][1], saved, strict=True):
            np.testing.assert_array_equal(value, rewound)


def test_lottery_ticket_resumes_after_the_last_finished_round(tmp_path):
    uninterrupted = mlp(d=20, h=30)
    sparse.lottery_ticket(uninterrupted, _lth_train(), 0.9, rounds=2, checkpoint_dir=None)

    class Stop(Exception):
        pass

    def failing(model, round_index, callbacks):
        if round_index == 2:
            raise Stop
        _lth_train()(model, round_index, callbacks)

    interrupted = mlp(d=20, h=30)
    with pytest.raises(Stop):
        sparse.lottery_ticket(interrupted, failing, 0.9, rounds=2, checkpoint_dir=str(tmp_path))
    rounds_run = []

    def counting(model, round_index, callbacks):
        rounds_run.append(round_index)
        _lth_train()(model, round_index, callbacks)

    resumed = mlp(d=20, h=30)
    summaries = sparse.lottery_ticket(
        resumed, counting, 0.9, rounds=2, checkpoint_dir=str(tmp_path)
    )
    assert rounds_run == [2] and [s["round"] for s in summaries] == [0, 1, 2]
    for a, b in zip(masks(uninterrupted), masks(resumed)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        sparse.lottery.model_weights(uninterrupted),
        sparse.lottery.model_weights(resumed),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["snip", "synflow"])
def test_norm_rescale_restores_each_layers_dense_norm(method):
    model, (x, y) = mlp(d=20, h=30), data(d=20)
    before = [ops.convert_to_numpy(w.layer.kernel) for w in pruning.collect_prunable_layers(model)]
    sparse.prune_at_initialization(model, method, 0.9, x, y, rounds=4, rescale=True)
    for wrapper, old in zip(pruning.collect_prunable_layers(model), before):
        new = ops.convert_to_numpy(wrapper.layer.kernel)
        assert np.linalg.norm(new) == pytest.approx(np.linalg.norm(old), rel=1e-5)
