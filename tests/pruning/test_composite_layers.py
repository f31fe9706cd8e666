"""Pruning inside composite layers (a block of Dense layers written as one layer): the
wrapper masks the sublayers' kernels in place; bad compositions are named."""

import os

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning
from keras_cka_sr.pruning import registry
from tests.support.pruned import pruning_steps, stored_sparsities

L = keras.layers


@keras.saving.register_keras_serializable(package="keras_cka_sr_tests")
class FeedForward(L.Layer):
    """A residual feed-forward block: two Dense layers and a LayerNorm, one node."""

    def __init__(self, width=8, hidden=16, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden = width, hidden
        self.up = L.Dense(hidden, activation="relu", name="up")
        self.down = L.Dense(width, name="down")
        self.norm = L.LayerNormalization(name="norm")

    def build(self, input_shape):
        self.up.build(input_shape)
        self.down.build((*input_shape[:-1], self.hidden))
        self.norm.build(input_shape)

    def call(self, x):
        return self.norm(x + self.down(self.up(x)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden}


class Scaled(L.Layer):
    """Holds a variable of its own besides a Dense: no rule can cover the scale."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(8, name="dense")

    def build(self, input_shape):
        self.dense.build(input_shape)
        self.scale = self.add_weight(shape=(8,), initializer="ones", name="scale")

    def call(self, x):
        return self.dense(x) * self.scale


class Twice(L.Layer):
    """Calls one Dense twice (a shared sublayer)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(8, name="shared")

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x):
        return self.dense(self.dense(x))


def _model():
    inp = keras.Input((8,))
    h = FeedForward(name="block0")(inp)
    h = FeedForward(name="block1")(h)
    return keras.Model(inp, L.Dense(3, name="head")(h), name="net")


def _schedule(target=0.75):
    return pruning.PolynomialDecay(0.0, target, begin_step=0, end_step=4, frequency=1)


def _train(model, epochs=2):
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, np.zeros((32, 3)), batch_size=8, epochs=epochs, verbose=0,
              callbacks=[pruning.UpdatePruningStep()])  # fmt: skip
    return x


def test_a_composite_layer_is_wrapped_whole_and_its_sublayer_kernels_are_masked():
    pruned = pruning.prune_low_magnitude(_model(), _schedule())
    wrappers = pruning.collect_prunable_layers(pruned)
    assert [w.layer.name for w in wrappers] == ["block0", "block1", "head"]
    assert [m.name for m in wrappers[0].masks] == ["up_kernel_mask", "down_kernel_mask"]
    _train(pruned)
    for wrapper in wrappers:  # the oracle: zeros of weight * mask, counted in NumPy
        for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
            values = keras.ops.convert_to_numpy(weight) * keras.ops.convert_to_numpy(mask)
            assert 1 - np.count_nonzero(values) / values.size == pytest.approx(0.75, abs=1e-3)


def test_stripped_and_reloaded_composite_models_predict_as_the_pruned_one(tmp_path):
    pruned = pruning.prune_low_magnitude(_model(), _schedule())
    x = _train(pruned)
    expected = pruned.predict(x, verbose=0)
    stripped = pruning.strip_pruning(pruned)
    assert type(stripped.get_layer("block0")) is FeedForward
    np.testing.assert_allclose(stripped.predict(x, verbose=0), expected, atol=1e-6)
    for name, model in (("pruned", pruned), ("stripped", stripped)):
        path = os.path.join(tmp_path, f"{name}.keras")
        model.save(path)
        back = keras.models.load_model(path)
        np.testing.assert_allclose(back.predict(x, verbose=0), expected, atol=1e-6)


def test_summary_rows_are_full_layer_paths_each_weight_once():
    inp = keras.Input((8,))
    inner = _model()
    model = keras.Model(inp, inner(inp))
    rows = pruning.sparsity_summary(model).rows
    assert [r.layer for r in rows] == [
        "net/block0/up",
        "net/block0/down",
        "net/block1/up",
        "net/block1/down",
        "net/head",
    ]
    assert pruning.sparsity_summary(model).params == 2 * (8 * 16 + 16 * 8) + 8 * 3


def test_a_sublayer_called_twice_is_pruned_and_counted_once():
    inp = keras.Input((8,))
    model = keras.Model(inp, Twice(name="twice")(inp))
    pruned = pruning.prune_low_magnitude(model, _schedule(0.5))
    (wrapper,) = pruning.collect_prunable_layers(pruned)
    assert len(wrapper.masks) == 1
    pruned.compile("sgd", "mse")
    x = np.ones((4, 8), "float32")
    pruned.fit(x, np.zeros((4, 8)), epochs=5, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    summary = pruning.sparsity_summary(pruned)
    assert summary.params == 64 and summary.sparsity == pytest.approx(0.5)


def test_a_composite_with_variables_of_its_own_is_named_with_them():
    inp = keras.Input((8,))
    model = keras.Model(inp, Scaled(name="scaled")(inp))
    with pytest.raises(
        ValueError, match=r"'scaled' \(Scaled\) holds variables of its own \(.*scale"
    ):
        pruning.prune_low_magnitude(model)


def test_a_composite_holding_a_layer_without_rule_names_that_layer():
    class Outer(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = Scaled(name="inner")

        def build(self, input_shape):
            self.inner.build(input_shape)

        def call(self, x):
            return self.inner(x)

    inp = keras.Input((8,))
    model = keras.Model(inp, Outer(name="outer")(inp))
    with pytest.raises(ValueError, match=r"'outer' \(Outer\) holds layer .*inner.* \(Scaled\)"):
        pruning.prune_low_magnitude(model)


def test_a_kernel_reachable_through_two_wrappers_is_refused():
    class Holder(L.Layer):
        def __init__(self, dense, **kwargs):
            super().__init__(**kwargs)
            self.dense = dense

        def call(self, x):
            return self.dense(x)

    shared = L.Dense(8, name="shared")
    inp = keras.Input((8,))
    model = keras.Model(inp, Holder(shared, name="holder")(shared(inp)))
    with pytest.raises(ValueError, match=r"'shared' is both in the graph .* inside layer 'holder'"):
        pruning.prune_low_magnitude(model)
    assert model.predict(np.ones((1, 8)), verbose=0).shape == (1, 8)  # still usable


def test_a_model_with_nothing_to_prune_says_which_layers_hold_weights():
    inp = keras.Input((8,))
    model = keras.Model(inp, L.LayerNormalization(name="norm")(inp))
    with pytest.raises(ValueError, match=r"nothing to prune.*'norm'"):
        pruning.prune_low_magnitude(model)


def test_composite_rule_needs_a_built_layer_and_keeps_exact_class_rules():
    assert registry.has_prunable_rule(FeedForward()) is False  # unbuilt: nothing to read
    block = FeedForward()
    block.build((None, 8))
    assert [w.path.split("/")[-2] for w in registry.prunable_weights(block)] == ["up", "down"]
    assert registry.has_prunable_rule(L.LayerNormalization()) is False


def test_copy_weights_refuses_unmatched_layers_before_writing():
    source, target = _model(), _model()
    inp = keras.Input((8,))
    other = keras.Model(inp, L.Dense(3, name="elsewhere")(inp))
    before = [keras.ops.convert_to_numpy(w) for w in target.weights]
    with pytest.raises(ValueError, match=r"only in target"):
        pruning.copy_weights(other, target)
    for old, new in zip(before, target.weights):
        np.testing.assert_array_equal(old, keras.ops.convert_to_numpy(new))
    pruning.copy_weights(source, target)
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_copy_weights_writes_masked_kernels_from_a_pruned_model():
    pruned = pruning.prune_low_magnitude(_model(), _schedule())
    x = _train(pruned, epochs=1)
    plain = pruning.copy_weights(pruned, _model())
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    assert pruning.sparsity_summary(plain).sparsity == pytest.approx(
        pruning.sparsity_summary(pruned).sparsity
    )


def test_global_ranking_ranks_the_sublayer_kernels_with_the_rest():
    pruned = pruning.prune_low_magnitude(_model(), _schedule(0.8), global_ranking=True)
    _train(pruned)
    summary = pruning.sparsity_summary(pruned)
    kept = sum(row.nonzeros for row in summary.rows)
    assert abs(kept - 0.2 * summary.params) <= 1  # one threshold over all five kernels
    assert len({round(row.sparsity, 3) for row in summary.rows}) > 1  # layers end unevenly


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_composite_sublayers_are_pruned_under_mixed_precision(policy):
    keras.mixed_precision.set_global_policy(policy)
    pruned = pruning.prune_low_magnitude(_model(), _schedule())
    compute_dtype = keras.mixed_precision.global_policy().compute_dtype
    assert pruned.get_layer("prune_low_magnitude_block0").output.dtype == compute_dtype
    _train(pruned)
    assert stored_sparsities(pruning.strip_pruning(pruned)) == [0.75] * 5


@pytest.mark.parametrize(
    "jit",
    [False, pytest.param(True, marks=pytest.mark.skipif(
        keras.backend.backend() == "torch", reason="pruning refuses torch.compile"))],
)  # fmt: skip
def test_ragged_last_batches_and_steps_per_execution_step_the_composite_once_per_batch(jit):
    pruned = pruning.prune_low_magnitude(_model(), _schedule())
    spe = 1 if keras.backend.backend() == "torch" else 2  # Keras allows only 1 on torch
    pruned.compile("adam", "mse", steps_per_execution=spe, jit_compile=jit)
    x = np.random.default_rng(0).normal(size=(30, 8)).astype("float32")  # batches 8, 8, 8, 6
    pruned.fit(x, np.zeros((30, 3)), batch_size=8, epochs=2, verbose=0,
               callbacks=[pruning.UpdatePruningStep()])  # fmt: skip
    assert pruning_steps(pruned) == {8}
    assert stored_sparsities(pruning.strip_pruning(pruned)) == [0.75] * 5
