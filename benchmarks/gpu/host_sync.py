"""One compiled JAX train step of a pruned ResNet with CKA-SR: does it stay on the device,
and what does the penalty add to it?

The step is Keras' own stateless `model.train_step(state, data)` under `jax.jit`, the
function `fit` compiles, called on a batch already on the device. (a) Steps run under
`jax.transfer_guard("disallow")`: any implicit transfer between host and device inside
the step raises. (b) The step is timed with `jax.block_until_ready`, with and without the
penalty (both pruned), in interleaved rounds.

    JAX_PLATFORMS=cpu python benchmarks/gpu/host_sync.py --depth 14 --batch-size 16 --steps 5
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402


def main(argv=None):
    p = _common.parser(__doc__, steps=20, warmup=3)
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--num-samples", type=int, default=8, help="CKA-SR samples-to-cal")
    p.add_argument("--every", type=int, default=5, help="CKA-SR batches-to-cal")
    args = p.parse_args(argv)
    if args.backend != "jax":
        p.error("host_sync.py measures JAX's compiled step: use --backend jax")
    _common.select_backend("jax")
    import jax
    import keras
    import numpy as np

    from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning
    from keras_cka_sr.app import zoo

    rng = np.random.default_rng(0)
    x = jax.device_put(rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32"))
    y = jax.device_put(rng.integers(0, 10, size=args.batch_size).astype("int32"))

    def prepared(with_penalty):
        keras.utils.set_random_seed(0)
        model = zoo.cifar_resnet(args.depth, (32, 32, 3), 10)
        schedule = pruning.ConstantSparsity(args.sparsity, begin_step=0, frequency=100)
        model = pruning.prune_low_magnitude(model, schedule)
        if with_penalty:
            loss = CKASimilarityLoss(
                weight=1e-3, num_samples=args.num_samples, every_n_steps=args.every
            )
            model = attach_cka_loss(model, zoo.tap_groups(model), loss)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.optimizer.build(model.trainable_variables)
        callback = pruning.UpdatePruningStep()
        callback.set_model(model)
        callback.on_train_begin()
        state = tuple(
            [jax.device_put(v.value) for v in variables]
            for variables in (
                model.trainable_variables,
                model.non_trainable_variables,
                model.optimizer.variables,
                model.metrics_variables,
            )
        )
        step = jax.jit(model.train_step, donate_argnums=0)
        counters = [
            i for i, v in enumerate(model.non_trainable_variables) if "pruning_step" in v.path
        ]
        return step, state, counters

    variants = {"pruned": prepared(False), "pruned_cka_sr": prepared(True)}
    try:  # the guard must be live: an array still on the host is an implicit transfer
        with jax.transfer_guard("disallow"):
            jax.jit(lambda a: a + 1)(np.asarray(y))
        guard_live = False
    except Exception:
        guard_live = True
    print(f"transfer guard live (a host array raises): {guard_live}", flush=True)
    guard = {"guard_is_live": guard_live}
    steps_counted = {}
    for name, (step, state, counters) in variants.items():
        try:
            with jax.transfer_guard("disallow"):
                for _ in range(max(args.warmup, args.every)):
                    logs, state = step(state, (x, y))
                jax.block_until_ready(state)
            guard[name] = {"host_transfer_in_step": False, "error": None}
        except Exception as error:  # the guard's error names the transfer
            guard[name] = {"host_transfer_in_step": True, "error": str(error)[:500]}
        steps_counted[name] = sorted({int(state[1][i]) for i in counters})
        variants[name] = (step, state)
        print(
            f"{name}: transfer guard {'RAISED' if guard[name]['error'] else 'passed'}; "
            f"pruning steps counted in the state: {steps_counted[name]}",
            flush=True,
        )

    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (step, state) in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                logs, state = step(state, (x, y))
            jax.block_until_ready(state)
            times[name].append((time.perf_counter() - start) / args.steps)
            variants[name] = (step, state)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratio = medians["pruned_cka_sr"] / medians["pruned"]
    print(
        f"depth={args.depth} batch={args.batch_size} step pruned={1e3 * medians['pruned']:.2f}ms "
        f"pruned+CKA-SR({args.num_samples}:{args.every})={1e3 * medians['pruned_cka_sr']:.2f}ms "
        f"ratio={ratio:.3f}x",
        flush=True,
    )
    payload = {
        "benchmark": "host_sync",
        "machine": _common.machine(),
        "depth": args.depth,
        "batch_size": args.batch_size,
        "sparsity": args.sparsity,
        "cka_sr": {"num_samples": args.num_samples, "every_n_steps": args.every},
        "transfer_guard": guard,
        "pruning_steps_counted": steps_counted,
        "step_s": medians,
        "step_s_rounds": times,
        "penalty_ratio": ratio,
    }
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
