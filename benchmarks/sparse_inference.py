"""Does pruning make TFLite inference faster? Latency and file size of dense and pruned models.

Models: a MobileNetV2-like network (224x224x3, the inverted-residual layout, a stem that
XNNPACK's sparse inference accepts) pruned with `PruneForLatencyOnXNNPack` (its 1x1
convolutions only) at 70/80/90%, and the main job's LeNet-5 pruned everywhere at 90/95%.
Latency needs no training: masks come from one pruning step on random weights. Each pruned
model is converted twice: plainly (zeros stored densely) and with
`tf.lite.Optimize.EXPERIMENTAL_SPARSITY` (sparse tensors, which XNNPACK's sparse kernels or a
DENSIFY op consume). Every variant runs in the TFLite interpreter with its default XNNPACK
delegate at 1 and 2 threads, and without any delegate as a reference; the variants are
interleaved round by round and each latency is the median over rounds of the mean of
`--invokes` invocations after warm-up. Ratios are against the dense model in the same run.

    python benchmarks/sparse_inference.py --json benchmarks/results/sparse_inference.json

TensorFlow backend only (the converter). Run it on a quiet machine.
"""

import os
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402

_common.select_backend("tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_cka_sr import pruning  # noqa: E402
from keras_cka_sr.app import zoo  # noqa: E402

L = keras.layers
# MobileNetV2 (Sandler et al. 2018): expansion t, channels c, repeats n, first stride s.
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def mobilenet_v2_like(size=224, classes=1000):
    """MobileNetV2's layout with the stem and stride-2 depthwise layers written as
    `ZeroPadding2D(1)` + `valid` (what `PruneForLatencyOnXNNPack` and XNNPACK's sparse
    subgraphs accept; keras.applications uses `same` padding in the stem)."""
    inputs = keras.Input((size, size, 3))
    x = L.ZeroPadding2D(1)(inputs)
    x = L.Conv2D(32, 3, strides=2, padding="valid", use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    channels = 32
    for t, c, n, s in BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            y = x
            if t != 1:
                y = L.Conv2D(channels * t, 1, use_bias=False)(y)
                y = L.ReLU(6.0)(L.BatchNormalization()(y))
            if stride == 2:
                y = L.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False)(
                    L.ZeroPadding2D(1)(y)
                )
            else:
                y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
            y = L.ReLU(6.0)(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(c, 1, use_bias=False)(y))
            x = L.Add()([x, y]) if stride == 1 and channels == c else y
            channels = c
    x = L.Conv2D(1280, 1, use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    outputs = L.Dense(classes)(L.Flatten()(x))
    return keras.Model(inputs, outputs, name="mobilenet_v2_like")


def pruned_copy(model, sparsity, policy):
    """`model` pruned at `sparsity` by magnitude after one pruning step, then stripped."""
    wrapped = pruning.prune_low_magnitude(
        model, pruning.ConstantSparsity(sparsity, 0, frequency=1), pruning_policy=policy
    )
    callback = pruning.UpdatePruningStep()
    callback.set_model(wrapped)
    callback.on_train_begin()
    shape = (1, *wrapped.inputs[0].shape[1:])
    wrapped(np.random.default_rng(0).normal(size=shape).astype("float32"), training=True)
    summary = pruning.sparsity_summary(wrapped)
    return pruning.strip_pruning(wrapped), summary


def to_tflite(model, sparse_encoding):
    saved_model = tempfile.mkdtemp()
    model.export(saved_model, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
    if sparse_encoding:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def interpreter(content, threads, delegate):
    resolver = (
        tf.lite.experimental.OpResolverType.AUTO
        if delegate
        else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    with warnings.catch_warnings():  # TF's notice that LiteRT replaces tf.lite.Interpreter
        warnings.simplefilter("ignore")
        runner = tf.lite.Interpreter(
            model_content=content, num_threads=threads, experimental_op_resolver_type=resolver
        )
    runner.allocate_tensors()
    detail = runner.get_input_details()[0]
    x = np.random.default_rng(1).normal(size=detail["shape"]).astype("float32")
    runner.set_tensor(detail["index"], x)
    return runner


def op_counts(content):
    """Operator names of the flatbuffer (before delegation), counted: DENSIFY marks weights
    stored sparsely and expanded at load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = tf.lite.Interpreter(
            model_content=content,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    counts = {}
    for op in runner._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def measure(variants, threads, delegate, invokes, warmup, rounds):
    """Seconds per invocation, per variant: median over interleaved rounds of the mean."""
    runners = {name: interpreter(content, threads, delegate) for name, content in variants.items()}
    return _common.median_of_means(
        {name: runner.invoke for name, runner in runners.items()}, invokes, warmup, rounds
    )


def study(name, model, sparsities, policy, args):
    variants, sizes, summaries, ops_of = {}, {}, {}, {}
    dense = to_tflite(model, False)
    variants["dense"] = dense
    for sparsity in sparsities:
        pruned, summary = pruned_copy(model, sparsity, policy)
        wrapped = [row for row in summary.rows if row.masked]
        pruned_params = sum(row.params for row in wrapped)
        summaries[f"{sparsity:g}"] = {
            "pruned_weights_sparsity": 1 - sum(row.nonzeros for row in wrapped) / pruned_params,
            "pruned_params": pruned_params,
            "prunable_params": summary.params,
            "prunable_sparsity": summary.sparsity,
            "all_params": model.count_params(),
        }
        for encoding in (False, True):
            key = f"{sparsity:g}" + ("_sparse_encoding" if encoding else "")
            variants[key] = to_tflite(pruned, encoding)
    for key, content in variants.items():
        sizes[key] = len(content)
        ops_of[key] = op_counts(content)
    latency = {}
    for threads in (1, 2):
        for delegate in (True, False):
            label = f"{threads}_threads_" + ("xnnpack" if delegate else "no_delegate")
            seconds = measure(variants, threads, delegate, args.invokes, args.warmup, args.rounds)
            latency[label] = {
                key: {"ms": 1e3 * s, "ratio_to_dense": s / seconds["dense"]}
                for key, s in seconds.items()
            }
    return {
        "model": name,
        "params": model.count_params(),
        "pruned": summaries,
        "tflite_bytes": sizes,
        "tflite_bytes_ratio_to_dense": {k: v / sizes["dense"] for k, v in sizes.items()},
        "ops": ops_of,
        "latency": latency,
    }


def print_table(result):
    print(f"\n{result['model']} ({result['params']:,} parameters)")
    labels = list(result["latency"])
    print(f"{'variant':<26} {'.tflite bytes':>14} " + " ".join(f"{x:>24}" for x in labels))
    for key, size in result["tflite_bytes"].items():
        cells = " ".join(
            f"{result['latency'][label][key]['ms']:>10.2f} ms ({result['latency'][label][key]['ratio_to_dense']:.2f}x)".rjust(
                24
            )
            for label in labels
        )
        print(f"{key:<26} {size:>14,} {cells}")


def main(argv=None):
    parser = _common.parser(__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=20, help="invocations per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--size", type=int, default=224, help="MobileNetV2-like input size")
    parser.add_argument("--mobilenet-sparsities", type=float, nargs="+", default=[0.7, 0.8, 0.9])
    parser.add_argument("--lenet-sparsities", type=float, nargs="+", default=[0.9, 0.95])
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    results = [
        study(
            "mobilenet_v2_like",
            mobilenet_v2_like(args.size),
            args.mobilenet_sparsities,
            pruning.PruneForLatencyOnXNNPack(),
            args,
        ),
        study("lenet5", zoo.lenet5((28, 28, 1), 10), args.lenet_sparsities, None, args),
    ]
    for result in results:
        print_table(result)
    payload = {
        "machine": _common.machine(),
        "tensorflow": tf.__version__,
        "invokes": args.invokes,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "results": results,
    }
    if args.json:
        _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
