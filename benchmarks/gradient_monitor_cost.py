"""Cost of `CKAGradientMonitor.measure()` (one diagnostic) next to one train step.

The diagnostic runs at train begin and at each epoch end, on its probe batch; its cost
per epoch, relative to the epoch, is (measure time) / (steps per epoch x step time).

    python benchmarks/gradient_monitor_cost.py --backend jax --model lenet5 --steps 10

Prints both times, their ratio and the per-epoch share for MNIST-5k's 57 steps.
"""

import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402


def main(argv=None):
    p = _common.parser(__doc__, steps=10, warmup=3)
    p.add_argument("--model", default="lenet5", choices=["lenet5", "resnet20"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--probe-size", type=int, default=64)
    p.add_argument("--steps-per-epoch", type=int, default=57, help="MNIST-5k at batch 64")
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import keras
    import numpy as np

    from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning
    from keras_cka_sr.app import zoo
    from keras_cka_sr.callbacks import CKAGradientMonitor

    shape = (28, 28, 1) if args.model == "lenet5" else (32, 32, 3)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch_size, *shape)).astype("float32")
    y = rng.integers(0, 10, size=args.batch_size).astype("int32")
    keras.utils.set_random_seed(0)
    base = zoo.build(args.model, shape, 10)
    groups = zoo.tap_groups(base)
    pruned = pruning.prune_low_magnitude(base, pruning.ConstantSparsity(0.9, 0, frequency=10**6))
    loss = CKASimilarityLoss(1e-4, num_samples=8, every_n_steps=5)
    model = attach_cka_loss(pruned, groups, loss)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = pruning.UpdatePruningStep()
    callback.set_model(model)
    callback.on_train_begin()
    monitor = CKAGradientMonitor(x[: args.probe_size], y[: args.probe_size], groups, loss)
    monitor.set_model(model)
    step = _common.time_call(lambda: model.train_on_batch(x, y), args.steps, args.warmup)
    measure = _common.time_call(monitor.measure, args.steps, args.warmup)
    payload = {
        "machine": _common.machine(),
        "model": args.model,
        "train_step_seconds": step,
        "measure_seconds": measure,
        "measure_over_step": measure / step,
        "per_epoch_share": measure / (args.steps_per_epoch * step),
    }
    print(
        f"{args.model} on {args.backend}: train step {1e3 * step:.1f} ms, diagnostic "
        f"{1e3 * measure:.1f} ms ({measure / step:.2f}x a step; "
        f"{100 * payload['per_epoch_share']:.2f}% of a {args.steps_per_epoch}-step epoch)"
    )
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
