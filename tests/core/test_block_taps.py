"""`block_taps`: block outputs found from the graph (not from names), grouped by shape."""

import keras
import numpy as np
import pytest

import keras_cka_sr
from keras_cka_sr.app import zoo
from tests.support.models import transformer_encoder

L = keras.layers


def test_resnet_blocks_are_grouped_by_stage():
    taps = keras_cka_sr.block_taps(zoo.build("resnet20", (28, 28, 1), 10))
    # Projection blocks (the first of stages 2 and 3) change the shape: not identity blocks.
    assert taps == [
        ["stage1_block1_add", "stage1_block2_add", "stage1_block3_add"],
        ["stage2_block2_add", "stage2_block3_add"],
        ["stage3_block2_add", "stage3_block3_add"],
    ]


def test_a_layer_by_layer_transformer_taps_its_residual_sub_blocks():
    (group,) = keras_cka_sr.block_taps(transformer_encoder())
    assert group == [f"block{i}_{part}" for i in range(3) for part in ("attention", "ff")]


def test_a_block_layer_holding_attention_is_one_tap():
    class Block(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.attention = L.MultiHeadAttention(2, 4)

        def build(self, input_shape):
            self.attention.build(input_shape, input_shape)

        def call(self, x):
            return x + self.attention(x, x)

    inp = keras.Input((5, 8))
    h = Block(name="b0")(inp)
    h = Block(name="b1")(h)
    model = keras.Model(inp, L.Dense(2)(h))
    assert keras_cka_sr.block_taps(model) == [["b0", "b1"]]
    loss = keras_cka_sr.CKASimilarityLoss(weight=1e-2, every_n_steps=1)
    trained = keras_cka_sr.attach_cka_loss(model, keras_cka_sr.block_taps(model), loss)
    trained.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(8, 5, 8)).astype("float32")
    history = trained.fit(x, np.zeros((8, 5, 2)), batch_size=8, verbose=0)
    assert np.isfinite(history.history["cka_sr"][0])


def test_a_model_without_two_blocks_of_one_shape_is_refused():
    inp = keras.Input((8,))
    model = keras.Model(inp, L.Dense(3)(L.Dense(8)(inp)))
    with pytest.raises(ValueError, match="no two consecutive blocks.*blocks found: none"):
        keras_cka_sr.block_taps(model)
    with pytest.raises(TypeError, match="functional keras.Model"):
        keras_cka_sr.block_taps(keras.Sequential([keras.Input((8,)), L.Dense(3)]))
