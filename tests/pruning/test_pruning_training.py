import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning

BACKEND = keras.backend.backend()


def quadrant_data(n=512, seed=0):
    """8x8 noise images with a bright 3x3 patch in one of 4 quadrants; label = quadrant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.5, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, size=n)
    for i, label in enumerate(y):
        r, c = 4 * (label // 2) + rng.integers(0, 2), 4 * (label % 2) + rng.integers(0, 2)
        x[i, r : r + 3, c : c + 3, 0] += 2.0
    return x, y.astype("int32")


def small_cnn():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inp, keras.layers.Dense(4, name="head")(x), name="cnn")


def compile_(model, lr=1e-2):
    model.compile(
        keras.optimizers.Adam(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def kernel_sparsity(layer):
    return float(np.mean(ops.convert_to_numpy(layer.kernel) == 0))


def test_fit_reaches_scheduled_sparsity_learns_and_strips(tmp_path):
    x, y = quadrant_data()
    pruned = pruning.prune_low_magnitude(
        small_cnn(), pruning.PolynomialDecay(0.0, 0.9, 0, 48, frequency=8)
    )
    assert [type(layer).__name__ for layer in pruned.layers[1:]] == [
        "PruneLowMagnitude",
        "BatchNormalization",
        "PruneLowMagnitude",
        "Flatten",
        "PruneLowMagnitude",
    ]
    compile_(pruned)
    pruned.fit(x, y, batch_size=32, epochs=6, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    _, accuracy = pruned.evaluate(x, y, verbose=0)
    assert accuracy > 0.5  # chance is 0.25
    stripped = pruning.strip_pruning(pruned)
    assert not pruning.collect_prunable_layers(stripped)
    for name in ["c1", "c2", "head"]:
        layer = stripped.get_layer(name)
        size = int(np.prod(layer.kernel.shape))
        assert abs(kernel_sparsity(layer) - 0.9) <= 1.0 / size + 1e-9, name
    np.testing.assert_allclose(
        stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5
    )


@pytest.mark.skipif(BACKEND == "torch", reason="tf_saved_model export needs the TF or JAX backend")
def test_stripped_model_exports_as_saved_model(tmp_path):
    import tensorflow as tf

    x, y = quadrant_data(n=64)
    pruned = compile_(
        pruning.prune_low_magnitude(small_cnn(), pruning.ConstantSparsity(0.75, 0, frequency=1))
    )
    pruned.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    stripped = pruning.strip_pruning(pruned)
    path = str(tmp_path / "saved_model")
    stripped.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    np.testing.assert_allclose(
        reloaded.serve(tf.constant(x)).numpy(), stripped.predict(x, verbose=0), atol=1e-4
    )


@pytest.mark.filterwarnings("ignore:Pruning did not reach its target")
def test_resume_from_keras_file_matches_uninterrupted_training(tmp_path):
    x, y = quadrant_data(n=128)
    schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 12, frequency=2)
    keras.utils.set_random_seed(1)
    model = compile_(pruning.prune_low_magnitude(small_cnn(), schedule))
    fit = dict(batch_size=32, epochs=2, shuffle=False, verbose=0)
    model.fit(x, y, callbacks=[pruning.UpdatePruningStep()], **fit)
    path = str(tmp_path / "mid.keras")
    model.save(path)
    model.fit(x, y, callbacks=[pruning.UpdatePruningStep()], **fit)
    resumed = keras.models.load_model(path)
    wrapper = resumed.get_layer("prune_low_magnitude_c2")
    assert int(ops.convert_to_numpy(wrapper.pruning_step)) == 8
    resumed.fit(x, y, callbacks=[pruning.UpdatePruningStep()], **fit)
    for a, b in zip(model.weights, resumed.weights):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-5, err_msg=a.path
        )


def test_m_by_n_sparsity_in_training_and_config():
    x, y = quadrant_data(n=64)
    pruned = compile_(pruning.prune_low_magnitude(small_cnn(), sparsity_m_by_n=(2, 4)))
    pruned.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    wrapper = pruned.get_layer("prune_low_magnitude_c2")
    mask = ops.convert_to_numpy(wrapper.masks[0])  # (3, 3, 8, 8): groups of 4 input channels
    groups = mask.transpose(3, 0, 1, 2).reshape(-1, 4)
    assert np.all(groups.sum(axis=1) == 2)
    restored = pruning.PruneLowMagnitude.from_config(wrapper.get_config())
    assert restored.sparsity_m_by_n == (2, 4)


def test_prunable_layers_and_weights():
    inp = keras.Input((6,), dtype="int32")
    e = keras.layers.Embedding(20, 8, name="emb")(inp)
    a = keras.layers.MultiHeadAttention(2, 4, name="mha")(e, e)
    c = keras.layers.Conv1D(4, 3, name="conv1d")(a)
    d = keras.layers.DepthwiseConv1D(3, name="dw")(c)
    s = keras.layers.SeparableConv1D(4, 1, name="sep")(d)
    t = keras.layers.Conv1DTranspose(4, 3, name="tconv")(s)
    n = keras.layers.LayerNormalization(name="ln")(t)
    out = keras.layers.EinsumDense("abc,cd->abd", (None, 2), name="einsum")(n)
    pruned = pruning.prune_low_magnitude(keras.Model(inp, out))
    wrapped = {
        w.layer.name: [v.path.split("/")[-1] for v in w.pruned_weights]
        for w in pruning.collect_prunable_layers(pruned)
    }
    assert wrapped == {
        "emb": ["embeddings"],
        "mha": ["kernel"] * 4,
        "conv1d": ["kernel"],
        "dw": ["kernel"],
        "sep": ["pointwise_kernel"],
        "tconv": ["kernel"],
        "einsum": ["kernel"],
    }
    x = np.random.default_rng(0).integers(0, 20, size=(8, 6))
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), keras.Model(inp, out).predict(x, verbose=0), atol=1e-5
    )


class Scale(keras.layers.Layer):
    def build(self, input_shape):
        self.scale = self.add_weight(shape=input_shape[-1:], initializer="ones")

    def call(self, x):
        return x * self.scale


class PrunableScale(Scale, pruning.PrunableLayer):
    def get_prunable_weights(self):
        return [self.scale]


def test_unknown_layer_with_weights_is_an_error_naming_it():
    inp = keras.Input((4,))
    model = keras.Model(inp, Scale(name="my_scale")(inp))
    with pytest.raises(ValueError, match="my_scale.*PrunableLayer"):
        pruning.prune_low_magnitude(model)


def test_custom_prunable_layer():
    layer = PrunableScale()
    wrapper = pruning.prune_low_magnitude(layer, pruning.ConstantSparsity(0.5, 0, frequency=1))
    model = keras.Sequential([keras.Input((4,)), wrapper])
    layer.scale.assign([1.0, -4.0, 0.5, 3.0])
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    out = ops.convert_to_numpy(model(np.ones((1, 4), "float32"), training=True))
    np.testing.assert_allclose(out, [[0.0, -4.0, 0.0, 3.0]])


def test_list_and_single_layer():
    layers = pruning.prune_low_magnitude([keras.layers.Dense(3), keras.layers.Conv2D(2, 3)])
    assert all(isinstance(layer, pruning.PruneLowMagnitude) for layer in layers)
    assert pruning.prune_low_magnitude(keras.layers.Dense(3)).name.startswith(
        "prune_low_magnitude_"
    )


def test_subclassed_model_is_refused():
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="subclassed"):
        pruning.prune_low_magnitude(Sub())


def test_cka_sr_taps_pruned_layers_by_original_names():
    x, y = quadrant_data(n=64)
    pruned = pruning.prune_low_magnitude(small_cnn(), pruning.ConstantSparsity(0.5, 0, frequency=1))
    model = compile_(attach_cka_loss(pruned, ["c1", "c2"], CKASimilarityLoss(weight=0.1)))
    history = model.fit(
        x, y, batch_size=32, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()]
    )
    assert history.history["cka_sr"][0] > 0
    assert kernel_sparsity(pruning.strip_pruning(model).get_layer("c2")) == pytest.approx(
        0.5, abs=0.01
    )


def test_pruning_summaries_write_sparsity_and_threshold(tmp_path):
    pytest.importorskip("tensorflow")
    x, y = quadrant_data(n=64)
    pruned = compile_(
        pruning.prune_low_magnitude(small_cnn(), pruning.ConstantSparsity(0.5, 0, frequency=1))
    )
    log_dir = str(tmp_path / "logs")
    pruned.fit(
        x,
        y,
        batch_size=32,
        epochs=2,
        verbose=0,
        callbacks=[pruning.UpdatePruningStep(), pruning.PruningSummaries(log_dir)],
    )
    import tensorflow as tf

    tags = set()
    train_dir = os.path.join(log_dir, "train")
    for name in os.listdir(train_dir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(train_dir, name)):
            tags.update(v.tag for v in event.summary.value)
    assert any(t.endswith("kernel/sparsity") for t in tags)
    assert any(t.endswith("kernel/threshold") for t in tags)


def test_bad_wrapper_arguments():
    with pytest.raises(ValueError, match="block_size"):
        pruning.PruneLowMagnitude(keras.layers.Dense(2), block_size=(0, 1))
    with pytest.raises(ValueError, match="block_pooling_type"):
        pruning.PruneLowMagnitude(keras.layers.Dense(2), block_pooling_type="MIN")
    with pytest.raises(ValueError, match="sparsity_m_by_n"):
        pruning.PruneLowMagnitude(keras.layers.Dense(2), sparsity_m_by_n=(4, 2))
    with pytest.raises(ValueError, match="sparsity_m_by_n"):
        pruning.PruneLowMagnitude(keras.layers.Dense(2), sparsity_m_by_n=(1, 2, 4))
    for wrong_type in ("2:4", (2.0, 4), (2, None)):
        with pytest.raises(TypeError, match="sparsity_m_by_n"):
            pruning.PruneLowMagnitude(keras.layers.Dense(2), sparsity_m_by_n=wrong_type)
    assert pruning.PruneLowMagnitude(keras.layers.Dense(2), sparsity_m_by_n=[2, 4])
    with pytest.raises(TypeError, match="pruning_schedule"):
        pruning.PruneLowMagnitude(keras.layers.Dense(2), pruning_schedule=0.5)


@pytest.mark.parametrize("to_prune", ["model", "list"])
def test_unknown_keyword_arguments_are_rejected_not_swallowed(to_prune):
    target = small_cnn() if to_prune == "model" else [keras.layers.Dense(3)]
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['pruning_polcy'\]"):
        pruning.prune_low_magnitude(target, pruning_polcy=None)


def test_keyword_arguments_reach_a_single_layers_wrapper():
    wrapper = pruning.prune_low_magnitude(keras.layers.Dense(3), name="pruned_dense")
    assert wrapper.name == "pruned_dense"


def test_tfmot_custom_training_loop_protocol_and_names(tmp_path):
    """tfmot's documented custom loop calls on_epoch_end(batch=-1); its wrapper exposes
    prunable_weights / get_prunable_weights() / pruning_vars; prune_scope loads models."""
    model = pruning.prune_low_magnitude(small_cnn())
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_train_batch_begin(batch=-1)
    callback.on_epoch_end(batch=-1)
    wrapper = model.get_layer("prune_low_magnitude_c2")
    assert wrapper.get_prunable_weights() == wrapper.prunable_weights == wrapper.pruned_weights
    assert [w for w, _, _ in wrapper.pruning_vars] == wrapper.pruned_weights
    assert [m for _, m, _ in wrapper.pruning_vars] == wrapper.masks
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    with pruning.prune_scope():
        loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("prune_low_magnitude_c2"), pruning.PruneLowMagnitude)


@pytest.mark.filterwarnings("ignore:Pruning did not reach its target")
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_shared_layer_steps_once_per_train_step(run_eagerly):
    """A pruned layer called twice per forward pass follows train steps, as an unshared
    one does (tfmot's wrapper steps on every call, so its schedule runs twice as fast)."""
    schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 12, frequency=4)
    shared = pruning.prune_low_magnitude(keras.layers.Dense(6, name="shared"), schedule)
    single = pruning.prune_low_magnitude(keras.layers.Dense(6, name="single"), schedule)
    inp = keras.Input((6,))
    out = keras.layers.Dense(2, name="head")(single(shared(keras.activations.relu(shared(inp)))))
    model = keras.Model(inp, out)
    model.compile("sgd", "mse", run_eagerly=run_eagerly)
    x = np.random.default_rng(0).normal(size=(40, 6)).astype("float32")
    y = np.zeros((40, 2), "float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    steps = int(ops.convert_to_numpy(model.optimizer.iterations))
    assert steps == 5
    for wrapper in (shared, single):
        assert int(ops.convert_to_numpy(wrapper.pruning_step)) == steps
        # step 5: the last update was at step 4, sparsity 0.8 * (1 - (1 - 4/12)**3) ~= 0.563
        assert float(np.mean(ops.convert_to_numpy(wrapper.masks[0]) == 0)) == pytest.approx(20 / 36)


def test_wrapper_keeps_the_inner_layers_input_shape_in_sequential():
    """tfmot's tests write Sequential([prune_low_magnitude(Dense(10, input_shape=(20,)))])."""
    with pytest.warns(UserWarning, match="input_shape"):  # Keras' own warning, once
        dense = keras.layers.Dense(10, input_shape=(20,))
    model = keras.Sequential([pruning.prune_low_magnitude(dense)])
    assert model.built and model.input_shape == (None, 20)
    assert model.predict(np.zeros((2, 20), "float32"), verbose=0).shape == (2, 10)
