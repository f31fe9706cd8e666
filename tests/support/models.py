"""Small models, data and probes shared by the core tests."""

import keras
import numpy as np
from keras import ops

TAPS = ["c1", "c2", "c3"]


def small_cnn():
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(x), name="cnn")


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    return x, (x.mean(axis=(1, 2, 3)) > 0).astype("int32") + (x[:, 0, 0, 0] > 1)


def compile_(model, lr=0.0):
    model.compile(
        keras.optimizers.SGD(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def penalty_on(model, names, loss, x):
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    return float(ops.convert_to_numpy(loss([ops.convert_to_tensor(f) for f in probe(x)])))


class RecordPenalty(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        # Through self.model: on JAX that syncs the state into the variables.
        layer = self.model.get_layer("cka_regularization")
        self.values.append(float(ops.convert_to_numpy(layer.last_penalty)))


def transformer_encoder(depth=3, width=16, length=6, classes=3):
    """A transformer encoder written layer by layer (no composite layer), post-LayerNorm: per
    block an attention and a feed-forward residual sub-block, closed by Adds named
    `block{i}_attention` and `block{i}_ff`."""
    layers = keras.layers
    inp = keras.Input((length, width))
    h = inp
    for i in range(depth):
        attention = layers.MultiHeadAttention(2, width // 2, name=f"attention{i}")(h, h)
        h = layers.Add(name=f"block{i}_attention")([h, attention])
        h = layers.LayerNormalization(name=f"norm{i}a")(h)
        ff = layers.Dense(2 * width, activation="relu", name=f"ff{i}_in")(h)
        ff = layers.Dense(width, name=f"ff{i}_out")(ff)
        h = layers.LayerNormalization(name=f"norm{i}b")(layers.Add(name=f"block{i}_ff")([h, ff]))
    return keras.Model(inp, layers.Dense(classes)(layers.GlobalAveragePooling1D()(h)))
