"""keras_hub task models as users have them (tiny configs, random init: nothing downloaded):
pruning inside transformer layers, CKA-SR on the block outputs, strip back to the task class,
`.keras` round trip."""

import os

import keras
import numpy as np
import pytest

import keras_cka_sr
from keras_cka_sr import pruning
from tests.support.scripts import load_script

keras_hub = pytest.importorskip("keras_hub")

HUB = load_script("benchmarks", "keras_hub_pruning")  # the tiny task models it measures
VOCAB, SEQ, HIDDEN = HUB.VOCAB, HUB.SEQ, HUB.HIDDEN


def _gpt2():
    return HUB.build("gpt2")


def _bert():
    return HUB.build("bert")


def _data(kind, n=16):
    return HUB.data(kind, n)


_LAYER = {"query", "key", "value", "attention_output"}
_LAYER |= {"feedforward_intermediate_dense", "feedforward_output_dense"}
# Per model: its builder, its prunable kernels (6 per transformer layer, the tied token
# embedding once; BERT adds the segment embedding, the pooler and the classifier; position
# embeddings are not pruned) and the layers holding them.
MODELS = {
    "gpt2": (_gpt2, 2 * 6 + 1, _LAYER | {"token_embedding"}),
    "bert": (
        _bert,
        2 * 6 + 4,
        _LAYER | {"token_embedding", "segment_embedding", "pooled_dense", "logits"},
    ),
}


def _prune_and_train(kind):
    make = MODELS[kind][0]
    x, y = _data(kind)
    schedule = pruning.PolynomialDecay(0.0, 0.6, begin_step=0, end_step=3, frequency=1)
    pruned = pruning.prune_low_magnitude(make(), schedule)
    loss = keras_cka_sr.CKASimilarityLoss(weight=1e-2, every_n_steps=1)
    trained = keras_cka_sr.attach_cka_loss(pruned, keras_cka_sr.block_taps(pruned), loss)
    trained.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trained.fit(
        x, y, batch_size=4, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()]
    )
    assert np.isfinite(history.history["cka_sr"][-1]) and history.history["cka_sr"][-1] != 0
    return pruned, x


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_kernel_inside_the_transformer_layers_reaches_the_target(kind):
    pruned, _ = _prune_and_train(kind)
    summary = pruning.sparsity_summary(pruned)
    assert len(summary.rows) == MODELS[kind][1]
    assert len({row.layer for row in summary.rows}) == len(summary.rows)  # full paths
    for kernel in pruning.registry.prunable_kernels(pruned):  # the oracle: NumPy nonzeros
        mask = keras.ops.convert_to_numpy(kernel.mask)
        values = keras.ops.convert_to_numpy(kernel.variable) * mask
        assert abs(np.count_nonzero(values) - 0.4 * values.size) <= 1  # k = round(N (1 - s))
    assert {row.layer.split("/")[-1] for row in summary.rows} == MODELS[kind][2]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_strip_gives_back_the_task_class_and_it_round_trips(kind, tmp_path):
    pruned, x = _prune_and_train(kind)
    expected = pruned.predict(x, verbose=0)
    stripped = pruning.strip_pruning(pruned)
    assert type(stripped) is type(MODELS[kind][0]())
    np.testing.assert_allclose(stripped.predict(x, verbose=0), expected, atol=1e-5)
    path = os.path.join(tmp_path, "stripped.keras")
    stripped.save(path)
    back = keras.models.load_model(path)
    assert type(back) is type(stripped)
    np.testing.assert_allclose(back.predict(x, verbose=0), expected, atol=1e-5)
    assert pruning.sparsity_summary(back).sparsity == pytest.approx(
        pruning.sparsity_summary(pruned).sparsity
    )


def test_the_tied_gpt2_embedding_is_pruned_once_and_used_twice():
    pruned, x = _prune_and_train("gpt2")
    embeddings = [
        w for w in pruning.collect_prunable_layers(pruned) if w.layer.name == "token_embedding"
    ]
    assert len(embeddings) == 1 and len(embeddings[0].masks) == 1
    rows = [r for r in pruning.sparsity_summary(pruned).rows if r.weight == "embeddings"]
    assert len(rows) == 1 and rows[0].shape == (VOCAB, HIDDEN)


def test_a_pruned_task_model_checkpoints_through_save_weights(tmp_path):
    """Keras 3.15 cannot reload a plain Functional model whose layer is shared by a nested
    model and the outer graph (the pruned GPT2: its token embedding); weights reload into
    the same pruned model built again (the documented checkpoint recipe)."""
    pruned, x = _prune_and_train("gpt2")
    path = os.path.join(tmp_path, "pruned.weights.h5")
    pruned.save_weights(path)
    again = pruning.prune_low_magnitude(_gpt2(), pruning.ConstantSparsity(0.6, 0))
    again.load_weights(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_a_prunable_layer_subclass_of_a_built_keras_hub_layer_is_copied_once():
    decoder_class = keras_hub.layers.TransformerDecoder

    class PrunableDecoder(decoder_class, pruning.PrunableLayer):
        def get_prunable_weights(self):
            return [self._feedforward_intermediate_dense.kernel]

    inp = keras.Input((SEQ, HIDDEN))
    model = keras.Model(inp, PrunableDecoder(64, 2, name="decoder")(inp))
    pruned = pruning.prune_low_magnitude(model, pruning.ConstantSparsity(0.5, 0))
    (wrapper,) = pruning.collect_prunable_layers(pruned)
    assert len(wrapper.pruned_weights) == 1
    assert len(pruning.sparsity_summary(pruned).rows) == 1


def test_monitors_take_the_models_dict_input_as_probe():
    x, y = _data("gpt2", n=8)
    model = _gpt2()
    taps = keras_cka_sr.block_taps(model)
    monitor = keras_cka_sr.CKAMonitor(x, taps)
    gradient = keras_cka_sr.CKAGradientMonitor(
        x, y, taps, keras_cka_sr.CKASimilarityLoss(weight=1e-3), warn_above=1e9
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[monitor, gradient])
    assert monitor.matrices[-1].shape == (2, 2)
    assert np.isfinite(history.history["cka_mean"][-1])
    assert np.isfinite(history.history["cka_grad_ratio"][-1])


def test_block_taps_finds_the_transformer_layers_inside_the_backbone():
    assert keras_cka_sr.block_taps(_gpt2()) == [["transformer_layer_0", "transformer_layer_1"]]
    assert keras_cka_sr.block_taps(_bert()) == [["transformer_layer_0", "transformer_layer_1"]]
