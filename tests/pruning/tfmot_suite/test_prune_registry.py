"""tfmot 0.8.1 `sparsity/keras/prune_registry_test.py`, ported (see README.md here).

tfmot's `PruneRegistry.supports(layer)` is `keras_cka_sr.pruning.registry.supports(layer)`,
and `PruneRegistry.make_prunable(layer).get_prunable_weights()` is
`registry.prunable_weights(layer)`.
"""

import keras
import pytest

from keras_cka_sr.pruning import PrunableLayer, registry

layers = keras.layers


class CustomLayer(layers.Layer):
    pass


class CustomLayerFromPrunableLayer(layers.Dense):
    pass


class MinimalRNNCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        self.units = units
        self.state_size = units
        super().__init__(**kwargs)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer="uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="uniform", name="recurrent_kernel"
        )
        self.built = True

    def call(self, inputs, states):
        prev_output = states[0]
        h = keras.ops.matmul(inputs, self.kernel)
        output = h + keras.ops.matmul(prev_output, self.recurrent_kernel)
        return output, [output]


class MinimalRNNCellPrunable(MinimalRNNCell, PrunableLayer):
    def get_prunable_weights(self):
        return [self.kernel, self.recurrent_kernel]


SUPPORTED = {
    "Dense": lambda: layers.Dense(10),
    "Conv2D": lambda: layers.Conv2D(10, 5),
    "Dropout": lambda: layers.Dropout(0.5),
    # Keras 3 has no layers.experimental / compat.v1 layers: their successors instead.
    "BatchNormalization(synchronized)": lambda: layers.BatchNormalization(synchronized=True),
    # tfmot passes the Rescaling class itself; an instance here.
    "Rescaling": lambda: layers.Rescaling(1.0 / 255),
    "LSTM": lambda: layers.LSTM(10),
    "GRU": lambda: layers.GRU(10),
    "SimpleRNN": lambda: layers.SimpleRNN(10),
    "RNN(LSTMCell)": lambda: layers.RNN(layers.LSTMCell(10)),
    "RNN(cells)": lambda: layers.RNN(
        [layers.LSTMCell(10), layers.GRUCell(10), layers.SimpleRNNCell(10)]
    ),
    "RNN(MinimalRNNCellPrunable)": lambda: keras.layers.RNN(MinimalRNNCellPrunable(32)),
}


@pytest.mark.parametrize("name", list(SUPPORTED))
def testSupportsLayer(name):
    if name == "BatchNormalization(synchronized)" and keras.backend.backend() != "tensorflow":
        pytest.skip("Keras 3 has synchronized BatchNormalization on TensorFlow only")
    assert registry.supports(SUPPORTED[name]())


UNSUPPORTED = {
    # Not support a few built-in keras layers.
    "ConvLSTM2D": lambda: layers.ConvLSTM2D(2, (5, 5)),
    # Not support RNN layers with unknown cell
    "RNN(MinimalRNNCell)": lambda: keras.layers.RNN(MinimalRNNCell(32)),
    # Not support Custom layers, even though inherited from prunable layer.
    "CustomLayer": lambda: CustomLayer(),
    "CustomLayerFromPrunableLayer": lambda: CustomLayerFromPrunableLayer(10),
}


@pytest.mark.parametrize("name", list(UNSUPPORTED))
def testDoesNotSupportLayer(name):
    assert not registry.supports(UNSUPPORTED[name]())


# tfmot's `PruneRegistry.make_prunable(layer)` patches `layer.get_prunable_weights`; its
# counterpart here is `registry.prunable_weights(layer)` (nothing is patched, so tfmot's
# `assertRaises(AttributeError): layer.get_prunable_weights()` lines have no counterpart).


def testMakePrunableRaisesErrorForKerasUnsupportedLayer():
    with pytest.raises(ValueError):
        registry.prunable_weights(layers.ConvLSTM2D(2, (5, 5)))


def testMakePrunableRaisesErrorForCustomLayer():
    with pytest.raises(ValueError):
        registry.prunable_weights(CustomLayer())


def testMakePrunableRaisesErrorForCustomLayerInheritedFromPrunableLayer():
    with pytest.raises(ValueError):
        registry.prunable_weights(CustomLayerFromPrunableLayer(10))


def testMakePrunableWorksOnKerasPrunableLayer():
    layer = layers.Dense(10)
    keras.Sequential([layer]).build(input_shape=(10, 1))
    assert [layer.kernel] == registry.prunable_weights(layer)


def testMakePrunableWorksOnKerasNonPrunableLayer():
    layer = layers.Dropout(0.5)
    assert [] == registry.prunable_weights(layer)


def testMakePrunableWorksOnKerasRNNLayer():
    layer = layers.LSTM(10)
    keras.Sequential([layer]).build(input_shape=(2, 3, 4))
    assert [layer.cell.kernel, layer.cell.recurrent_kernel] == registry.prunable_weights(layer)


def testMakePrunableWorksOnKerasRNNLayerWithRNNCellsParams():
    cell1 = layers.LSTMCell(10)
    cell2 = layers.GRUCell(5)
    layer = layers.RNN([cell1, cell2])
    keras.Sequential([layer]).build(input_shape=(2, 3, 4))
    expected_weights = [cell1.kernel, cell1.recurrent_kernel, cell2.kernel, cell2.recurrent_kernel]
    assert expected_weights == registry.prunable_weights(layer)


def testMakePrunableWorksOnKerasRNNLayerWithPrunableCell():
    cell1 = layers.LSTMCell(10)
    cell2 = MinimalRNNCellPrunable(5)
    layer = layers.RNN([cell1, cell2])
    keras.Sequential([layer]).build(input_shape=(2, 3, 4))
    expected_weights = [cell1.kernel, cell1.recurrent_kernel, cell2.kernel, cell2.recurrent_kernel]
    assert expected_weights == registry.prunable_weights(layer)


def testMakePrunableRaisesErrorOnRNNLayersUnsupportedCell():
    with pytest.raises(ValueError):
        registry.prunable_weights(layers.RNN([layers.LSTMCell(10), MinimalRNNCell(5)]))
