"""One worker of a two-process JAX run on this machine (loopback only), or the one-process
reference run; tests/test_multiprocess.py starts it.

    python tests/multiprocess_worker.py OUT_DIR PROCESS_ID NUM_PROCESSES PORT [KILL_AT_STEP]

Every process trains the same pruned model with CKA-SR attached, under
`keras.distribution.DataParallel` over all processes' devices, on global batches of 16 (each
process feeds its own 16 / NUM_PROCESSES samples of every batch), with
`keras.callbacks.BackupAndRestore` in OUT_DIR/backup-PROCESS_ID: a restarted worker resumes
from its last epoch's backup. KILL_AT_STEP: the process SIGKILLs itself when that global
training step begins (a worker lost mid-epoch). At the end it writes OUT_DIR/PROCESS_ID.json:
the fit history, the masks, the weights, the pruning step and CKA-SR's step.
"""

import json
import os
import signal
import sys

OUT, PROCESS, PROCESSES, PORT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
KILL_AT_STEP = int(sys.argv[5]) if len(sys.argv) > 5 else None
os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402

if PROCESSES > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{PORT}",
        num_processes=PROCESSES,
        process_id=PROCESS,
        initialization_timeout=60,
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning  # noqa: E402

GLOBAL_BATCH, STEPS_PER_EPOCH, EPOCHS = 16, 4, 4
TAPS = ["prune_low_magnitude_c1", "prune_low_magnitude_c2", "prune_low_magnitude_c3"]


def small_cnn():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="tanh", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(x))


def my_share():
    """This process's samples of every global batch, in order."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS_PER_EPOCH, 8, 8, 1)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int32") + (x[:, 0, 0, 0] > 1)
    local = GLOBAL_BATCH // PROCESSES
    rows = slice(PROCESS * local, (PROCESS + 1) * local)
    x = x.reshape(STEPS_PER_EPOCH, GLOBAL_BATCH, 8, 8, 1)[:, rows].reshape(-1, 8, 8, 1)
    y = y.reshape(STEPS_PER_EPOCH, GLOBAL_BATCH)[:, rows].reshape(-1)
    return x, y, local


class KillAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.seen + 1 == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1


def main():
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    keras.utils.set_random_seed(0)
    schedule = pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=12, frequency=2)
    model = pruning.prune_low_magnitude(small_cnn(), schedule)
    trained = attach_cka_loss(model, TAPS, CKASimilarityLoss(1e-2, num_samples=8))
    trained.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y, local = my_share()
    backup = keras.callbacks.BackupAndRestore(os.path.join(OUT, f"backup-{PROCESS}"))
    callbacks = [pruning.UpdatePruningStep(), backup]
    if KILL_AT_STEP is not None:
        # Counts the steps of this start: a restarted run resumes at its backup's epoch.
        callbacks.append(KillAt(KILL_AT_STEP))
    history = trained.fit(
        x, y, batch_size=local, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=callbacks
    )
    wrappers = pruning.collect_prunable_layers(model)
    [cka_layer] = trained.cka_layers()
    result = {
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "masks": [np.asarray(w.masks[0]).tolist() for w in wrappers],
        "weights": [np.asarray(v).tolist() for v in model.weights],
        "pruning_step": [int(np.asarray(w.pruning_step)) for w in wrappers],
        "cka_step": int(np.asarray(cka_layer.step)),
        "devices": len(jax.devices()),
    }
    with open(os.path.join(OUT, f"{PROCESS}.json"), "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main()
