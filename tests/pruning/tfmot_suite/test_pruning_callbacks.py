"""tfmot 0.8.1 `sparsity/keras/pruning_callbacks_test.py`, ported (see README.md here)."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning as prune
from keras_cka_sr import pruning as pruning_callbacks
from tests.pruning.tfmot_suite.keras_test_utils import build_simple_dense_model

_BATCH_SIZE = 20
BACKEND = keras.backend.backend()
DIFFERENCE = (
    "Difference from tfmot (README table): training without UpdatePruningStep warns and "
    "prunes the same; tfmot raises, and an error inside a JAX train step loses the model's state."
)


def _assertLogsExist(log_dir):
    assert os.listdir(log_dir)


def _pruned_model_setup(custom_training_loop=False):
    pruned_model = prune.prune_low_magnitude(build_simple_dense_model())
    x_train = np.random.rand(_BATCH_SIZE, 10)
    y_train = keras.utils.to_categorical(np.random.randint(5, size=(_BATCH_SIZE, 1)), 5)
    loss = keras.losses.categorical_crossentropy
    optimizer = keras.optimizers.SGD()
    if custom_training_loop:
        return pruned_model, loss, optimizer, x_train, y_train
    pruned_model.compile(loss=loss, optimizer=optimizer, metrics=["accuracy"])
    return pruned_model, x_train, y_train


def get_value(variable):  # keras.backend.get_value
    return int(keras.ops.convert_to_numpy(variable))


@pytest.mark.filterwarnings("ignore:Pruning did not reach its target")
def testUpdatePruningStepsAndLogsSummaries():
    pytest.importorskip("tensorflow")  # TensorBoard summaries
    log_dir = tempfile.mkdtemp()
    pruned_model, x_train, y_train = _pruned_model_setup()
    pruned_model.fit(
        x_train,
        y_train,
        batch_size=_BATCH_SIZE,
        epochs=3,
        callbacks=[
            pruning_callbacks.UpdatePruningStep(),
            pruning_callbacks.PruningSummaries(log_dir=log_dir),
        ],
    )
    assert 3 == get_value(pruned_model.layers[0].pruning_step)
    assert 3 == get_value(pruned_model.layers[1].pruning_step)
    _assertLogsExist(log_dir)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.GradientTape loop: TensorFlow only")
def testUpdatePruningStepsAndLogsSummaries_CustomTrainingLoop():
    import tensorflow as tf

    log_dir = tempfile.mkdtemp()
    pruned_model, loss, optimizer, x_train, y_train = _pruned_model_setup(custom_training_loop=True)
    unused_arg = -1
    step_callback = pruning_callbacks.UpdatePruningStep()
    log_callback = pruning_callbacks.PruningSummaries(log_dir=log_dir)
    step_callback.set_model(pruned_model)
    log_callback.set_model(pruned_model)
    pruned_model.optimizer = optimizer

    step_callback.on_train_begin()
    for _ in range(3):
        log_callback.on_epoch_begin(epoch=unused_arg)
        # only one batch given batch_size = 20 and input shape.
        step_callback.on_train_batch_begin(batch=unused_arg)
        inp = np.reshape(x_train, [_BATCH_SIZE, 10])  # original shape: from [10].
        with tf.GradientTape() as tape:
            logits = pruned_model(inp, training=True)
            loss_value = loss(y_train, logits)
            grads = tape.gradient(loss_value, pruned_model.trainable_variables)
            optimizer.apply_gradients(zip(grads, pruned_model.trainable_variables))
        step_callback.on_epoch_end(batch=unused_arg)

    assert 3 == get_value(pruned_model.layers[0].pruning_step)
    assert 3 == get_value(pruned_model.layers[1].pruning_step)
    _assertLogsExist(log_dir)


def testUpdatePruningStepsAndLogsSummaries_RunInference():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(custom_training_loop=True)
    model_output = pruned_model(x_train)
    del model_output
    assert -1 == get_value(pruned_model.layers[0].pruning_step)
    assert -1 == get_value(pruned_model.layers[1].pruning_step)


@pytest.mark.filterwarnings("ignore:PruneLowMagnitude is training without")
@pytest.mark.xfail(strict=True, reason=DIFFERENCE)
def testPruneTrainingRaisesError_PruningStepCallbackMissing():
    pruned_model, x_train, y_train = _pruned_model_setup()
    # Throws an error since UpdatePruningStep is missing.
    with pytest.raises(Exception):  # tfmot: tf.errors.InvalidArgumentError
        pruned_model.fit(x_train, y_train)


@pytest.mark.filterwarnings("ignore:PruneLowMagnitude is training without")
@pytest.mark.xfail(strict=True, reason=DIFFERENCE)
def testPruneTrainingLoopRaisesError_PruningStepCallbackMissing_CustomTrainingLoop():
    pruned_model, _, _, x_train, _ = _pruned_model_setup(custom_training_loop=True)
    # Throws an error since UpdatePruningStep is missing.
    with pytest.raises(Exception):  # tfmot: tf.errors.InvalidArgumentError
        inp = np.reshape(x_train, [_BATCH_SIZE, 10])  # original shape: [10].
        pruned_model(inp, training=True)


def testPruningSummariesRaisesError_LogDirNotNonEmptyString():
    with pytest.raises(ValueError):
        pruning_callbacks.PruningSummaries(log_dir="")
    with pytest.raises(ValueError):
        pruning_callbacks.PruningSummaries(log_dir=None)
    with pytest.raises(ValueError):
        pruning_callbacks.PruningSummaries(log_dir=object())
