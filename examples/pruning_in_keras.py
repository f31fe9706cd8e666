"""tfmot's "Pruning in Keras example", on Keras 3 with `keras_cka_sr.pruning`.

The tutorial's code (tensorflow_model_optimization/g3doc/guide/pruning/
pruning_with_keras.ipynb) with the import changed, on the embedded MNIST-5k (4500 training
and 1000 test digits) instead of a download. Changes Keras 3 needs are marked `# Keras 3:`.
It trains a small CNN, prunes it from 50% to 80% sparsity, strips the wrappers, compares
gzipped sizes, converts to TFLite (with and without post-training quantization) and
checks that TFLite's test accuracy equals Keras'. The figures in docs/deploying.md come
from this script:

    KERAS_BACKEND=tensorflow python examples/pruning_in_keras.py \
        --output benchmarks/results/deploy_mnist5k_tensorflow.json
    KERAS_BACKEND=jax python examples/pruning_in_keras.py \
        --output benchmarks/results/deploy_mnist5k_jax.json

TFLite needs TensorFlow, and a SavedModel export the TF or JAX backend (not torch: there
the script stops after the Keras part and says so).
"""

import argparse
import json
import os
import tempfile
import warnings
import zipfile

import keras
import numpy as np

from keras_cka_sr import pruning as sparsity  # was: tfmot.sparsity.keras
from keras_cka_sr.app import datasets


def get_gzipped_model_size(file):
    """Size of the zipped (deflate) file, in bytes, as the tutorial measures it."""
    _, zipped_file = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(zipped_file, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(file)
    return os.path.getsize(zipped_file)


def to_tflite(model, quantize=False):
    """TFLite flatbuffer of a Keras 3 model: `model.export` writes a SavedModel (from the
    TF or JAX backend), `TFLiteConverter.from_saved_model` converts it."""
    import tensorflow as tf

    # Keras 3: `TFLiteConverter.from_keras_model` is for tf_keras models.
    saved_model = tempfile.mkdtemp()
    model.export(saved_model, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def evaluate_model(tflite_model, test_images, test_labels):
    """The tutorial's `evaluate_model`: one image at a time through the TFLite interpreter."""
    import tensorflow as tf

    with warnings.catch_warnings():  # TF's notice that LiteRT will replace tf.lite.Interpreter
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_content=tflite_model)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    prediction_digits = []
    for test_image in test_images:
        test_image = np.expand_dims(test_image, axis=0).astype(np.float32)
        interpreter.set_tensor(input_index, test_image)
        interpreter.invoke()
        output = interpreter.tensor(output_index)
        prediction_digits.append(np.argmax(output()[0]))
    return float((np.array(prediction_digits) == test_labels).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="baseline epochs (tutorial: 4)")
    parser.add_argument("--prune-epochs", type=int, default=2, help="pruning epochs (tutorial: 2)")
    parser.add_argument(
        "--frequency",
        type=int,
        default=10,
        help="pruning frequency in steps (tutorial: 100 on MNIST's 60000 digits; MNIST-5k has "
        "32 steps per epoch, so 100 would never prune)",
    )
    parser.add_argument("--subset", type=int, default=None, help="first N training digits")
    parser.add_argument("--output", default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    data = datasets.load("mnist5k")  # was: tf.keras.datasets.mnist.load_data()
    train_images, train_labels = data.x_train[: args.subset, ..., 0], data.y_train[: args.subset]
    test_images, test_labels = data.x_test[..., 0], data.y_test  # already in [0, 1]

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),  # Keras 3: was InputLayer(input_shape=(28, 28))
            keras.layers.Reshape(target_shape=(28, 28, 1)),
            keras.layers.Conv2D(filters=12, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(train_images, train_labels, epochs=args.epochs, validation_split=0.1, verbose=2)
    _, baseline_model_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    print("Baseline test accuracy:", baseline_model_accuracy)
    keras_file = os.path.join(tempfile.mkdtemp(), "baseline.h5")
    keras.models.save_model(model, keras_file, include_optimizer=False)

    prune_low_magnitude = sparsity.prune_low_magnitude
    batch_size = 128
    epochs = args.prune_epochs
    validation_split = 0.1
    num_images = train_images.shape[0] * (1 - validation_split)
    end_step = np.ceil(num_images / batch_size).astype(np.int32) * epochs
    pruning_params = {
        "pruning_schedule": sparsity.PolynomialDecay(
            initial_sparsity=0.50,
            final_sparsity=0.80,
            begin_step=0,
            end_step=end_step,
            frequency=args.frequency,  # MNIST-5k: see --frequency
        )
    }
    model_for_pruning = prune_low_magnitude(model, **pruning_params)
    model_for_pruning.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    logdir = tempfile.mkdtemp()
    callbacks = [sparsity.UpdatePruningStep()]
    if keras.backend.backend() == "tensorflow":  # Keras 3: TensorBoard writes with TF
        callbacks.append(sparsity.PruningSummaries(log_dir=logdir))
    model_for_pruning.fit(
        train_images,
        train_labels,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=validation_split,
        callbacks=callbacks,
        verbose=2,
    )
    _, model_for_pruning_accuracy = model_for_pruning.evaluate(test_images, test_labels, verbose=0)
    print("Baseline test accuracy:", baseline_model_accuracy)
    print("Pruned test accuracy:", model_for_pruning_accuracy)

    model_for_export = sparsity.strip_pruning(model_for_pruning)
    pruned_keras_file = os.path.join(tempfile.mkdtemp(), "pruned.h5")
    keras.models.save_model(model_for_export, pruned_keras_file, include_optimizer=False)
    kernels = {
        w.path: float(1.0 - np.count_nonzero(keras.ops.convert_to_numpy(w)) / np.prod(w.shape))
        for w in model_for_export.weights
        if w.path.endswith("kernel")
    }
    results = {
        "backend": keras.backend.backend(),
        "train_images": int(len(train_images)),
        "test_images": int(len(test_images)),
        "epochs": args.epochs,
        "prune_epochs": epochs,
        "frequency": args.frequency,
        "baseline_accuracy": float(baseline_model_accuracy),
        "pruned_accuracy": float(model_for_pruning_accuracy),
        "kernel_sparsity": kernels,
        "gzip_bytes": {
            "baseline_keras": get_gzipped_model_size(keras_file),
            "pruned_keras": get_gzipped_model_size(pruned_keras_file),
        },
    }
    print(
        "Size of gzipped baseline Keras model: %.2f bytes" % results["gzip_bytes"]["baseline_keras"]
    )
    print("Size of gzipped pruned Keras model: %.2f bytes" % results["gzip_bytes"]["pruned_keras"])

    if keras.backend.backend() == "torch":
        print("TFLite: not run (a SavedModel export needs the TF or JAX backend).")
    else:
        stripped_accuracy = float(
            np.mean(
                np.argmax(model_for_export.predict(test_images, verbose=0), axis=1) == test_labels
            )
        )
        tflite_files = {}
        for name, quantize in (("pruned_tflite", False), ("pruned_quantized_tflite", True)):
            content = to_tflite(model_for_export, quantize=quantize)
            path = os.path.join(tempfile.mkdtemp(), f"{name}.tflite")
            with open(path, "wb") as f:
                f.write(content)
            tflite_files[name] = content
            results["gzip_bytes"][name] = get_gzipped_model_size(path)
            results[f"{name}_accuracy"] = evaluate_model(content, test_images, test_labels)
        results["stripped_keras_accuracy"] = stripped_accuracy
        print(
            "Size of gzipped pruned TFlite model: %.2f bytes"
            % results["gzip_bytes"]["pruned_tflite"]
        )
        print(
            "Size of gzipped pruned and quantized TFlite model: %.2f bytes"
            % results["gzip_bytes"]["pruned_quantized_tflite"]
        )
        print("Pruned TFLite test accuracy:", results["pruned_tflite_accuracy"])
        print(
            "Pruned and quantized TFLite test accuracy:",
            results["pruned_quantized_tflite_accuracy"],
        )
        print("Pruned Keras test accuracy (stripped model):", stripped_accuracy)

    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
