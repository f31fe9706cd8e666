"""tfmot's test helpers (`keras/test_utils.py`, `sparsity/keras/test_utils.py`) that
several ported files share."""

import keras
import numpy as np

from keras_cka_sr import pruning


def build_simple_dense_model():
    return keras.Sequential(
        [
            keras.layers.Dense(8, activation="relu", input_shape=(10,)),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )


def every_step_params():
    """The `self.params` of tfmot's integration and distributed tests (frequency 1)."""
    return {
        "pruning_schedule": pruning.ConstantSparsity(0.5, 0, -1, 1),
        "block_size": (1, 1),
        "block_pooling_type": "AVG",
    }


def get_sparsity(weights):
    return 1.0 - np.count_nonzero(weights) / float(weights.size)


def assert_model_sparsity(sparsity, model, rtol=1e-6, atol=1e-6):
    # Keras 3: `get_prunable_weights` is the wrapper's (tfmot adds it to the inner layer).
    for layer in model.layers:
        if isinstance(layer, pruning.PruneLowMagnitude):
            for weight in layer.get_prunable_weights():
                np.testing.assert_allclose(
                    sparsity,
                    get_sparsity(keras.ops.convert_to_numpy(weight)),
                    rtol=rtol,
                    atol=atol,
                )
