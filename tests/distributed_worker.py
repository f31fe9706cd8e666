"""Runs in its own process: two logical CPU devices must exist before the backend starts.

    python tests/distributed_worker.py mirrored        # TF, tf.distribute.MirroredStrategy
    python tests/distributed_worker.py data-parallel   # JAX, keras.distribution.DataParallel
    python tests/distributed_worker.py cli-mirrored|cli-data-parallel   # the main job
    python tests/distributed_worker.py cap-mirrored|cap-data-parallel   # penalty_grad_cap

Prints one JSON line (prefixed "RESULT ") that tests/test_distributed.py checks.
"""

import contextlib
import json
import os
import sys

MODE = sys.argv[1]
BACKEND = "tensorflow" if MODE.endswith("mirrored") else "jax"
os.environ["KERAS_BACKEND"] = BACKEND
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if BACKEND == "jax":
    flags = os.environ.get("XLA_FLAGS", "")  # the test session's, kept
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()
else:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning  # noqa: E402
from keras_cka_sr.models import feature_model  # noqa: E402

TAPS = ["c1", "c2", "c3"]


class Head(keras.layers.Layer):
    """A composite layer (two Dense sublayers, one node): pruned through its sublayers."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.out = keras.layers.Dense(3, name="out")

    def build(self, input_shape):
        self.hidden.build(input_shape)
        self.out.build((*input_shape[:-1], 8))

    def call(self, x):
        return self.out(self.hidden(x))


def small_cnn():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, Head(name="head")(x))


def data(n):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8, 8, 1)).astype("float32")
    return x, ((x.mean(axis=(1, 2, 3)) > 0).astype("int32") + (x[:, 0, 0, 0] > 1))


def build(weight=1e-2, num_samples=8, lr=0.05, cap=None):
    """Pruned + CKA-SR model, compiled; call inside the distribution's scope."""
    keras.utils.set_random_seed(0)
    schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 8, frequency=2)
    pruned = pruning.prune_low_magnitude(small_cnn(), schedule)
    loss = CKASimilarityLoss(weight, num_samples=num_samples)
    model = attach_cka_loss(pruned, TAPS, loss, penalty_grad_cap=cap)
    model.compile(
        keras.optimizers.SGD(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def fit(model, x, y, epochs):
    """Fit in batches of 16, in order, with the pruning callback; returns the history dict."""
    callbacks = [pruning.UpdatePruningStep()]
    return model.fit(
        x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks
    ).history


def penalty(model, x, loss):
    """The penalty of `loss` on the tapped outputs of `model` for batch `x`, undistributed."""
    probe = feature_model(model, TAPS)
    return float(ops.convert_to_numpy(loss([ops.convert_to_tensor(f) for f in probe(x)])))


def replica_values(variable):
    """The per-replica values of a Keras variable under tf.distribute."""
    return [np.asarray(v.numpy()) for v in variable.value.values]


def mirrored():
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    x, y = data(68)  # global batches of 16 (8 per replica), then 4 (2 per replica: skipped)
    with strategy.scope():
        model = build()
        # One step with lr 0 on a batch of 16: each replica's penalty is on its 8 samples.
        probe = build(weight=1.0, num_samples=None, lr=0.0)
        first = fit(probe, x[:16], y[:16], epochs=1)["cka_sr"][0]
        history = fit(model, x, y, epochs=3)
    full = CKASimilarityLoss(1.0)
    wrappers = pruning.collect_prunable_layers(model)
    return {
        "replicas": strategy.num_replicas_in_sync,
        "mask_names": [m.name for w in wrappers for m in w.masks],
        "cka_sr": history["cka_sr"],
        "loss": history["loss"],
        "masks_identical_on_replicas": all(
            all(np.array_equal(v[0], other) for other in v[1:])
            for w in wrappers
            for v in map(replica_values, w.masks)
        ),
        "sparsity": float(
            np.mean([1.0 - np.mean(replica_values(m)[0]) for w in wrappers for m in w.masks])
        ),
        "weights_finite": all(np.all(np.isfinite(ops.convert_to_numpy(w))) for w in model.weights),
        "first_step_penalty": first,
        "per_replica_expected": 0.5 * (penalty(probe, x[:8], full) + penalty(probe, x[8:16], full)),
        "global_batch_value": penalty(probe, x[:16], full),
    }


def data_parallel():
    import jax

    x, y = data(68)
    results = {}
    for name, scope in (
        ("single", contextlib.nullcontext()),
        ("distributed", keras.distribution.DataParallel(devices=jax.devices()).scope()),
    ):
        with scope:
            model = build()
            history = fit(model, x, y, epochs=3)
            model(x[:16], training=True)
        layer = model.get_layer("cka_regularization")
        results[name] = {
            "history": {k: [float(v) for v in vs] for k, vs in history.items()},
            "penalty": float(ops.convert_to_numpy(layer.last_penalty)),
            "masks": [
                ops.convert_to_numpy(m).tolist()
                for w in pruning.collect_prunable_layers(model)
                for m in w.masks
            ],
        }
    results["devices"] = len(jax.devices())
    return results


def capped(scope):
    """Fits with no cap, a cap too large to bind and a binding cap under `scope`."""
    x, y = data(68)
    results = {}
    for name, cap in (("none", None), ("large", 1e9), ("binding", 0.01)):
        with scope():
            model = build(weight=1.0, cap=cap)
            history = fit(model, x, y, epochs=1)
        results[name] = {
            "history": {k: [float(v) for v in vs] for k, vs in history.items()},
            "weights": [ops.convert_to_numpy(w).tolist() for w in model.trainable_weights],
        }
    return results


def cap_scope():
    if BACKEND == "jax":
        import jax

        return keras.distribution.DataParallel(devices=jax.devices()).scope()
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope()


def cli(distribute):
    from keras_cka_sr.app import cli as main_job

    status = main_job.main(
        [
            "train",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "--method",
            "dense",
            "--subset",
            "300",
            "--seeds",
            "0",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--compare",
            "--cka-every",
            "1",
            "--verbose",
            "0",
            "--distribute",
            distribute,
            "--output",
            sys.argv[2],
        ]
    )
    return {"status": status}


if __name__ == "__main__":
    if MODE == "mirrored":
        result = mirrored()
    elif MODE == "data-parallel":
        result = data_parallel()
    elif MODE.startswith("cap-"):
        result = capped(cap_scope)
    else:
        result = cli(MODE[len("cli-") :])
    print("RESULT " + json.dumps(result), flush=True)
