"""tfmot 0.8.1 `sparsity/keras/prune_distributed_test.py`, ported (see README.md here).

TensorFlow only (tf.distribute strategies). In this process TF sees one CPU device; two
replicas, and `keras.distribution` on JAX, are in `tests/test_distributed.py`.
"""

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning as prune
from keras_cka_sr import pruning as pruning_callbacks
from tests.pruning.tfmot_suite.keras_test_utils import (
    assert_model_sparsity,
    build_simple_dense_model,
    every_step_params,
)

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute: TensorFlow only"
)


def _distribution_strategies():
    import tensorflow as tf

    return {
        "MultiWorkerMirroredStrategy": tf.distribute.MultiWorkerMirroredStrategy,
        "MirroredStrategy": tf.distribute.MirroredStrategy,
        "OneDeviceStrategy": lambda: tf.distribute.OneDeviceStrategy("/cpu:0"),
    }


@pytest.fixture
def params():
    return every_step_params()


@pytest.mark.parametrize(
    "distribution", ["MultiWorkerMirroredStrategy", "MirroredStrategy", "OneDeviceStrategy"]
)
def testPrunesSimpleDenseModel(distribution, params, tmp_path):
    distribution = _distribution_strategies()[distribution]()
    with distribution.scope():
        model = prune.prune_low_magnitude(build_simple_dense_model(), **params)
        model.compile(loss="categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])

    # Model hasn't been trained yet. Sparsity 0.0
    assert_model_sparsity(0.0, model)

    # Simple unpruned model. No sparsity.
    model.fit(
        np.random.rand(20, 10),
        keras.utils.to_categorical(np.random.randint(5, size=(20, 1)), 5),
        epochs=2,
        callbacks=[pruning_callbacks.UpdatePruningStep()],
        batch_size=20,
        verbose=0,
    )
    model.predict(np.random.rand(20, 10), verbose=0)
    assert_model_sparsity(0.5, model)

    # Keras 3: the `.keras` format (tfmot: `.h5`).
    keras_file = str(tmp_path / "model.keras")
    keras.models.save_model(model, keras_file)

    with prune.prune_scope():
        loaded_model = keras.models.load_model(keras_file)

    assert_model_sparsity(0.5, loaded_model)
