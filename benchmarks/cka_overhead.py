"""Train-step time of ResNet-32 (CIFAR shape, batch 128) with CKA-SR vs without.

Taps every residual block output (3 stages x 5 blocks, compared within a stage, as the
reference code) and prints, per setting, the measured overhead beside the FLOP floor:
1 + (FLOPs of the Gram products, forward and backward, per step) / (FLOPs of the plain
train step). Goals: <= 1.10x at the reference defaults (num_samples=8, every_n_steps=5);
within 1.5x of the floor with all samples every step.

    python benchmarks/cka_overhead.py --backend jax --steps 5 --warmup 2 --rounds 3

With `--prune S`, each variant is also timed with every conv/dense wrapped by
`prune_low_magnitude` (constant sparsity S); those rows' overheads are against the pruned
plain step, and the pruned plain step's own ratio to the dense plain step is printed.

Steps are timed one by one with `train_on_batch` (the same compiled train function as
`fit`) on batches already in memory: on a 2-core machine, `fit`'s input-pipeline thread
competes with the step for a core and made TensorFlow step times jump between two
modes 2x apart, whichever variant ran.
"""

import argparse
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402

SETTINGS = [(None, 1), (None, 5), (32, 1), (32, 5), (8, 1), (8, 5)]


def main(argv=None):
    p = _common.parser(__doc__, steps=10, warmup=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument(
        "--settings",
        type=parse_settings,
        default=SETTINGS,
        help="comma-separated num_samples:every_n_steps, e.g. all:1,8:5 (default: all six)",
    )
    p.add_argument(
        "--prune",
        type=float,
        default=None,
        metavar="SPARSITY",
        help="also time every variant with pruning wrappers at this constant sparsity",
    )
    args = p.parse_args(argv)
    if args.prune is not None and not 0 < args.prune < 1:
        p.error(f"--prune must be a sparsity in (0, 1); got {args.prune}")
    if args.steps % 5:
        p.error(
            f"--steps must be a multiple of 5 (every_n_steps=5 pays one step in 5); got {args.steps}"
        )
    _common.select_backend(args.backend)
    import keras
    import numpy as np

    from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning
    from keras_cka_sr.app import zoo

    batch = args.batch_size
    rng = np.random.default_rng(0)
    count = max(args.steps, args.warmup)
    xs = [rng.normal(size=(batch, 32, 32, 3)).astype("float32") for _ in range(count)]
    ys = [rng.integers(0, 10, size=batch).astype("int32") for _ in range(count)]

    def build(num_samples=None, every=None, prune=None):
        keras.utils.set_random_seed(0)
        model = zoo.cifar_resnet(args.depth, (32, 32, 3), 10)
        if prune is not None:
            schedule = pruning.ConstantSparsity(prune, begin_step=0, frequency=100)
            model = pruning.prune_low_magnitude(model, schedule)
        if every is not None:
            loss = CKASimilarityLoss(weight=1e-4, num_samples=num_samples, every_n_steps=every)
            model = attach_cka_loss(model, zoo.tap_groups(model), loss)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        if prune is not None:
            # What `fit` does with UpdatePruningStep; the wrappers count steps themselves.
            callback = pruning.UpdatePruningStep()
            callback.set_model(model)
            callback.on_train_begin()
        for i in range(args.warmup):
            model.train_on_batch(xs[i], ys[i])
        return model

    # Build and warm up every variant, then time them in interleaved rounds; report medians.
    # The last model is a second plain one, built after the variants (an A/A control): its
    # ratio to the first is what two equal programs differ by here, the resolution of
    # every ratio below (on XLA:CPU, two plain models differed by up to 14%:
    # docs/performance.md).
    kinds = [None] if args.prune is None else [None, args.prune]
    variants = [(ns, ev, k) for k in kinds for ns, ev in [(None, None)] + args.settings]
    models = [build(*v) for v in variants] + [build()]
    medians, times = _common.interleaved_step_times(models, xs, ys, args.steps, args.rounds)
    control = medians.pop() / medians[0]
    times.pop()
    plain = medians[0]
    plain_model = models[0]
    step_flops = 3 * forward_flops(plain_model, batch)
    dims = [
        int(np.prod(plain_model.get_layer(n).output.shape[1:]))
        for g in zoo.tap_groups(plain_model)
        for n in g
    ]
    spread = max(times[0]) / min(times[0])
    print(
        f"backend={args.backend} depth={args.depth} batch={batch} plain step={1e3 * plain:.1f}ms "
        f"(max/min over {args.rounds} rounds {spread:.2f}) plain step FLOPs={step_flops / 1e9:.2f}G"
    )
    print(
        f"A/A control: a second plain model built last = {control:.3f}x the first "
        "(ratios this close to 1 are not resolved)"
    )
    results = []
    baseline = {}
    for (num_samples, every, prune), seconds in zip(variants, medians):
        if every is None:
            baseline[prune] = seconds
            if prune is not None:
                print(
                    f"pruned (sparsity {prune:g}) plain step={1e3 * seconds:.1f}ms "
                    f"= {seconds / plain:.3f}x the dense plain step",
                    flush=True,
                )
            continue
        n = batch if num_samples is None else min(num_samples, batch)
        gram_flops = sum(4 * n * n * d for d in dims) / every  # X X^T forward + backward
        floor = 1 + gram_flops / step_flops
        overhead = seconds / baseline[prune]
        label = "all" if num_samples is None else num_samples
        pruned = "" if prune is None else f" pruned {prune:g}"
        print(
            f"num_samples={label} every_n_steps={every}{pruned} overhead={overhead:.3f}x "
            f"floor={floor:.3f}x (step {1e3 * seconds:.1f}ms)",
            flush=True,
        )
        results.append(
            {
                "num_samples": label,
                "every_n_steps": every,
                "pruned_sparsity": prune,
                "step_s": seconds,
                "overhead": overhead,
                "floor": floor,
            }
        )
    payload = {
        "benchmark": "cka_overhead",
        "machine": _common.machine(),
        "depth": args.depth,
        "batch_size": batch,
        "plain_step_s": plain,
        "control_ratio": control,
        "plain_step_flops": step_flops,
        "pruned_plain_step_s": baseline.get(args.prune),
        "rows": results,
    }
    _common.write_json(args.json, payload)
    return payload


def parse_settings(text):
    settings = []
    for item in text.split(","):
        samples, _, every = item.partition(":")
        try:
            settings.append((None if samples == "all" else int(samples), int(every)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected num_samples:every_n_steps (e.g. all:1 or 8:5); got {item!r}"
            )
    return settings


def forward_flops(model, batch):
    """Multiply-add FLOPs (x2) of the convolutions and dense layers, forward, per batch."""
    import keras
    import numpy as np

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            kh, kw, cin, cout = layer.kernel.shape
            total += 2 * out[1] * out[2] * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(layer.kernel.shape))
    return total * batch


if __name__ == "__main__":
    main()
