"""Models of the main job, as functional Keras 3 models that name the layers CKA-SR taps.

* `resnet20`/`resnet32`: CIFAR ResNets of He et al. (2016), as in the paper: 3 stages of
  16/32/64 filters with (depth - 2)/6 basic blocks each. The output of every residual
  block (after the add and ReLU) is a layer named `stage{s}_block{b}_out`; CKA-SR
  compares blocks within a stage, as the reference code (the stem is not tapped).
* `lenet5`: LeNet-5 (conv 6, conv 16, dense 120, dense 84); taps the four hidden layers.
* `mlp`: 3 hidden Dense layers of 300; taps them.

`tap_groups(model)` returns the tapped layer names, grouped, for `attach_cka_loss`.
"""

from typing import TYPE_CHECKING

from keras_cka_sr.app.builders import Registry

if TYPE_CHECKING:  # Keras is imported where a model is built: the CLI lists the names first
    import keras

MODELS = Registry("model")  # builder(input_shape, num_classes, width) -> keras.Model


def build(name: str, input_shape: tuple, num_classes: int, resnet_width: int = 16) -> "keras.Model":
    """The model `name` (see `MODELS.names()`) for inputs of `input_shape` and `num_classes`.

    `resnet_width` is the first stage's filter count of the ResNets (16 in the paper;
    the stages have width, 2 width, 4 width); the other models do not use it.
    """
    return MODELS.get(name, "name")(tuple(input_shape), num_classes, resnet_width)


@MODELS.register("lenet5")
def _lenet5(input_shape, num_classes, width):
    return lenet5(input_shape, num_classes)


@MODELS.register("resnet20")
def _resnet20(input_shape, num_classes, width):
    return cifar_resnet(20, input_shape, num_classes, (width, 2 * width, 4 * width))


@MODELS.register("resnet32")
def _resnet32(input_shape, num_classes, width):
    return cifar_resnet(32, input_shape, num_classes, (width, 2 * width, 4 * width))


@MODELS.register("mlp")
def _mlp(input_shape, num_classes, width):
    return mlp(input_shape, num_classes)


NAMES = MODELS.names()  # the built-in models; MODELS.names() includes registered ones


def tap_groups(model: "keras.Model") -> list[list[str]]:
    """Names of the tapped layers of a model of this module, one list per stage."""
    groups = {}
    for layer in model.layers:
        name = layer.name
        if name.startswith("stage") and name.endswith("_out"):
            stage = name.split("_")[0]
            groups.setdefault(stage, []).append(name)
        elif name.startswith("tap_"):
            groups.setdefault("all", []).append(name)
    result = [g for g in groups.values() if len(g) >= 2]
    if not result:
        raise ValueError(
            f"Model {model.name!r} has no group of at least 2 tapped layers (named stage*_out "
            f"or tap_*) to compare; found {groups or 'none'}. For a CIFAR ResNet, use a depth of "
            "at least 14 (2 blocks per stage)."
        )
    return result


LENET5_MIN_SIZE = 12  # conv5 same, pool 2, conv5 valid, pool 2: at least 1x1 left


def lenet5(input_shape: tuple = (28, 28, 1), num_classes: int = 10) -> "keras.Model":
    """LeNet-5 for images of at least 12x12: conv 6, conv 16, dense 120, dense 84; taps all four."""
    import keras
    from keras import layers

    if len(input_shape) != 3 or min(input_shape[:2]) < LENET5_MIN_SIZE:
        raise ValueError(
            f"lenet5 needs images of shape (height, width, channels) of at least "
            f"{LENET5_MIN_SIZE}x{LENET5_MIN_SIZE}; got {tuple(input_shape)}. For small images "
            "(e.g. the 8x8 digits data set) use the mlp model."
        )
    inp = keras.Input(input_shape, name="image")
    x = layers.Conv2D(6, 5, padding="same", activation="relu", name="tap_conv1")(inp)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(16, 5, activation="relu", name="tap_conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(120, activation="relu", name="tap_fc1")(x)
    x = layers.Dense(84, activation="relu", name="tap_fc2")(x)
    return keras.Model(inp, layers.Dense(num_classes, name="logits")(x), name="lenet5")


def mlp(input_shape: tuple = (28, 28, 1), num_classes: int = 10, width: int = 300) -> "keras.Model":
    """Three hidden Dense layers of `width` on the flattened input; taps all three."""
    import keras
    from keras import layers

    inp = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(inp)
    for i in range(3):
        x = layers.Dense(width, activation="relu", name=f"tap_dense{i + 1}")(x)
    return keras.Model(inp, layers.Dense(num_classes, name="logits")(x), name="mlp")


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10, widths=(16, 32, 64)):
    """CIFAR ResNet-`depth` (depth = 6n + 2) with basic blocks and 1x1 projection shortcuts."""
    import keras
    from keras import layers

    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, ...); got {depth}.")
    blocks = (depth - 2) // 6
    init = dict(kernel_initializer="he_normal", use_bias=False)
    # momentum 0.9 = PyTorch's BatchNorm default (0.1), as in the reference code; Keras'
    # 0.99 leaves the moving statistics far behind in short or pruned training.
    bn = dict(momentum=0.9)
    inp = keras.Input(input_shape, name="image")
    x = layers.Conv2D(widths[0], 3, padding="same", name="stem_conv", **init)(inp)
    x = layers.ReLU(name="stem_relu")(layers.BatchNormalization(name="stem_bn", **bn)(x))
    for s, width in enumerate(widths, start=1):
        for b in range(1, blocks + 1):
            prefix = f"stage{s}_block{b}"
            stride = 2 if s > 1 and b == 1 else 1
            y = layers.Conv2D(
                width, 3, strides=stride, padding="same", name=f"{prefix}_conv1", **init
            )(x)
            y = layers.ReLU(name=f"{prefix}_relu1")(
                layers.BatchNormalization(name=f"{prefix}_bn1", **bn)(y)
            )
            y = layers.Conv2D(width, 3, padding="same", name=f"{prefix}_conv2", **init)(y)
            y = layers.BatchNormalization(name=f"{prefix}_bn2", **bn)(y)
            if stride != 1 or x.shape[-1] != width:
                x = layers.Conv2D(width, 1, strides=stride, name=f"{prefix}_proj", **init)(x)
                x = layers.BatchNormalization(name=f"{prefix}_proj_bn", **bn)(x)
            x = layers.ReLU(name=f"{prefix}_out")(layers.Add(name=f"{prefix}_add")([x, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inp, layers.Dense(num_classes, name="logits")(x), name=f"resnet{depth}")
