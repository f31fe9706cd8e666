"""Time (and XLA temp memory, on JAX) of the CKA-SR penalty vs its floor and a naive form.

For L tapped layers of given shapes, compares (forward + backward, jit-compiled):
  ours   - CKASimilarityLoss (each Gram or feature statistic computed once),
  floor  - the L Gram matmuls X X^T alone, forward and backward (what any Gram-based
           CKA must compute),
  naive  - linear_cka called per pair (Grams recomputed for every pair).
Prints which path (gram/feature) `method="auto"` takes for each case.

    python benchmarks/cka_kernel.py --backend jax --steps 20

`--n 128,512,2048 --dtypes float32,bfloat16` times the ResNet-32 block case at each batch
size and input dtype instead (the penalty casts features to float32 inside; the floor's
Gram matmuls are float32 too, the arithmetic any float32 Gram path does).
`--blocks-per-stage 2` uses ResNet-14's block outputs instead of ResNet-32's (a quick check).
"""

import argparse
import os
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import _common  # noqa: E402


def resnet_blocks(blocks):
    """Block output shapes of a CIFAR ResNet with `blocks` blocks per stage (3 stages)."""
    return [(32, 32, 16)] * blocks + [(16, 16, 32)] * blocks + [(8, 8, 64)] * blocks


# ResNet-32 block outputs (CIFAR, 3 stages x 5 blocks), and narrow dense features.
CASES = {
    "resnet32_blocks_n128": (128, resnet_blocks(5)),
    "resnet32_blocks_n8": (8, resnet_blocks(5)),
    "mlp_features_n512_d64": (512, [(64,)] * 6),
}


def main(argv=None):
    p = _common.parser(__doc__, steps=20, warmup=3)
    p.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated subset of {', '.join(CASES)} (default: all)",
    )
    p.add_argument(
        "--n",
        type=_ints,
        default=None,
        help="comma-separated batch sizes: time the ResNet-32 block case at each (replaces --cases)",
    )
    p.add_argument(
        "--dtypes", default="float32", help="comma-separated input dtypes, e.g. float32,bfloat16"
    )
    p.add_argument(
        "--blocks-per-stage",
        type=int,
        default=5,
        help="ResNet cases: blocks per stage (5: ResNet-32; 2: ResNet-14, a quick check)",
    )
    args = p.parse_args(argv)
    if args.blocks_per_stage < 2:
        p.error(
            f"--blocks-per-stage must be >= 2 (pairs within a stage); got {args.blocks_per_stage}"
        )
    if args.cases is not None and args.n is not None:
        p.error("--n replaces --cases (it times the ResNet-32 block case): give one of them")
    args.cases = args.cases or ",".join(CASES)
    unknown = sorted(set(args.cases.split(",")) - set(CASES))
    if unknown:
        p.error(f"unknown --cases {unknown}; choose from {list(CASES)}")
    dtypes = args.dtypes.split(",")
    bad = sorted(set(dtypes) - {"float32", "bfloat16", "float16"})
    if bad:
        p.error(f"unknown --dtypes {bad}; choose from float32, bfloat16, float16")
    blocks = resnet_blocks(args.blocks_per_stage)
    depth = 6 * args.blocks_per_stage + 2
    if args.n is None:
        cases = {}
        for name in args.cases.split(","):
            n, shapes = CASES[name]
            if name.startswith("resnet"):
                name, shapes = f"resnet{depth}_blocks_n{n}", blocks
            cases[name] = (n, shapes)
    else:
        cases = {f"resnet{depth}_blocks_n{n}": (n, blocks) for n in args.n}
    _common.select_backend(args.backend)
    import numpy as np
    from keras import ops

    from keras_cka_sr import CKASimilarityLoss, cka

    grad_fn, memory, to_inputs = make_grad(args.backend)
    rows = []
    for (name, (n, shapes)), dtype in [(c, d) for c in cases.items() for d in dtypes]:
        rng = np.random.default_rng(0)
        features = [rng.normal(size=(n,) + s).astype("float32") for s in shapes]
        features = [ops.convert_to_numpy(ops.cast(x, dtype)) for x in features]
        stage = len(shapes) // 3 if name.startswith("resnet") else len(shapes)
        groups = [list(range(i, i + stage)) for i in range(0, len(shapes), stage)]
        loss = CKASimilarityLoss(weight=1.0, groups=groups, unbiased=True)
        pairs = loss.compared_pairs(len(shapes))
        dims = [int(np.prod(s)) for s in shapes]
        path = cka.choose_method(dims, n, pairs)

        def ours(*f):
            return loss(list(f))

        weights = ops.convert_to_tensor(rng.normal(size=(n, n)).astype("float32"))

        def floor(*f):
            # Weighted sum so the backward pass is a real (n x n) @ (n x d) product.
            total = 0.0
            for x in f:
                x = ops.reshape(ops.cast(x, "float32"), (n, -1))
                total = total + ops.sum(ops.matmul(x, ops.transpose(x)) * weights)
            return total

        def naive(*f):
            return (
                sum(cka.linear_cka(f[i], f[j], unbiased=True, epsilon=1e-6) for i, j in pairs) * 2.0
            )

        result = {
            "case": name,
            "dtype": dtype,
            "n": n,
            "layers": len(shapes),
            "pairs": len(pairs),
            "path": path,
        }
        inputs = to_inputs(features)  # once: host-to-backend copies stay out of the timing
        for label, fn in (("ours", ours), ("floor", floor), ("naive", naive)):
            compiled = grad_fn(fn, len(features))
            result[f"{label}_s"] = _common.time_call(
                lambda: compiled(*inputs), args.steps, args.warmup
            )
            result[f"{label}_temp_bytes"] = memory(fn, features)
        result["ours_over_floor"] = result["ours_s"] / result["floor_s"]
        result["naive_over_ours"] = result["naive_s"] / result["ours_s"]
        rows.append(result)
        mem = (
            ""
            if result["ours_temp_bytes"] is None
            else (
                f" temp MB ours/floor/naive={result['ours_temp_bytes'] / 2**20:.1f}/"
                f"{result['floor_temp_bytes'] / 2**20:.1f}/{result['naive_temp_bytes'] / 2**20:.1f}"
            )
        )
        print(
            f"{name} {dtype}: path={path} L={len(shapes)} pairs={len(pairs)} "
            f"ours={1e3 * result['ours_s']:.2f}ms floor={1e3 * result['floor_s']:.2f}ms "
            f"naive={1e3 * result['naive_s']:.2f}ms ours/floor={result['ours_over_floor']:.2f}x "
            f"naive/ours={result['naive_over_ours']:.2f}x{mem}",
            flush=True,
        )
    payload = {"benchmark": "cka_kernel", "machine": _common.machine(), "rows": rows}
    _common.write_json(args.json, payload)
    return payload


def _ints(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 4:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 4; got {text!r}")
    return values


def make_grad(backend):
    """(compile(fn, arity) -> callable computing fn and its gradients, temp-memory probe,
    numpy arrays -> backend inputs)."""
    if backend == "jax":
        import jax

        def compile_(fn, arity):
            return jax.jit(jax.value_and_grad(fn, argnums=tuple(range(arity))))

        def memory(fn, features):
            lowered = jax.jit(jax.value_and_grad(fn, argnums=tuple(range(len(features))))).lower(
                *features
            )
            analysis = lowered.compile().memory_analysis()
            return None if analysis is None else int(analysis.temp_size_in_bytes)

        return compile_, memory, lambda features: [jax.device_put(x) for x in features]
    if backend == "tensorflow":
        import tensorflow as tf

        def compile_(fn, arity):
            @tf.function(jit_compile=os.environ.get("CKA_BENCH_XLA", "1") == "1")
            def step(*f):
                with tf.GradientTape() as tape:
                    tape.watch(f)
                    value = fn(*f)
                return value, tape.gradient(value, f)

            return step

        return (
            compile_,
            lambda fn, features: None,
            lambda features: [tf.constant(x) for x in features],
        )
    import torch

    def compile_(fn, arity):
        def step(*f):
            value = fn(*f)
            return value, torch.autograd.grad(value, f)

        return step

    def to_inputs(features):
        # torch takes no NumPy bfloat16 (an ml_dtypes type): go through float32.
        return [
            torch.tensor(x.astype("float32")).to(getattr(torch, x.dtype.name)).requires_grad_()
            for x in features
        ]

    return compile_, lambda fn, features: None, to_inputs


if __name__ == "__main__":
    main()
