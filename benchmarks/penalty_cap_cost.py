"""Train-step time with `penalty_grad_cap` (two backward passes) next to CKA-SR without it.

Three models with the same weights, pruned to 90%: no penalty, CKA-SR (beta 1e-4, 8 samples,
every 5th step) and CKA-SR with the cap. Steps are timed one by one with `train_on_batch`
in interleaved rounds (as `cka_overhead.py`), and the medians are printed side by side.
The capped step pays its second backward pass on every step (the skipped penalty steps
too), so it is compared with both.

    python benchmarks/penalty_cap_cost.py --backend jax --model lenet5 --steps 10 --rounds 3
"""

import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402

VARIANTS = ("no penalty", "CKA-SR", "CKA-SR + cap")


def main(argv=None):
    p = _common.parser(__doc__, steps=10, warmup=3)
    p.add_argument("--model", default="lenet5", choices=["lenet5", "resnet20"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    p.add_argument("--cap", type=float, default=0.1)
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import keras
    import numpy as np

    from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning
    from keras_cka_sr.app import zoo

    shape = (28, 28, 1) if args.model == "lenet5" else (32, 32, 3)
    rng = np.random.default_rng(0)
    count = max(args.steps, args.warmup)
    xs = [rng.random((args.batch_size, *shape)).astype("float32") for _ in range(count)]
    ys = [rng.integers(0, 10, size=args.batch_size).astype("int32") for _ in range(count)]

    def build(variant):
        keras.utils.set_random_seed(0)
        base = zoo.build(args.model, shape, 10)
        schedule = pruning.ConstantSparsity(0.9, 0, frequency=10**6)
        model = pruning.prune_low_magnitude(base, schedule)
        if variant != "no penalty":
            loss = CKASimilarityLoss(1e-4, num_samples=8, every_n_steps=5)
            cap = args.cap if variant == "CKA-SR + cap" else None
            model = attach_cka_loss(model, zoo.tap_groups(base), loss, penalty_grad_cap=cap)
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        callback = pruning.UpdatePruningStep()
        callback.set_model(model)
        callback.on_train_begin()
        for i in range(args.warmup):
            model.train_on_batch(xs[i], ys[i])
        return model

    models = [build(v) for v in VARIANTS]
    (plain, cka, capped), _ = _common.interleaved_step_times(
        models, xs, ys, args.steps, args.rounds
    )
    payload = {
        "benchmark": "penalty_cap_cost",
        "machine": _common.machine(),
        "model": args.model,
        "batch_size": args.batch_size,
        "step_s": dict(zip(VARIANTS, (plain, cka, capped))),
        "cka_over_plain": cka / plain,
        "capped_over_plain": capped / plain,
        "capped_over_cka": capped / cka,
    }
    print(
        f"{args.model} on {args.backend}, batch {args.batch_size}, steps of "
        f"no penalty {1e3 * plain:.1f} ms | CKA-SR {1e3 * cka:.1f} ms ({cka / plain:.2f}x) | "
        f"CKA-SR + cap {1e3 * capped:.1f} ms ({capped / plain:.2f}x; {capped / cka:.2f}x CKA-SR)"
    )
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
