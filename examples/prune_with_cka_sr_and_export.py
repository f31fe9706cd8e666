"""Gradual magnitude pruning to 90% sparsity with CKA-SR, then strip and export.

KERAS_BACKEND=jax python examples/prune_with_cka_sr_and_export.py --export /tmp/lenet_sparse
"""

import argparse
import math

import keras
import numpy as np

import keras_cka_sr
from keras_cka_sr import pruning
from keras_cka_sr.app import datasets, zoo


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--export", default=None, help="SavedModel folder (TF or JAX backend)")
    args = parser.parse_args(argv)
    data = datasets.load("mnist5k")
    x, y = data.x_train[: args.subset], data.y_train[: args.subset]

    model = zoo.lenet5()
    steps = math.ceil(len(x) / 64) * args.epochs
    schedule = pruning.PolynomialDecay(
        0.0, 0.9, begin_step=0, end_step=int(0.7 * steps), frequency=10
    )
    pruned = pruning.prune_low_magnitude(model, pruning_schedule=schedule)
    # Pruned layers are tapped by their original names.
    trained = keras_cka_sr.attach_cka_loss(
        pruned, zoo.tap_groups(model), keras_cka_sr.CKASimilarityLoss(weight=1e-3)
    )
    trained.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    trained.fit(
        x, y, epochs=args.epochs, batch_size=64, verbose=2, callbacks=[pruning.UpdatePruningStep()]
    )

    final = pruning.strip_pruning(pruned)
    kernels = [
        final.get_layer(n).kernel
        for n in ("tap_conv1", "tap_conv2", "tap_fc1", "tap_fc2", "logits")
    ]
    sparsity = {k.path: float(np.mean(keras.ops.convert_to_numpy(k) == 0)) for k in kernels}
    for path, value in sparsity.items():
        print(f"{path}: sparsity {value:.3f}")
    final.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    accuracy = final.evaluate(data.x_test, data.y_test, verbose=0)[1]
    print("test accuracy:", accuracy)
    result = {
        "model": final,
        "sparsity": sparsity,
        "test_accuracy": accuracy,
        "export_matches": None,
    }
    if args.export:
        final.export(args.export, format="tf_saved_model")
        import tensorflow as tf

        reloaded = tf.saved_model.load(args.export)  # keep a reference: it owns the variables
        served = reloaded.serve(tf.constant(data.x_test[:8]))
        result["export_matches"] = bool(
            np.allclose(served.numpy(), final.predict(data.x_test[:8], verbose=0), atol=1e-4)
        )
        print("SavedModel matches Keras:", result["export_matches"])
    return result


if __name__ == "__main__":
    main()
