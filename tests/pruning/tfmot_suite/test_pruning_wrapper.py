"""tfmot 0.8.1 `sparsity/keras/pruning_wrapper_test.py`, ported (see README.md here)."""

import keras
import pytest

from keras_cka_sr import pruning as pruning_wrapper

layers = keras.layers
Prune = pruning_wrapper.PruneLowMagnitude


class CustomLayer(keras.layers.Layer):
    """A custom layer which is not prunable."""

    def __init__(self, input_dim=16, output_dim=32):
        super().__init__()
        self.weight = self.add_weight(
            shape=(input_dim, output_dim), initializer="random_normal", trainable=True
        )
        self.bias = self.add_weight(shape=(output_dim,), initializer="zeros", trainable=True)

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.weight) + self.bias


class CustomLayerPrunable(CustomLayer):
    """The same layer with a 'get_prunable_weights' attribute."""

    def get_prunable_weights(self):
        return [self.weight, self.bias]


@pytest.fixture
def model():
    return keras.Sequential()


def _check_mask_count(model, expected_mask_count=0):
    mask_count = 0
    for layer in model.layers:
        mask_count += len(layer.pruning_vars)
    assert mask_count == expected_mask_count


def testPruneWrapperAllowsOnlyValidPoolingType():
    layer = layers.Dense(10)
    with pytest.raises(ValueError):
        pruning_wrapper.PruneLowMagnitude(layer, block_pooling_type="MIN")
    pruning_wrapper.PruneLowMagnitude(layer, block_pooling_type="AVG")
    pruning_wrapper.PruneLowMagnitude(layer, block_pooling_type="MAX")


def testDense(model, params):
    model.add(Prune(layers.Dense(10), **params))
    model.build(input_shape=(10, 1))
    _check_mask_count(model, expected_mask_count=1)


def testEmbedding(model, params):
    model.add(Prune(layers.Embedding(10, 10), input_shape=(10,), **params))
    # Keras 3: a Sequential built from `input_shape=(10,)` refuses `build((10, 1))`, with or
    # without the wrapper; it is built already.
    assert model.built
    _check_mask_count(model, expected_mask_count=1)


def testConv2D(model, params):
    model.add(Prune(layers.Conv2D(4, (3, 3)), **params))
    model.build(input_shape=(1, 16, 16, 4))
    _check_mask_count(model, expected_mask_count=1)


def testPruneModel(model):
    model.add(Prune(layers.Conv2D(32, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Conv2D(64, 5)))
    model.add(Prune(layers.MaxPooling2D((2, 2), (2, 2))))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(1024)))
    model.add(Prune(layers.Dropout(0.4)))
    model.add(Prune(layers.Dense(10)))
    model.build(input_shape=(1, 28, 28, 1))
    _check_mask_count(model, expected_mask_count=4)

    # Test serialization
    model_config = model.get_config()
    pruned_model = model.__class__.from_config(
        model_config,
        custom_objects={"PruneLowMagnitude": pruning_wrapper.PruneLowMagnitude},
    )
    pruned_model_config = pruned_model.get_config()
    # New serialization format includes `build_config` in all layers
    for layer in model_config["layers"]:
        layer.pop("build_config", None)
    for layer in pruned_model_config["layers"]:
        layer.pop("build_config", None)
    assert model_config == pruned_model_config


def testCustomLayerNonPrunable():
    layer = CustomLayer(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))
    _ = layer(inputs)
    with pytest.raises(ValueError):
        pruning_wrapper.PruneLowMagnitude(layer, block_pooling_type="MAX")


def testCustomLayerPrunable():
    layer = CustomLayerPrunable(input_dim=16, output_dim=32)
    inputs = keras.layers.Input(shape=(16,))
    _ = layer(inputs)
    pruned_layer = pruning_wrapper.PruneLowMagnitude(layer, block_pooling_type="MAX")
    # The name is the layer's name prefixed by the snake_case version of the
    # `PruneLowMagnitude` class's name.
    assert pruned_layer.name == "prune_low_magnitude_custom_layer_prunable"


def testCollectPrunableLayers(model):
    lstm_layer = keras.layers.RNN(
        layers.LSTMCell(4, dropout=0.5, recurrent_dropout=0.5), input_shape=(None, 4)
    )
    model.add(Prune(lstm_layer))
    model.add(Prune(layers.BatchNormalization()))
    model.add(Prune(layers.Flatten()))
    model.add(Prune(layers.Dense(10)))
    model.add(Prune(layers.Dropout(0.5)))
    # Keras 3: built from `input_shape=(None, 4)` already; `build((1, 4))` is refused.
    assert model.built
    assert len(pruning_wrapper.collect_prunable_layers(model)) == 5


def testConv3DWeightNotPrunedWithSparsityMbyN(model):
    layer = keras.layers.Conv3D(2, 3)
    # Keras 3: Conv3D takes (batch, d, h, w, channels); tf_keras also accepted the extra
    # leading dimension of tfmot's Input(shape=(4, 28, 28, 28, 1)).
    inputs = keras.layers.Input(shape=(28, 28, 28, 1))
    _ = layer(inputs)
    with pytest.warns(UserWarning, match="rank-2 and rank-4"):
        model.add(Prune(layer, sparsity_m_by_n=(2, 4)))
        model.build((None, 28, 28, 28, 1))
    pruned_layers = pruning_wrapper.collect_prunable_layers(model)
    assert len(pruned_layers) == 1
    # Only rank-2 (e.g, Conv2D) or rank-4 (e.g, Dense) weight are pruned with
    # M-by-N sparsity.
    assert len(pruned_layers[0].pruning_vars) == 0
