"""tfmot's "Pruning comprehensive guide", on Keras 3 with `keras_cka_sr.pruning`.

Each part of the guide (tensorflow_model_optimization/g3doc/guide/pruning/
comprehensive_guide.ipynb) is a function below, with tfmot's import changed; the data
is the embedded MNIST-5k instead of the guide's random (1, 20) batch, so the base model
starts with a `Flatten`. Added parts, for what Keras 3 users ask: pruning inside a
subclassed model, a custom training loop on JAX (`stateless_call` + `jax.grad`) and on
torch besides TF's `GradientTape`, and prune-then-quantize with Keras 3's int8
`model.quantize` (TFLite post-training quantization is in `pruning_in_keras.py`). Each
part checks its result and the script fails if one does not hold.

    KERAS_BACKEND=jax python examples/pruning_comprehensive_guide.py
"""

import argparse
import os
import tempfile
import zipfile

import keras
import numpy as np

from keras_cka_sr import pruning as sparsity  # was: tfmot.sparsity.keras
from keras_cka_sr.app import datasets

BACKEND = keras.backend.backend()


def setup_model():
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(20, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def compile_model(model):
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer="adam",
        metrics=["accuracy"],
    )
    return model


def setup_pretrained_weights(x_train, y_train):
    model = compile_model(setup_model())
    model.fit(x_train, y_train, verbose=0)
    pretrained_weights = os.path.join(tempfile.mkdtemp(), "pretrained.weights.h5")
    model.save_weights(pretrained_weights)  # Keras 3: `.weights.h5` (tfmot: a `.tf` checkpoint)
    return pretrained_weights


def get_gzipped_model_size(model):
    """Bytes of the zipped `.h5` file of `model`, as the guide measures it."""
    keras_file = os.path.join(tempfile.mkdtemp(), "model.h5")
    model.save(keras_file, include_optimizer=False)
    zipped_file = keras_file + ".zip"
    with zipfile.ZipFile(zipped_file, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(keras_file)
    return os.path.getsize(zipped_file)


def sparsities(model):
    """Fraction of zeros of each pruned weight (wrappers' masked weights)."""
    return {
        w.path: float(1.0 - np.count_nonzero(keras.ops.convert_to_numpy(w)) / np.prod(w.shape))
        for layer in sparsity.collect_prunable_layers(model)
        for w in layer.get_prunable_weights()
    }


def schedule(steps, target=0.5):
    # The guide uses the default schedule, ConstantSparsity(0.5, 0, frequency=100); at the
    # tiny step counts of a test that would not prune, so prune every step.
    return sparsity.ConstantSparsity(target, 0, frequency=1) if steps < 100 else None


# The guide's parts ------------------------------------------------------------------------


def prune_whole_model(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)  # optional but recommended.
    model_for_pruning = sparsity.prune_low_magnitude(base_model)
    model_for_pruning.summary()
    return len(sparsity.collect_prunable_layers(model_for_pruning)) == 2


def prune_some_layers_with_clone_model(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)

    # Helper function uses `prune_low_magnitude` to make only the Dense layers train with
    # pruning (here: only the first, to show a partial model).
    def apply_pruning_to_dense(layer):
        if isinstance(layer, keras.layers.Dense) and layer.units == 20:
            return sparsity.prune_low_magnitude(layer)
        return layer

    model_for_pruning = keras.models.clone_model(base_model, clone_function=apply_pruning_to_dense)
    model_for_pruning.summary()
    print(base_model.layers[0].name)
    wrapped = sparsity.collect_prunable_layers(model_for_pruning)
    x = np.random.default_rng(0).random((4, 28, 28, 1)).astype("float32")
    same = np.allclose(base_model.predict(x, verbose=0), model_for_pruning.predict(x, verbose=0))
    return len(wrapped) == 1 and wrapped[0].layer.units == 20 and same


def prune_layers_in_functional_and_sequential():
    i = keras.Input(shape=(20,))
    x = sparsity.prune_low_magnitude(keras.layers.Dense(10))(i)
    o = keras.layers.Flatten()(x)
    functional = keras.Model(inputs=i, outputs=o)
    functional.summary()
    sequential = keras.Sequential(
        [
            sparsity.prune_low_magnitude(keras.layers.Dense(20, input_shape=[20])),
            keras.layers.Flatten(),
        ]
    )
    sequential.summary()
    return sequential.built and len(sparsity.collect_prunable_layers(functional)) == 1


class MyDenseLayer(keras.layers.Dense, sparsity.PrunableLayer):
    def get_prunable_weights(self):
        # Prune bias also, though that usually harms model accuracy too much.
        return [self.kernel, self.bias]


def custom_prunable_layer(x_train, y_train, steps):
    model_for_pruning = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Flatten(),
            sparsity.prune_low_magnitude(MyDenseLayer(20), pruning_schedule=schedule(steps)),
            keras.layers.Dense(10),
        ]
    )
    compile_model(model_for_pruning).fit(
        x_train, y_train, callbacks=[sparsity.UpdatePruningStep()], verbose=0
    )
    found = sparsities(model_for_pruning)
    return len(found) == 2 and all(abs(s - 0.5) < 0.05 for s in found.values())


def train_with_fit(pretrained_weights, x_train, y_train, epochs, steps):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = sparsity.prune_low_magnitude(base_model, pruning_schedule=schedule(steps))
    callbacks = [sparsity.UpdatePruningStep()]
    log_dir = tempfile.mkdtemp()
    if _has_tensorflow():  # TensorBoard's writer is TensorFlow's
        # Log sparsity and other metrics in Tensorboard.
        callbacks.append(sparsity.PruningSummaries(log_dir=log_dir))
    compile_model(model_for_pruning)
    model_for_pruning.fit(x_train, y_train, callbacks=callbacks, epochs=epochs, verbose=0)
    return all(abs(s - 0.5) < 0.01 for s in sparsities(model_for_pruning).values())


def custom_training_loop(pretrained_weights, x_train, y_train, epochs, steps):
    """The guide's loop on TF's GradientTape, and the same loop on JAX and torch."""
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = sparsity.prune_low_magnitude(base_model, pruning_schedule=schedule(steps))
    model_for_pruning.build((None, 28, 28, 1))

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam()
    optimizer.build(model_for_pruning.trainable_variables)
    unused_arg = -1
    batch_size = 32
    batches = len(x_train) // batch_size

    model_for_pruning.optimizer = optimizer
    step_callback = sparsity.UpdatePruningStep()
    step_callback.set_model(model_for_pruning)

    step_callback.on_train_begin()  # run pruning callback
    for _ in range(epochs):
        for b in range(batches):
            step_callback.on_train_batch_begin(batch=unused_arg)  # run pruning callback
            xb = x_train[b * batch_size : (b + 1) * batch_size]
            yb = y_train[b * batch_size : (b + 1) * batch_size]
            TRAIN_STEP[BACKEND](model_for_pruning, loss, optimizer, xb, yb)
        step_callback.on_epoch_end(batch=unused_arg)  # run pruning callback
    found = sparsities(model_for_pruning)
    step = int(
        keras.ops.convert_to_numpy(
            sparsity.collect_prunable_layers(model_for_pruning)[0].pruning_step
        )
    )
    return step == epochs * batches and all(abs(s - 0.5) < 0.01 for s in found.values())


def _tensorflow_step(model, loss, optimizer, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss_value = loss(y, logits)
    grads = tape.gradient(loss_value, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))


def _jax_step(model, loss, optimizer, x, y):
    """`stateless_call` + `jax.grad`: the masks and pruning step the wrapper updates come
    back as non-trainable values, written back with the new weights."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def compute_loss(trainable, non_trainable):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss(y, logits), non_trainable

    grads, non_trainable = jax.grad(compute_loss, has_aux=True)(trainable, non_trainable)
    trainable, optimizer_variables = optimizer.stateless_apply(
        [v.value for v in optimizer.variables], grads, trainable
    )
    for variable, value in zip(model.trainable_variables, trainable):
        variable.assign(value)
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        variable.assign(value)
    for variable, value in zip(optimizer.variables, optimizer_variables):
        variable.assign(value)


def _torch_step(model, loss, optimizer, x, y):
    import torch

    logits = model(x, training=True)
    loss_value = loss(y, logits)
    model.zero_grad()
    loss_value.backward()
    grads = [v.value.grad for v in model.trainable_variables]
    with torch.no_grad():
        optimizer.apply(grads, model.trainable_variables)


TRAIN_STEP = {"tensorflow": _tensorflow_step, "jax": _jax_step, "torch": _torch_step}


def checkpoint_and_resume(pretrained_weights, x_train, y_train, epochs):
    """Save mid-pruning (optimizer included), load, go on: the pruning step continues and
    the result is the uninterrupted run's."""
    steps_per_epoch = int(np.ceil(len(x_train) / 32))
    total = steps_per_epoch * (epochs + 1)
    params = {"pruning_schedule": sparsity.PolynomialDecay(0.2, 0.8, 0, total, frequency=1)}

    def fresh():
        base_model = setup_model()
        base_model.load_weights(pretrained_weights)
        return compile_model(sparsity.prune_low_magnitude(base_model, **params))

    keras.utils.set_random_seed(1)
    uninterrupted = fresh()
    uninterrupted.fit(
        x_train,
        y_train,
        epochs=epochs + 1,
        shuffle=False,
        callbacks=[sparsity.UpdatePruningStep()],
        verbose=0,
    )

    keras.utils.set_random_seed(1)
    model_for_pruning = fresh()
    model_for_pruning.fit(
        x_train,
        y_train,
        epochs=1,
        shuffle=False,
        callbacks=[sparsity.UpdatePruningStep()],
        verbose=0,
    )
    # Checkpoint: saving the optimizer is necessary (the default).
    keras_model_file = os.path.join(tempfile.mkdtemp(), "pruning.keras")  # Keras 3: `.keras`
    model_for_pruning.save(keras_model_file)
    # Deserialize model.
    with sparsity.prune_scope():  # not needed here (the classes are registered); kept as tfmot
        loaded_model = keras.models.load_model(keras_model_file)
    loaded_model.fit(
        x_train,
        y_train,
        initial_epoch=1,
        epochs=epochs + 1,
        shuffle=False,
        callbacks=[sparsity.UpdatePruningStep()],
        verbose=0,
    )
    step = int(
        keras.ops.convert_to_numpy(sparsity.collect_prunable_layers(loaded_model)[0].pruning_step)
    )
    same = all(
        np.allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)
        for a, b in zip(uninterrupted.weights, loaded_model.weights)
    )
    return step == total and same


def strip_for_export(pretrained_weights):
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    model_for_pruning = sparsity.prune_low_magnitude(base_model)
    # Typically you train the model here.
    model_for_export = sparsity.strip_pruning(model_for_pruning)
    print("final model")
    model_for_export.summary()
    with_wrappers = get_gzipped_model_size(model_for_pruning)
    stripped = get_gzipped_model_size(model_for_export)
    print("Size of gzipped pruned model without stripping: %.2f bytes" % with_wrappers)
    print("Size of gzipped pruned model with stripping: %.2f bytes" % stripped)
    return stripped < with_wrappers and not sparsity.collect_prunable_layers(model_for_export)


def block_sparsity():
    base_model = setup_model()
    # For using intrinsics on a CPU with 128-bit registers, together with 8-bit quantized
    # weights, a 1x16 block size is nice because the block perfectly fits into the register.
    pruning_params = {"block_size": [1, 16]}
    model_for_pruning = sparsity.prune_low_magnitude(base_model, **pruning_params)
    model_for_pruning.summary()
    return all(w.block_size == (1, 16) for w in sparsity.collect_prunable_layers(model_for_pruning))


class PrunedMLP(keras.Model):
    """A subclassed model: `prune_low_magnitude` wraps its layers where they are made
    (tfmot cannot prune a subclassed model from outside; neither can we)."""

    def __init__(self, pruning_schedule=None, **kwargs):
        super().__init__(**kwargs)
        self.flatten = keras.layers.Flatten()
        self.hidden = sparsity.prune_low_magnitude(
            keras.layers.Dense(20, activation="relu"), pruning_schedule=pruning_schedule
        )
        self.out = sparsity.prune_low_magnitude(
            keras.layers.Dense(10), pruning_schedule=pruning_schedule
        )

    def call(self, x, training=False):
        return self.out(self.hidden(self.flatten(x), training=training), training=training)


def subclassed_model(x_train, y_train, steps):
    model = compile_model(PrunedMLP(pruning_schedule=schedule(steps)))
    model.fit(x_train, y_train, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    return len(sparsities(model)) == 2 and all(
        abs(s - 0.5) < 0.01 for s in sparsities(model).values()
    )


def prune_then_quantize(pretrained_weights, x_train, y_train, x_test, y_test, steps):
    """Prune, strip, then quantize with Keras 3's int8 `quantize`, which keeps the zeros
    (0 maps to 0). TFLite post-training quantization: `examples/pruning_in_keras.py`."""
    base_model = setup_model()
    base_model.load_weights(pretrained_weights)
    pruned = compile_model(
        sparsity.prune_low_magnitude(base_model, pruning_schedule=schedule(steps))
    )
    pruned.fit(x_train, y_train, callbacks=[sparsity.UpdatePruningStep()], verbose=0)
    stripped = sparsity.strip_pruning(pruned)
    float_logits = stripped.predict(x_test, verbose=0)
    zeros = [
        int(np.count_nonzero(keras.ops.convert_to_numpy(layer.kernel) == 0))
        for layer in stripped.layers[1:]
    ]
    stripped.quantize("int8")
    int8_zeros = [
        int(np.count_nonzero(keras.ops.convert_to_numpy(layer.kernel) == 0))  # now int8
        for layer in stripped.layers[1:]
    ]
    int8_logits = stripped.predict(x_test, verbose=0)
    agreement = float(np.mean(np.argmax(int8_logits, 1) == np.argmax(float_logits, 1)))
    print(f"int8 kernels keep the zeros: {zeros} -> {int8_zeros}; top-1 agreement {agreement:.3f}")
    ok = all(b >= a for a, b in zip(zeros, int8_zeros)) and agreement > 0.9
    return ok


def _has_tensorflow():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=None, help="first N training digits")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    data = datasets.load("mnist5k")
    x_train, y_train = data.x_train[: args.subset], data.y_train[: args.subset]
    steps = int(np.ceil(len(x_train) / 32))

    pretrained_weights = setup_pretrained_weights(x_train, y_train)
    results = {
        "prune_whole_model": prune_whole_model(pretrained_weights),
        "prune_some_layers_with_clone_model": prune_some_layers_with_clone_model(
            pretrained_weights
        ),
        "prune_layers_in_functional_and_sequential": prune_layers_in_functional_and_sequential(),
        "custom_prunable_layer": custom_prunable_layer(x_train, y_train, steps),
        "train_with_fit": train_with_fit(pretrained_weights, x_train, y_train, args.epochs, steps),
        f"custom_training_loop_{BACKEND}": custom_training_loop(
            pretrained_weights, x_train, y_train, args.epochs, steps
        ),
        "checkpoint_and_resume": checkpoint_and_resume(
            pretrained_weights, x_train, y_train, args.epochs
        ),
        "strip_for_export": strip_for_export(pretrained_weights),
        "block_sparsity": block_sparsity(),
        "subclassed_model": subclassed_model(x_train, y_train, steps),
        "prune_then_quantize": prune_then_quantize(
            pretrained_weights, x_train, y_train, data.x_test, data.y_test, steps
        ),
    }
    for part, ok in results.items():
        print(f"{part:45s} {'ok' if ok else 'FAILED'}")
    if not all(results.values()):
        raise SystemExit("Some parts of the guide failed (above).")
    return results


if __name__ == "__main__":
    main()
