"""One walk over a model's prunable weights (`registry.prunable_kernels`): every weight once,
against NumPy counts, on every layer kind the rules cover, plain, wrapped and stripped; bare
ops in functional graphs; a model with CKA-SR attached is refused with the order that works."""

import json

import keras
import numpy as np
import pytest

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning
from keras_cka_sr.pruning import registry
from keras_cka_sr.sparse import kernel_stats
from tests.pruning.test_pruning_contract import CASES, make_input

L = keras.layers


def _bidirectional():
    inp = keras.Input((5, 3))
    x = L.Bidirectional(L.LSTM(4), name="bi")(inp)
    return keras.Model(inp, L.Dense(2, name="out")(x))


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


@pytest.mark.parametrize("form", ["plain", "wrapped", "stripped"])
def test_bidirectional_lstm_weights_are_counted_once(form):
    model = _bidirectional()
    if form != "plain":
        model = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
        model.compile("sgd", "mse")
        x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
        model.fit(x, np.zeros((8, 2)), epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
        if form == "stripped":
            model = pruning.strip_pruning(model)
    # The oracle: 2 directions x (3x16 kernel + 4x16 recurrent kernel), and the 8x2 head.
    params = 2 * (3 * 16 + 4 * 16) + 8 * 2
    summary = pruning.sparsity_summary(model)
    assert summary.params == params == 240 and len(summary.rows) == 5
    assert kernel_stats(model)["num_weights"] == params
    effective = [
        _numpy(k.variable) * (1 if k.mask is None else _numpy(k.mask))
        for k in registry.prunable_kernels(model)
    ]
    assert summary.nonzeros == sum(int(np.count_nonzero(v)) for v in effective)
    if form != "plain":
        assert summary.nonzeros == params // 2


@pytest.mark.parametrize("kind", sorted(CASES))
def test_every_layer_kind_counts_each_weight_once(kind):
    make, shape = CASES[kind]
    layer = make()
    inp = keras.Input(shape[1:] if shape else (3,), dtype="float32" if shape else "int32")
    out = layer(inp, inp) if isinstance(layer, L.MultiHeadAttention) else layer(inp)
    model = keras.Model(inp, out)
    expected = {id(w) for w in registry.prunable_weights(layer)}
    kernels = registry.prunable_kernels(model)
    assert [id(k.variable) for k in kernels] == [id(w) for w in registry.prunable_weights(layer)]
    assert len(expected) == len(kernels)
    summary = pruning.sparsity_summary(model)
    assert summary.params == sum(int(np.prod(w.shape)) for w in registry.prunable_weights(layer))
    make_input(shape, np.random.default_rng(0))  # the contract's inputs stay valid


def test_a_layer_shared_by_two_models_is_counted_once():
    dense = L.Dense(4, name="shared")
    a = keras.Input((3,))
    inner = keras.Model(a, dense(a), name="inner")
    b = keras.Input((3,))
    outer = keras.Model(b, L.Add()([inner(b), dense(b)]))
    assert [k.variable.path for k in registry.prunable_kernels(outer)] == ["shared/kernel"]


def test_nothing_prunable_gives_null_sparsity_in_strict_json():
    inp = keras.Input((3,))
    model = keras.Model(inp, L.ReLU()(inp))
    summary = pruning.sparsity_summary(model)
    assert json.loads(json.dumps(summary.to_dict(), allow_nan=False))["sparsity"] is None


def _residual_with_a_bare_op():
    inp = keras.Input((8,))
    h = L.Dense(16, name="d1")(inp)
    h2 = L.Dense(16, name="d2")(h)
    return keras.Model(inp, L.Dense(3, name="out")(h + h2))  # `h + h2`: an op, not a layer


def test_a_functional_model_with_bare_ops_prunes_and_strips():
    model = _residual_with_a_bare_op()
    pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    pruned.fit(x, np.zeros((16, 3)), epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert len(pruning.collect_prunable_layers(pruned)) == 3
    stripped = pruning.strip_pruning(pruned)
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6
    )
    assert pruning.sparsity_summary(stripped).sparsity == pytest.approx(0.5, abs=0.01)


def test_pruning_a_model_with_cka_sr_attached_names_the_order_that_works():
    model = _residual_with_a_bare_op()
    attached = attach_cka_loss(model, [["d1", "d2"]], CKASimilarityLoss(1e-3))
    with pytest.raises(ValueError, match=r"Prune first, then attach: `attach_cka_loss\(prune_low"):
        pruning.prune_low_magnitude(attached, pruning.ConstantSparsity(0.5, 0))
    x = np.zeros((4, 8), "float32")
    assert attached.predict(x, verbose=0).shape == (4, 3)  # still usable
    pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
    assert attach_cka_loss(
        pruned, [["prune_low_magnitude_d1", "prune_low_magnitude_d2"]], CKASimilarityLoss(1e-3)
    )
