"""Cost of the sparse training methods next to one train step, on one backend.

* SET and RigL: one mask update (drop and grow; RigL also takes a dense gradient on one
  batch), and its share of training when it runs every `--update-every` steps;
* SNIP, GraSP and SynFlow: the scoring that sets the masks once before training (SynFlow:
  `--synflow-rounds` rounds), in train steps.

    python benchmarks/sparse_methods_cost.py --backend jax --model lenet5

Prints every time and its ratio to a train step, side by side.
"""

import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402


def main(argv=None):
    p = _common.parser(__doc__, steps=5, warmup=2)
    p.add_argument("--model", default="lenet5", choices=["lenet5", "resnet20", "mlp"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--score-samples", type=int, default=256)
    p.add_argument("--synflow-rounds", type=int, default=100)
    p.add_argument("--update-every", type=int, default=50, help="steps between SET/RigL updates")
    p.add_argument("--sparsity", type=float, default=0.95)
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import time

    import keras
    import numpy as np

    from keras_cka_sr import pruning, sparse
    from keras_cka_sr.app import zoo

    shape = (32, 32, 3) if args.model == "resnet20" else (28, 28, 1)
    rng = np.random.default_rng(0)
    x = rng.random((args.score_samples, *shape)).astype("float32")
    y = rng.integers(0, 10, size=args.score_samples).astype("int32")
    xb, yb = x[: args.batch_size], y[: args.batch_size]

    def fresh():
        keras.utils.set_random_seed(0)
        base = zoo.build(args.model, shape, 10, resnet_width=16)
        model = pruning.prune_low_magnitude(base, pruning.StaticMask(args.sparsity))
        sparse.prune_at_initialization(model, "random", args.sparsity)
        return model

    model = fresh()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    step_callback = pruning.UpdatePruningStep()
    step_callback.set_model(model)
    step_callback.on_train_begin()
    step = _common.time_call(lambda: model.train_on_batch(xb, yb), args.steps, args.warmup)

    def once(fn):
        """Median wall time of `fn()` (a Python call that blocks on its results)."""
        times = []
        for _ in range(args.warmup):
            fn()
        for _ in range(args.steps):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    timings = {}
    for method in ("set", "rigl"):
        callback = sparse.DynamicSparsity(
            method, update_frequency=1, end_step=10**6, x=x, y=y, batch_size=args.batch_size
        )
        callback.set_model(model)
        callback.on_train_begin()
        timings[method] = once(lambda callback=callback: callback.update(1))
    scoring = {
        "snip": lambda m: sparse.prune_at_initialization(
            m, "snip", args.sparsity, x, y, batch_size=args.batch_size
        ),
        "grasp": lambda m: sparse.prune_at_initialization(
            m, "grasp", args.sparsity, x, y, batch_size=args.batch_size
        ),
        "synflow": lambda m: sparse.prune_at_initialization(
            m, "synflow", args.sparsity, rounds=args.synflow_rounds
        ),
    }
    for method, fn in scoring.items():
        models = [fresh() for _ in range(args.warmup + args.steps)]
        timings[method] = once(lambda fn=fn, models=models: fn(models.pop()))
    payload = {
        "machine": _common.machine(),
        "model": args.model,
        "batch_size": args.batch_size,
        "train_step_seconds": step,
        "seconds": timings,
        "in_train_steps": {k: v / step for k, v in timings.items()},
        "dst_share_of_training": {
            k: timings[k] / (args.update_every * step) for k in ("set", "rigl")
        },
    }
    print(
        f"{args.model} on {args.backend}: train step {1e3 * step:.1f} ms (batch {args.batch_size})"
    )
    for method in ("set", "rigl"):
        print(
            f"  {method:8s} one mask update {1e3 * timings[method]:8.1f} ms = "
            f"{timings[method] / step:6.1f} steps; every {args.update_every} steps: "
            f"+{100 * payload['dst_share_of_training'][method]:.1f}% of training time"
        )
    for method in scoring:
        rounds = f" ({args.synflow_rounds} rounds)" if method == "synflow" else ""
        print(
            f"  {method:8s} scoring{rounds} {1e3 * timings[method]:8.1f} ms = "
            f"{timings[method] / step:6.1f} train steps, once per run"
        )
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
