"""The main job's ResNet-20 on MNIST-5k padded to 32x32 (CIFAR's shape), RST at 95%
sparsity with CKA-SR and without (beta 0), trained by `experiment.run` as the CLI does.

Reports, per run, the wall time (compilation, the main job's per-epoch CKA and gradient
monitors and the final evaluation included), epochs per second on that basis, and the
test accuracy, sparsity and mean within-stage CKA. One seed: a speed check, not a study.

    KERAS_BACKEND=jax python benchmarks/gpu/train_mnist.py --epochs 1 --width 4
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=16, help="first-stage filters (paper: 16)")
    p.add_argument("--beta", type=float, default=1e-3, help="CKA-SR weight of the treated run")
    p.add_argument("--no-baseline", action="store_true", help="skip the beta 0 run")
    p.add_argument("--train-samples", type=int, default=None, help="use the first N only")
    args = p.parse_args(argv)
    _common.select_backend(args.backend)
    import dataclasses

    import numpy as np

    from keras_cka_sr.app import datasets, experiment, run_config

    data = datasets.load("mnist5k")
    if args.train_samples is not None:
        data = data.subset(train=args.train_samples, test=args.train_samples)
    pad = ((0, 0), (2, 2), (2, 2), (0, 0))
    data = dataclasses.replace(
        data,
        x_train=np.pad(data.x_train, pad),
        x_val=np.pad(data.x_val, pad),
        x_test=np.pad(data.x_test, pad),
    )
    runs = []
    for beta in (args.beta,) if args.no_baseline else (args.beta, 0.0):
        config = run_config.RunConfig(
            model="resnet20",
            method="rst",
            sparsity=0.95,
            cka_weight=beta,
            epochs=args.epochs,
            batch_size=args.batch_size,
            resnet_width=args.width,
            verbose=0,
        )
        result = experiment.run(config, data)
        row = {
            "beta": beta,
            "seconds": result.seconds,
            "epochs_per_s": args.epochs / result.seconds,
            "test_accuracy": result.test_accuracy,
            "sparsity": result.sparsity,
            "cka_mean": result.cka_mean,
            "finite": result.finite,
        }
        runs.append(row)
        print(
            f"backend={args.backend} resnet20 rst 95% beta={beta:g}: {result.seconds:.1f}s for "
            f"{args.epochs} epochs ({row['epochs_per_s']:.2f} epochs/s, all included), "
            f"test accuracy {100 * result.test_accuracy:.2f}%, sparsity {result.sparsity:.3f}, "
            f"CKA {result.cka_mean:.3f}",
            flush=True,
        )
    payload = {
        "benchmark": "train_mnist",
        "machine": _common.machine(),
        "input_shape": list(data.input_shape),
        "train_samples": len(data.x_train),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "width": args.width,
        "runs": runs,
    }
    _common.write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
