"""Does channel pruning make inference faster? Latency of dense and channel-pruned models,
and the same ResNet pruned by Torch-Pruning.

Models: the main job's ResNet-20 (28x28x1, MNIST's shape) and ResNet-20/32 (32x32x3,
CIFAR's), and keras.applications MobileNetV2 (224x224x3, `weights=None`). Each is pruned by
`keras_cka_sr.structured.prune_channels` (L1 norm, every group by the same fraction) to 25,
50 and 75% of its FLOPs removed, and (the ResNets) by `remove_blocks` to 25 and 50% of its
FLOPs removed as whole residual blocks (the most identity-like first, by CKA between a
block's input and output on a random probe); latency needs no training (random weights). Runtimes:
TFLite's interpreter with its default XNNPACK delegate at 1 and 2 threads (TensorFlow
backend), `jit`-compiled inference on JAX (CPU), and eager inference on torch (CPU), batch
1. The variants of one model are interleaved round by round, and each latency is the median
over rounds of the mean of `--invokes` calls after warm-up; ratios are to dense in the same
run. The JAX and torch parts run in child processes (one Keras backend per process) on the
same `.keras` files.

Torch-Pruning (`torch-pruning`, where installed): a PyTorch ResNet-20 of the same layout
(32x32x3) pruned by its `MagnitudePruner` (L1, every layer by the same ratio) until 50% of
MACs are removed; its MACs, parameters and eager CPU latency beside ours on torch.

    python benchmarks/structured_inference.py --json benchmarks/results/structured_inference.json

Run it on a quiet machine.
"""

import json
import os
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

FRACTIONS = (0.25, 0.5, 0.75)


def _ratios(seconds):
    return {k: {"ms": 1e3 * s, "ratio_to_dense": s / seconds["dense"]} for k, s in seconds.items()}


# ---- the child processes: JAX jit and torch eager on the saved models ----------------------
def child(backend, files, invokes, warmup, rounds):
    import keras
    import numpy as np

    models = {name: keras.models.load_model(path) for name, path in files.items()}
    shape = (1, *models["dense"].inputs[0].shape[1:])
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    runners = {}
    for name, model in models.items():
        if backend == "jax":
            import jax

            state = (model.trainable_variables, model.non_trainable_variables)
            values = ([v.value for v in state[0]], [v.value for v in state[1]])

            @jax.jit
            def infer(trainable, non_trainable, x, model=model):
                return model.stateless_call(trainable, non_trainable, x, training=False)[0]

            runners[name] = lambda infer=infer, values=values: infer(*values, x).block_until_ready()
        else:
            import torch

            tensor = torch.from_numpy(x)

            def run(model=model):
                with torch.no_grad():
                    model(tensor, training=False)

            runners[name] = run
    return _common.median_of_means(runners, invokes, warmup, rounds)


# ---- the parent process: TensorFlow, TFLite and the report ---------------------------------
def _tflite_runner(content, threads):
    import numpy as np
    import tensorflow as tf

    with warnings.catch_warnings():  # TF's notice that LiteRT replaces tf.lite.Interpreter
        warnings.simplefilter("ignore")
        runner = tf.lite.Interpreter(model_content=content, num_threads=threads)
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    runner.set_tensor(
        detail["index"], np.random.default_rng(1).normal(size=detail["shape"]).astype("float32")
    )
    return runner.invoke


def _to_tflite(model):
    import tensorflow as tf

    saved_model = tempfile.mkdtemp()
    model.export(saved_model, format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(saved_model).convert()


MODELS = ("resnet20_mnist", "resnet20_cifar", "resnet32_cifar", "mobilenet_v2")


def _build(name, size):
    import keras

    from keras_cka_sr.app import zoo

    if name == "mobilenet_v2":
        return keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None)
    depth, data = name.removeprefix("resnet").split("_")
    shape = (28, 28, 1) if data == "mnist" else (32, 32, 3)
    return zoo.build(f"resnet{depth}", shape, 10)


def study(name, model, args, workdir):
    from keras_cka_sr import structured

    variants = {"dense": model}
    for fraction in args.fractions:
        for round_to in args.round_to:
            pruned, _ = structured.prune_channels(
                model, fraction, importance="l1", round_to=round_to
            )
            suffix = "" if round_to == 1 else f"_round_to_{round_to}"
            variants[f"{fraction:g}_flops_removed{suffix}"] = pruned
    if structured.residual_blocks(model):
        for fraction in args.block_fractions:
            variants[f"blocks_{fraction:g}_flops_removed"] = _without_blocks(model, fraction)
    macs = {key: structured.count_macs(variant) for key, variant in variants.items()}
    files = {}
    for key, variant in variants.items():
        files[key] = os.path.join(workdir, f"{name}_{key}.keras")
        variant.save(files[key])
    tflite = {key: _to_tflite(variant) for key, variant in variants.items()}
    latency = {}
    for threads in (1, 2):
        runners = {key: _tflite_runner(content, threads) for key, content in tflite.items()}
        latency[f"tflite_xnnpack_{threads}_threads"] = _ratios(
            _common.median_of_means(runners, args.invokes, args.warmup, args.rounds)
        )
    for backend in ("jax", "torch"):
        latency[f"{backend}_{'jit' if backend == 'jax' else 'eager'}_cpu"] = _ratios(
            _run_child(backend, files, args)
        )
    return {
        "model": name,
        "macs": macs,
        "params": {key: variant.count_params() for key, variant in variants.items()},
        "flops_removed": {key: 1 - m / macs["dense"] for key, m in macs.items() if key != "dense"},
        "tflite_bytes": {k: len(v) for k, v in tflite.items()},
        "latency": latency,
    }


def _without_blocks(model, fraction):
    """`model` without its most identity-like residual blocks (CKA on a random probe)
    until `fraction` of its FLOPs are gone."""
    import numpy as np

    from keras_cka_sr import structured

    shape = (64, *model.inputs[0].shape[1:])
    probe = np.random.default_rng(2).normal(size=shape).astype("float32")
    scores = structured.block_scores(model, probe, "cka")
    goal = (1 - fraction) * structured.count_macs(model)
    smaller = model
    for add in sorted(scores, key=scores.get, reverse=True):
        if structured.count_macs(smaller) <= goal:
            break
        smaller = structured.remove_blocks(smaller, [add])
    return smaller


def _run_child(backend, files, args):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, __file__, "--child", backend, "--files", json.dumps(files),
               "--invokes", str(args.invokes), "--warmup", str(args.warmup),
               "--rounds", str(args.rounds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"the {backend} part failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_pruning_side(args):
    """Torch-Pruning on a PyTorch ResNet-20 (our zoo's layout) and ours on the torch backend,
    both at 50% of MACs removed."""
    try:
        import torch_pruning as tp
    except ImportError:
        return None
    env = dict(os.environ, KERAS_BACKEND="torch", TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, __file__, "--child", "torch_pruning",
               "--invokes", str(args.invokes), "--warmup", str(args.warmup),
               "--rounds", str(args.rounds)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"the Torch-Pruning part failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    from importlib import metadata

    del tp
    result["torch_pruning_version"] = metadata.version("torch-pruning")
    return result


def torch_resnet20(widths=(16, 32, 64), classes=10):
    """The zoo's CIFAR ResNet-20 in PyTorch: 3x3 convs without bias, BatchNorm, 1x1
    projection shortcuts with BatchNorm where the shape changes."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.proj = None
            if stride != 1 or cin != cout:
                self.proj = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = self.bn2(self.conv2(self.bn1(self.conv1(x)).relu()))
            return (y + (x if self.proj is None else self.proj(x))).relu()

    layers, cin = (
        [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()],
        widths[0],
    )
    for s, width in enumerate(widths):
        for b in range(3):
            layers.append(Block(cin, width, 2 if s > 0 and b == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def torch_pruning_child(invokes, warmup, rounds):
    import numpy as np
    import torch
    import torch_pruning as tp

    from keras_cka_sr import structured
    from keras_cka_sr.app import zoo

    torch.manual_seed(0)
    example = torch.randn(1, 3, 32, 32)
    dense = torch_resnet20().eval()
    theirs = torch_resnet20().eval()
    theirs.load_state_dict(dense.state_dict())
    macs0, params0 = tp.utils.count_ops_and_params(theirs, example)
    # Bisection on the per-layer ratio until 50% of MACs are removed, as their examples do.
    low, high = 0.0, 0.95
    for _ in range(12):
        middle = (low + high) / 2
        trial = torch_resnet20().eval()
        trial.load_state_dict(dense.state_dict())
        pruner = tp.pruner.MagnitudePruner(
            trial, example, importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=middle, ignored_layers=[trial[-1]],
        )  # fmt: skip
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(trial, example)
        if macs <= 0.5 * macs0:
            high, theirs = middle, trial
        else:
            low = middle
    macs1, params1 = tp.utils.count_ops_and_params(theirs, example)
    ours_dense = zoo.build("resnet20", (32, 32, 3), 10)
    ours, report = structured.prune_channels(ours_dense, 0.5, importance="l1")
    x = np.random.default_rng(1).normal(size=(1, 32, 32, 3)).astype("float32")
    tensor = torch.from_numpy(x)

    def eager(model):
        def run():
            with torch.no_grad():
                model(example)

        return run

    def keras_eager(model):
        def run():
            with torch.no_grad():
                model(tensor, training=False)

        return run

    seconds = _common.median_of_means(
        {"torch_dense": eager(dense), "torch_pruning_50": eager(theirs),
         "keras_dense": keras_eager(ours_dense), "keras_cka_sr_50": keras_eager(ours)},
        invokes, warmup, rounds,
    )  # fmt: skip
    return {
        "torch_pruning": {"macs": [macs0, macs1], "params": [params0, params1],
                          "ratio": high, "ms": [1e3 * seconds["torch_dense"], 1e3 * seconds["torch_pruning_50"]],
                          "speedup": seconds["torch_dense"] / seconds["torch_pruning_50"]},
        "keras_cka_sr": {"macs": [report.macs_before, report.macs_after],
                         "params": [report.params_before, report.params_after],
                         "ms": [1e3 * seconds["keras_dense"], 1e3 * seconds["keras_cka_sr_50"]],
                         "speedup": seconds["keras_dense"] / seconds["keras_cka_sr_50"]},
    }  # fmt: skip


def print_table(result):
    print(f"\n{result['model']}")
    labels = list(result["latency"])
    print(f"{'variant':<30} {'MACs':>13} {'params':>10} " + " ".join(f"{x:>26}" for x in labels))
    for key in result["macs"]:
        cells = " ".join(
            f"{result['latency'][x][key]['ms']:>9.3f} ms ({result['latency'][x][key]['ratio_to_dense']:.2f}x)".rjust(
                26
            )
            for x in labels
        )
        print(f"{key:<30} {result['macs'][key]:>13,} {result['params'][key]:>10,} {cells}")


def main(argv=None):
    parser = _common.parser(__doc__.splitlines()[0], warmup=10)
    parser.add_argument("--invokes", type=int, default=30, help="calls per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--size", type=int, default=224, help="MobileNetV2's input size")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS),
                        help="fractions of FLOPs removed")  # fmt: skip
    parser.add_argument("--round-to", type=int, nargs="+", default=[1],
                        help="channel variants per fraction: kept counts rounded up to these "
                        "multiples (1: unrounded)")  # fmt: skip
    parser.add_argument("--block-fractions", type=float, nargs="*", default=[0.25, 0.5],
                        help="ResNets: fractions of FLOPs removed as whole blocks (none: skip)")  # fmt: skip
    parser.add_argument("--no-torch-pruning", dest="torch_pruning", action="store_false",
                        help="skip the Torch-Pruning comparison")  # fmt: skip
    parser.add_argument("--child", default=None, help=argparse_hidden())
    parser.add_argument("--files", default=None, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "torch_pruning":
            result = torch_pruning_child(args.invokes, args.warmup, args.rounds)
        else:
            result = child(
                args.child, json.loads(args.files), args.invokes, args.warmup, args.rounds
            )
        print(json.dumps(result))
        return result
    _common.select_backend("tensorflow")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            results.append(study(name, _build(name, args.size), args, workdir))
            print_table(results[-1])
    side = torch_pruning_side(args) if args.torch_pruning else None
    if side:
        print("\nResNet-20 (32x32x3) at 50% of MACs removed, torch eager CPU, batch 1:")
        for who, row in side.items():
            if isinstance(row, dict):
                print(f"  {who:<14} MACs {row['macs'][0]:,} -> {row['macs'][1]:,}, params "
                      f"{row['params'][0]:,} -> {row['params'][1]:,}, {row['ms'][0]:.3f} -> "
                      f"{row['ms'][1]:.3f} ms ({row['speedup']:.2f}x faster)")  # fmt: skip
    payload = {
        "machine": _common.machine(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "invokes": args.invokes,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "results": results,
        "torch_pruning_comparison": side,
    }
    if args.json:
        _common.write_json(args.json, payload)
    return payload


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
