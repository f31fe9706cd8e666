"""tfmot 0.8.1 `sparsity/keras/pruning_policy_test.py`, ported (see README.md here)."""

import keras
import pytest

from keras_cka_sr import pruning as prune
from keras_cka_sr import pruning as pruning_policy
from keras_cka_sr import pruning as pruning_wrapper

layers = keras.layers

INVALID_TO_PRUNE_START_LAYER_ERROR = (
    "Could not find `Conv2D 3x3` layer with stride 2x2, `input filters == 3`"
    " and `VALID` padding and preceding `ZeroPadding2D` with `padding == 1` "
    "in all input branches of the model"
)
INVALID_TO_PRUNE_STOP_LAYER_ERROR = (
    "Could not find a `GlobalAveragePooling2D` layer in all output branches"
)
INVALID_TO_PRUNE_MIDDLE_LAYER_ERROR = (
    "Layer {} is not supported for the PruneForLatencyOnXNNPack pruning policy"
)
INVALID_TO_PRUNE_UNBUILT_ERROR = "Unbuilt models are not supported currently."


def _count_pruned_layers(model):
    count = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            count += _count_pruned_layers(layer)
        if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
            count += 1
    return count


def _start(x, filters=16):
    x = layers.ZeroPadding2D(padding=1)(x)
    return layers.Conv2D(filters=filters, kernel_size=(3, 3), strides=(2, 2), padding="valid")(x)


def testPruneUnsupportedModelForLatencyOnXNNPackPolicyNoStartLayer(params):
    i = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(filters=16, kernel_size=(3, 3), strides=(2, 2), padding="same")(i)
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    with pytest.raises(ValueError) as e:
        prune.prune_low_magnitude(
            model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
        )
    assert str(e.value) == INVALID_TO_PRUNE_START_LAYER_ERROR


def testPruneUnsupportedModelForLatencyOnXNNPackPolicyNoStopLayer(params):
    i = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(_start(i))
    o = layers.AveragePooling2D(pool_size=(2, 2))(x)  # Keras 3: pool_size has no default
    model = keras.Model(inputs=[i], outputs=[o])
    with pytest.raises(ValueError) as e:
        prune.prune_low_magnitude(
            model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
        )
    assert str(e.value) == INVALID_TO_PRUNE_STOP_LAYER_ERROR


def testPruneUnsupportedModelForLatencyOnXNNPackPolicyMiddleLayer(params):
    i = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(_start(i))
    x = layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2))(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    with pytest.raises(ValueError) as e:
        prune.prune_low_magnitude(
            model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
        )
    assert str(e.value) == INVALID_TO_PRUNE_MIDDLE_LAYER_ERROR.format(layers.MaxPooling2D.__name__)


def testPruneSequentialModelForLatencyOnXNNPackPolicy(params):
    # No InputLayer
    model = keras.Sequential(
        [
            layers.ZeroPadding2D(padding=1),
            layers.Conv2D(filters=4, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
            layers.Conv2D(filters=8, kernel_size=[1, 1]),
            layers.GlobalAveragePooling2D(),
        ]
    )
    with pytest.raises(ValueError) as e:
        prune.prune_low_magnitude(
            model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
        )
    assert str(e.value) == INVALID_TO_PRUNE_UNBUILT_ERROR

    # With InputLayer
    model = keras.Sequential(
        [
            layers.ZeroPadding2D(padding=1, input_shape=(8, 8, 3)),
            layers.Conv2D(filters=4, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same"),
            layers.Conv2D(filters=8, kernel_size=[1, 1]),
            layers.GlobalAveragePooling2D(),
        ]
    )
    pruned_model = prune.prune_low_magnitude(
        model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 1


def testPruneModelRecursivelyForLatencyOnXNNPackPolicy(params):
    original_model = keras.Sequential(
        [
            layers.ZeroPadding2D(padding=1, input_shape=(8, 8, 3)),
            layers.Conv2D(filters=4, kernel_size=(3, 3), strides=(2, 2), padding="valid"),
            keras.Sequential(
                [
                    layers.Conv2D(filters=8, kernel_size=[1, 1]),
                    layers.Conv2D(filters=16, kernel_size=[1, 1]),
                ]
            ),
            layers.GlobalAveragePooling2D(),
        ]
    )
    pruned_model = prune.prune_low_magnitude(
        original_model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 2


def testPruneFunctionalModelWithLayerReusedForLatencyOnXNNPackPolicy(params):
    # The model reuses the Conv2D() layer. Make sure it's only pruned once.
    i = keras.Input(shape=(8, 8, 3))
    x = _start(i)
    conv_layer = layers.Conv2D(filters=16, kernel_size=[1, 1])
    x = conv_layer(x)
    x = conv_layer(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    pruned_model = prune.prune_low_magnitude(
        model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 1


def testFunctionalModelNoPruningLayersForLatencyOnXNNPackPolicy(params):
    i = keras.Input(shape=(8, 8, 3))
    x = layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same")(_start(i))
    x = layers.Activation("relu")(x)
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    pruned_model = prune.prune_low_magnitude(
        model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 0


def testFunctionalModelForLatencyOnXNNPackPolicy(params):
    # Keras 3: GlobalAveragePooling2D takes keepdims (tfmot's CompatGlobalAveragePooling2D
    # shim for TF <= 2.5 is not needed).
    i1 = keras.Input(shape=(16, 16, 3))
    x1 = _start(i1)
    x1_1 = layers.DepthwiseConv2D(kernel_size=(3, 3), padding="same")(x1)
    x1_2 = layers.Conv2D(filters=16, kernel_size=[1, 1])(x1)
    x1 = layers.Add()([x1_1, x1_2])

    i2 = keras.Input(shape=(16, 16, 3))
    x2 = _start(i2, filters=8)
    x2 = layers.ZeroPadding2D(padding=1)(x2)
    x2 = layers.DepthwiseConv2D(kernel_size=(3, 3), strides=(2, 2), padding="valid")(x2)
    x2_1 = layers.GlobalAveragePooling2D(keepdims=True)(x2)
    x2_1 = layers.Conv2D(filters=32, kernel_size=[1, 1])(x2_1)
    x2_1 = layers.Activation("sigmoid")(x2_1)
    x2_2 = layers.Conv2D(filters=32, kernel_size=[1, 1])(x2)
    x2_2 = layers.UpSampling2D(interpolation="bilinear")(x2_2)
    x2 = layers.Multiply()([x2_1, x2_2])

    x2 = layers.Conv2D(filters=16, kernel_size=[1, 1])(x2)
    x = layers.Add()([x1, x2])
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)

    o1 = layers.Conv2D(filters=7, kernel_size=[1, 1])(x)
    o2 = layers.Conv2D(filters=3, kernel_size=[1, 1])(x)
    model = keras.Model(inputs=[i1, i2], outputs=[o1, o2])
    pruned_model = prune.prune_low_magnitude(
        model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 6


def testPruneFunctionalModelAfterCloneForLatencyOnXNNPackPolicy(params):
    i = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(_start(i))
    o = layers.GlobalAveragePooling2D()(x)
    original_model = keras.Model(inputs=[i], outputs=[o])
    cloned_model = keras.models.clone_model(original_model, clone_function=lambda l: l)  # noqa: E741
    pruned_model = prune.prune_low_magnitude(
        cloned_model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 1


def testFunctionalModelWithTFOpsForLatencyOnXNNPackPolicy(params):
    i = keras.Input(shape=(8, 8, 3))
    x = _start(i)
    residual = layers.Conv2D(filters=16, kernel_size=[1, 1])(x)
    x = x + residual
    x = x - residual
    x = x * residual
    # Keras 3: `tf.identity(x)` cannot take a symbolic Keras tensor (TF ops are not
    # recorded as layers any more); the three operators above are recorded as Keras ops.
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    pruned_model = prune.prune_low_magnitude(
        model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 1


def testFunctionalModelForLatencyOnDoubleXNNPackPolicy(params):
    i = keras.Input(shape=(8, 8, 3))
    x = layers.Conv2D(filters=16, kernel_size=[1, 1])(_start(i))
    o = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs=[i], outputs=[o])
    pruned_model = prune.prune_low_magnitude(
        model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(pruned_model) == 1
    double_pruned_model = prune.prune_low_magnitude(
        pruned_model, pruning_policy=pruning_policy.PruneForLatencyOnXNNPack(), **params
    )
    assert _count_pruned_layers(double_pruned_model) == 1


def test_a_policy_is_checked_and_applies_to_models_only():
    with pytest.raises(TypeError, match="PruningPolicy"):
        prune.prune_low_magnitude(keras.Sequential([keras.Input((3,))]), pruning_policy="xnnpack")
    with pytest.raises(ValueError, match="applies to models"):
        prune.prune_low_magnitude(
            layers.Conv2D(4, 1), pruning_policy=pruning_policy.PruneForLatencyOnXNNPack()
        )
