"""The wrapper's mask reaches the weight each accepted layer really computes with."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import pruning

L = keras.layers

CASES = {
    "Dense": (lambda: L.Dense(5), (3, 6)),
    "EinsumDense": (lambda: L.EinsumDense("ab,bc->ac", output_shape=5), (3, 6)),
    "Conv1D": (lambda: L.Conv1D(4, 3), (2, 7, 3)),
    "Conv2D": (lambda: L.Conv2D(4, 3), (2, 6, 6, 3)),
    "Conv3D": (lambda: L.Conv3D(2, 2), (2, 4, 4, 4, 2)),
    "Conv1DTranspose": (lambda: L.Conv1DTranspose(4, 3), (2, 5, 3)),
    "Conv2DTranspose": (lambda: L.Conv2DTranspose(4, 3), (2, 4, 4, 3)),
    "Conv3DTranspose": (lambda: L.Conv3DTranspose(2, 2), (2, 3, 3, 3, 2)),
    "DepthwiseConv1D": (lambda: L.DepthwiseConv1D(3), (2, 7, 3)),
    "DepthwiseConv2D": (lambda: L.DepthwiseConv2D(3), (2, 6, 6, 3)),
    "SeparableConv1D": (lambda: L.SeparableConv1D(4, 3), (2, 7, 3)),
    "SeparableConv2D": (lambda: L.SeparableConv2D(4, 3), (2, 6, 6, 3)),
    "Embedding": (lambda: L.Embedding(10, 4), None),
    "MultiHeadAttention": (lambda: L.MultiHeadAttention(2, 3), (2, 5, 6)),
}


def make_input(shape, rng):
    if shape is None:  # Embedding
        return np.array([[1, 3, 5], [7, 9, 2]], "int32")
    return rng.normal(size=shape).astype("float32")


def call(layer, x):
    if isinstance(layer, L.MultiHeadAttention) or isinstance(
        getattr(layer, "layer", None), L.MultiHeadAttention
    ):
        return layer(x, x)
    return layer(x)


@pytest.mark.parametrize("name", sorted(CASES))
def test_mask_reaches_the_computed_weight(name, rng):
    factory, shape = CASES[name]
    x = make_input(shape, rng)
    inner = factory()
    call(inner, x)  # build
    wrapper = pruning.PruneLowMagnitude(inner)
    call(wrapper, x)
    assert wrapper.pruned_weights, f"{name}: nothing to prune"
    masks = []
    for mask, weight in zip(wrapper.masks, wrapper.pruned_weights):
        value = (rng.random(tuple(weight.shape)) < 0.5).astype("float32")
        mask.assign(value)
        masks.append(value)
    got = ops.convert_to_numpy(call(wrapper, x))
    for weight, value in zip(wrapper.pruned_weights, masks):
        weight.assign(ops.convert_to_numpy(weight) * value)  # the masked weight, stored
    expected = ops.convert_to_numpy(call(inner, x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_lora_enabled_layer_is_refused_when_wrapped():
    dense = L.Dense(4)
    dense.build((None, 3))
    dense.enable_lora(2)
    with pytest.raises(ValueError, match="LoRA enabled.*before `enable_lora`"):
        pruning.PruneLowMagnitude(dense)


def test_lora_enabled_after_wrapping_is_refused_at_the_next_call(rng):
    x = rng.normal(size=(2, 3)).astype("float32")
    wrapper = pruning.PruneLowMagnitude(L.Dense(4))
    wrapper(x)
    wrapper.layer.enable_lora(2)
    with pytest.raises(ValueError, match="LoRA enabled"):
        wrapper(x)


def test_quantized_layer_is_refused():
    dense = L.Dense(4)
    dense.build((None, 8))
    dense.quantize("int8")
    with pytest.raises(ValueError, match=r"quantized \(int8\).*strip_pruning"):
        pruning.PruneLowMagnitude(dense)


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize`")
def test_quantized_model_is_refused_by_prune_low_magnitude():
    model = keras.Sequential([keras.Input((8,)), L.Dense(4), L.Dense(2)])
    model.quantize("int8")
    with pytest.raises(ValueError, match="quantized"):
        pruning.prune_low_magnitude(model)


@keras.saving.register_keras_serializable(package="tests")
class _PrunableCell(keras.layers.Layer, pruning.PrunableLayer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units, self.state_size = units, units

    def get_config(self):
        return {**super().get_config(), "units": self.units}

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")

    def call(self, inputs, states):
        output = keras.ops.tanh(keras.ops.matmul(inputs, self.kernel) + states[0])
        return output, [output]

    def get_prunable_weights(self):
        return [self.kernel]


RECURRENT = {
    "SimpleRNN": lambda: keras.layers.SimpleRNN(6),
    "LSTM": lambda: keras.layers.LSTM(6),
    "GRU": lambda: keras.layers.GRU(6),
    "Bidirectional": lambda: keras.layers.Bidirectional(keras.layers.LSTM(6)),
    "RNN(PrunableLayer cell)": lambda: keras.layers.RNN(_PrunableCell(6)),
    "RNN(LSTMCell)": lambda: keras.layers.RNN(keras.layers.LSTMCell(6)),
    "RNN(StackedRNNCells)": lambda: keras.layers.RNN(
        keras.layers.StackedRNNCells([keras.layers.GRUCell(6), keras.layers.SimpleRNNCell(6)])
    ),
}


@pytest.mark.parametrize("kind", list(RECURRENT))
def test_recurrent_layers_prune_kernels_and_recurrent_kernels(kind):
    inp = keras.Input((5, 4))
    model = keras.Model(inp, keras.layers.Dense(2)(RECURRENT[kind]()(inp)))
    pruned = pruning.prune_low_magnitude(
        model, pruning.ConstantSparsity(0.5, begin_step=0, frequency=1)
    )
    wrapper = pruned.layers[1]
    assert isinstance(wrapper, pruning.PruneLowMagnitude)
    names = [w.path.split("/")[-1] for w in wrapper.pruned_weights]
    expected = {"RNN(PrunableLayer cell)": 1, "Bidirectional": 4, "RNN(StackedRNNCells)": 4}
    expected = expected.get(kind, 2)
    assert len(names) == expected and "bias" not in names
    x = np.random.default_rng(0).normal(size=(16, 5, 4)).astype("float32")
    y = np.zeros((16, 2), "float32")
    pruned.compile("sgd", "mse")
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    for weight, mask in zip(wrapper.pruned_weights, wrapper.masks):
        assert float(np.mean(keras.ops.convert_to_numpy(mask) == 0)) == pytest.approx(0.5, abs=0.05)
        assert np.all(
            keras.ops.convert_to_numpy(weight)[keras.ops.convert_to_numpy(mask) == 0] == 0
        )
    # The masks reach the computation: the wrapped model equals the stripped one.
    stripped = pruning.strip_pruning(pruned)
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), stripped.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_unbuilt_unknown_layers_are_rejected_when_wrapped():
    with pytest.raises(ValueError, match="not built"):
        pruning.prune_low_magnitude(keras.layers.ConvLSTM2D(4, 3))
    pruning.prune_low_magnitude(keras.layers.Flatten())  # known to have no weights


def test_subclass_of_a_supported_layer_must_be_a_prunable_layer():
    class MyDense(keras.layers.Dense):
        pass

    with pytest.raises(ValueError, match="subclasses Dense"):
        pruning.prune_low_magnitude(MyDense(3))

    class MyPrunableDense(keras.layers.Dense, pruning.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]

    pruning.prune_low_magnitude(MyPrunableDense(3))


def test_multi_head_attention_called_with_keywords_in_a_functional_model():
    """tfmot users write mha(query=q, value=v); the wrapper takes the same call."""
    mha = keras.layers.MultiHeadAttention(2, 4)
    q, v = keras.Input((5, 8)), keras.Input((7, 8))
    mha(q, v)
    wrapper = pruning.prune_low_magnitude(mha)
    model = keras.Model([q, v], wrapper(query=q, value=v))
    x = [np.ones((2, 5, 8), "float32"), np.ones((2, 7, 8), "float32")]
    expected = ops.convert_to_numpy(mha(*x))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


class _NoConfig(keras.layers.Layer):
    """A weightless custom layer whose constructor takes no Layer keyword arguments."""

    def __init__(self):
        super().__init__()

    def call(self, x):
        return 2.0 * x


def test_a_layer_that_cannot_be_rebuilt_is_shared_with_a_warning():
    inputs = keras.Input((4,), name="pixels")
    odd = _NoConfig()
    model = keras.Model(inputs, L.Dense(3)(odd(inputs)))
    with pytest.warns(UserWarning, match="shares this layer object"):
        pruned = pruning.prune_low_magnitude(model)
    assert odd in pruned.layers
    assert pruned.layers[0].name == "pixels"  # the input layer keeps its name


def test_pruned_and_stripped_copies_of_a_compiled_model_are_uncompiled():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    model.compile("sgd", "mse")
    pruned = pruning.prune_low_magnitude(model)
    stripped = pruning.strip_pruning(pruned)
    assert not pruned.compiled and not stripped.compiled
    assert model.compiled  # the original is untouched


def test_legacy_h5_of_a_compiled_pruned_model_reloads_with_compile_false(tmp_path):
    """docs/pruning.md differences table: Keras 3's legacy `.h5` loader cannot restore a string
    loss (`'mse'`), pruned or not; the weights and masks reload with `compile=False`."""
    model = pruning.prune_low_magnitude(
        keras.Sequential([keras.Input((6,)), L.Dense(4)]),
        pruning_schedule=pruning.ConstantSparsity(0.5, 0, frequency=1),
    )
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    model.fit(x, x[:, :4], callbacks=[pruning.UpdatePruningStep()], verbose=0)
    path = str(tmp_path / "pruned.h5")
    model.save(path)
    with pytest.raises(ValueError, match="Could not deserialize"):
        keras.models.load_model(path)
    reloaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert float(np.mean(ops.convert_to_numpy(reloaded.layers[0].masks[0]))) == 0.5
