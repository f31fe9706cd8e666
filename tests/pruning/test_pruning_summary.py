"""`pruning.sparsity_summary` on wrapped, stripped and plain models, against NumPy counts."""

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning


def model(wrapped=False, **wrap):
    inputs = keras.Input((6, 6, 4))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(16, name="dense")(x)
    plain = keras.Model(inputs, outputs)
    if not wrapped:
        return plain
    return pruning.prune_low_magnitude(plain, pruning.ConstantSparsity(0.5, 0, frequency=1), **wrap)


def pruned(wrapped=None, **wrap):
    wrapped = wrapped or model(True, **wrap)
    callback = pruning.UpdatePruningStep()
    callback.set_model(wrapped)
    callback.on_train_begin()
    shape = (2, *wrapped.inputs[0].shape[1:])
    wrapped(np.random.default_rng(0).normal(size=shape).astype("float32"), training=True)
    return wrapped


def numpy_counts(values):
    return values.size, int(np.count_nonzero(values))


def test_wrapped_weights_are_read_through_their_masks():
    wrapped = pruned()
    summary = pruning.sparsity_summary(wrapped)
    assert [(r.layer, r.weight, r.pattern, r.masked) for r in summary.rows] == [
        ("conv", "kernel", "unstructured", True),
        ("dense", "kernel", "unstructured", True),
    ]
    for row, layer in zip(summary.rows, pruning.collect_prunable_layers(wrapped)):
        values = keras.ops.convert_to_numpy(layer.pruned_weights[0]) * keras.ops.convert_to_numpy(
            layer.masks[0]
        )
        assert (row.params, row.nonzeros) == numpy_counts(values)
        assert row.shape == values.shape and row.sparsity == pytest.approx(0.5, abs=0.01)
    assert summary.params == sum(r.params for r in summary.rows)
    assert summary.sparsity == pytest.approx(1 - summary.nonzeros / summary.params)


def test_stripped_and_plain_models_are_read_from_their_values():
    stripped = pruning.strip_pruning(pruned())
    summary = pruning.sparsity_summary(stripped)
    assert [r.masked for r in summary.rows] == [False, False]
    assert summary.sparsity == pytest.approx(0.5, abs=0.01)
    dense = pruning.sparsity_summary(model())
    assert [r.pattern for r in dense.rows] == ["dense", "dense"] and dense.sparsity == 0.0


def test_patterns_of_blocks_and_m_by_n():
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="dense")])
    schedule = pruning.ConstantSparsity(0.5, 0, frequency=1)
    blocks = pruning.prune_low_magnitude(dense, schedule, block_size=(2, 2))
    block = pruning.sparsity_summary(pruned(blocks))
    assert [r.pattern for r in block.rows] == ["block 2x2"]
    m_by_n = pruned(sparsity_m_by_n=(2, 4))
    assert [r.pattern for r in pruning.sparsity_summary(m_by_n).rows] == ["2:4", "2:4"]
    stripped = pruning.sparsity_summary(pruning.strip_pruning(m_by_n))
    # A plain model cannot show it was pruned m:n; its values can show they allow 2:4.
    assert [r.pattern for r in stripped.rows] == ["unstructured (2:4-compatible)"] * 2


def test_unstructured_pruning_is_not_labelled_m_by_n_when_its_values_happen_to_fit():
    layer = keras.layers.Dense(2)
    wrapper = pruning.prune_low_magnitude(layer, pruning.ConstantSparsity(0.5, 0))
    model = keras.Sequential([keras.Input((4,)), wrapper])
    layer.kernel.assign(np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 4.0]], "float32"))
    wrapper.masks[0].assign(np.array([[1, 0], [0, 1], [1, 0], [0, 1]], "float32"))
    [row] = pruning.sparsity_summary(model).rows
    assert row.pattern == "unstructured (2:4-compatible)" and row.sparsity == 0.5


def test_prints_as_a_table_and_serializes():
    summary = pruning.sparsity_summary(pruned())
    table = str(summary)
    assert table.splitlines()[0].split() == [
        "layer", "weight", "shape", "params", "nonzeros", "sparsity", "pattern"
    ]  # fmt: skip
    assert "3x3x4x8" in table and table.splitlines()[-1].startswith("total")
    as_dict = summary.to_dict()
    assert as_dict["params"] == summary.params and as_dict["rows"][0]["shape"] == [3, 3, 4, 8]


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="keras.Model"):
        pruning.sparsity_summary(keras.layers.Dense(2))
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not built"):
        pruning.sparsity_summary(unbuilt)
