"""Dense vs channel-pruned ResNets on one backend: `jit`-compiled inference latency at
several batch sizes (`keras_cka_sr.structured.prune_channels`, L1, 25/50/75% of FLOPs
removed; random weights: latency does not depend on training). The variants are
interleaved round by round; each latency is the median over rounds of the mean of
`--steps` calls; ratios are to dense in the same run.

    KERAS_BACKEND=jax python benchmarks/gpu/channel_latency.py --batch-sizes 1 128
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402


def main(argv=None):
    p = _common.parser(__doc__.splitlines()[0], steps=20, warmup=3)
    p.add_argument("--models", nargs="+", default=["resnet20", "resnet32"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 128, 1024])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import jax
    import keras
    import numpy as np

    from keras_cka_sr import structured
    from keras_cka_sr.app import zoo

    keras.utils.set_random_seed(0)
    rows = []
    for name in args.models:
        dense = zoo.build(name, (32, 32, 3), 10)
        variants = {"dense": dense}
        for fraction in args.fractions:
            variants[f"{fraction:g}"] = structured.prune_channels(dense, fraction)[0]
        macs = {key: structured.count_macs(model) for key, model in variants.items()}
        for batch in args.batch_sizes:
            x = jax.numpy.asarray(
                np.random.default_rng(0).normal(size=(batch, 32, 32, 3)).astype("float32")
            )
            calls = {}
            for key, model in variants.items():
                values = (
                    [v.value for v in model.trainable_variables],
                    [v.value for v in model.non_trainable_variables],
                )
                infer = jax.jit(
                    lambda t, n, x, model=model: model.stateless_call(t, n, x, training=False)[0]
                )
                calls[key] = lambda infer=infer, values=values: infer(*values, x)
            for call in calls.values():
                for _ in range(args.warmup):
                    _common.block(call())
            samples = {key: [] for key in calls}
            for _ in range(args.rounds):
                for key, call in calls.items():
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        out = call()
                    _common.block(out)
                    samples[key].append((time.perf_counter() - start) / args.steps)
            seconds = {key: statistics.median(v) for key, v in samples.items()}
            for key, value in seconds.items():
                rows.append({"model": name, "batch_size": batch, "variant": key,
                             "macs": macs[key], "ms": 1e3 * value,
                             "ratio_to_dense": value / seconds["dense"]})  # fmt: skip
                print(f"{name} batch {batch:>5} {key:>6}: {macs[key]:>11,} MACs "
                      f"{1e3 * value:9.3f} ms ({value / seconds['dense']:.2f}x)")  # fmt: skip
    payload = {"machine": _common.machine(), "devices": [str(d) for d in jax.devices()],
               "rows": rows}  # fmt: skip
    if args.json:
        _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
