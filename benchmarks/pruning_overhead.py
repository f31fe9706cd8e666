"""Train-step time of one small CNN: (a) plain Keras 3, (b) our pruning wrapper,
(c) tfmot on tf_keras — measured in one process, printed as ratios to (a).

(c) needs tf_keras and tensorflow-model-optimization (the `test` extra); it always runs
on TensorFlow, whatever `--backend` Keras 3 uses. Goal: (b) no slower than (c).

    python benchmarks/pruning_overhead.py --backend tensorflow --steps 50

Steps run with `train_on_batch`, callbacks called around each as `fit` does: `fit`'s
input-pipeline thread competes for a core on 2-core machines and blurred the timings.
"""

import statistics
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402

BATCH = 64


def main(argv=None):
    p = _common.parser(__doc__, steps=50, warmup=5)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import keras
    import numpy as np

    from keras_cka_sr import pruning

    rng = np.random.default_rng(0)
    n = BATCH * max(args.steps, args.warmup)
    x = rng.normal(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n).astype("int32")

    def cnn(lib):
        L = lib.layers
        inp = lib.Input((28, 28, 1))
        h = L.Conv2D(32, 3, activation="relu")(inp)
        h = L.Conv2D(64, 3, activation="relu")(h)
        h = L.MaxPooling2D()(h)
        h = L.Flatten()(h)
        h = L.Dense(128, activation="relu")(h)
        return lib.Model(inp, L.Dense(10)(h))

    def run_step(model, callbacks, i):
        # As fit would, minus its input pipeline (tfmot's documented custom-loop pattern).
        for callback in callbacks:
            callback.on_train_batch_begin(i)
        model.train_on_batch(x[BATCH * i : BATCH * (i + 1)], y[BATCH * i : BATCH * (i + 1)])
        for callback in callbacks:
            callback.on_train_batch_end(i)

    def prepared(model, lib, callbacks):
        model.compile(
            lib.optimizers.Adam(1e-3), lib.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
        for i in range(args.warmup):
            run_step(model, callbacks, i)
        return model, callbacks

    def seconds_per_step(model, callbacks):
        start = time.perf_counter()
        for i in range(args.steps):
            run_step(model, callbacks, i)
        return (time.perf_counter() - start) / args.steps

    schedule_args = (0.0, 0.9, 0, args.steps + args.warmup, 3, 10)
    variants = {"plain_keras3": prepared(cnn(keras), keras, [])}
    ours = pruning.prune_low_magnitude(cnn(keras), pruning.PolynomialDecay(*schedule_args))
    variants["ours_keras3"] = prepared(ours, keras, [pruning.UpdatePruningStep()])
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras

        theirs = tfmot.sparsity.keras.prune_low_magnitude(
            cnn(tf_keras), pruning_schedule=tfmot.sparsity.keras.PolynomialDecay(*schedule_args)
        )
        variants["tfmot_tf_keras"] = prepared(
            theirs, tf_keras, [tfmot.sparsity.keras.UpdatePruningStep()]
        )
        variants["plain_tf_keras"] = prepared(cnn(tf_keras), tf_keras, [])
    except ImportError as error:
        print(f"tfmot not available ({error}); install the `test` extra for column (c)")
    # Interleaved rounds, medians: machine drift hits every variant alike.
    times = {k: [] for k in variants}
    for _ in range(args.rounds):
        for key, (model, callbacks) in variants.items():
            times[key].append(seconds_per_step(model, callbacks))
    results = {k: statistics.median(v) for k, v in times.items()}
    base = results["plain_keras3"]
    line = " ".join(f"{k}={1e3 * v:.2f}ms ({v / base:.2f}x)" for k, v in results.items())
    print(f"backend={args.backend} batch={BATCH} steps={args.steps}: {line}")
    if "tfmot_tf_keras" in results:
        ours_overhead = results["ours_keras3"] / results["plain_keras3"]
        tfmot_overhead = results["tfmot_tf_keras"] / results["plain_tf_keras"]
        print(
            f"ours/tfmot step time = {results['ours_keras3'] / results['tfmot_tf_keras']:.2f}x; "
            f"pruning overhead: ours {ours_overhead:.2f}x of plain Keras 3, "
            f"tfmot {tfmot_overhead:.2f}x of plain tf_keras"
        )
    # Both must really prune: the share of zero kernel entries after stripping (the
    # epoch end writes weight * mask into tfmot's weights, as fit would).
    for model, callbacks in variants.values():
        for callback in callbacks:
            callback.on_epoch_end(0)
    sparsity = {"ours_keras3": kernel_sparsity(pruning.strip_pruning(variants["ours_keras3"][0]))}
    if "tfmot_tf_keras" in variants:
        sparsity["tfmot_tf_keras"] = kernel_sparsity(
            tfmot.sparsity.keras.strip_pruning(variants["tfmot_tf_keras"][0])
        )
    print("kernel sparsity reached: " + " ".join(f"{k}={v:.3f}" for k, v in sparsity.items()))
    payload = {
        "benchmark": "pruning_overhead",
        "machine": _common.machine(),
        "step_s": results,
        "kernel_sparsity": sparsity,
    }
    _common.write_json(args.json, payload)
    return payload


def kernel_sparsity(model):
    import numpy as np

    kernels = [
        np.asarray(w) for layer in model.layers for w in layer.get_weights() if np.ndim(w) > 1
    ]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


if __name__ == "__main__":
    main()
