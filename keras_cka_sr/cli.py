"""`keras-cka-sr train`: sparse training with and without CKA-SR, from the command line."""

import argparse
import json
import math
import os
import sys
import time

import numpy as np


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-cka-sr",
        description="CKA-SR (Ni et al., ICML 2023) sparse training on Keras 3.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train sparse models with and without CKA-SR and compare them",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    from keras_cka_sr import datasets, experiment, zoo

    train.add_argument("--dataset", default="mnist5k", choices=datasets.NAMES)
    train.add_argument("--data-dir", default=None, help="tensorflow-datasets folder (mnist, cifar10, cifar100)")
    train.add_argument("--model", default="lenet5", choices=zoo.NAMES)
    train.add_argument("--method", nargs="+", default=["gmp"], choices=experiment.METHODS)
    train.add_argument("--sparsity", nargs="+", type=float, default=[0.95])
    train.add_argument("--cka-weight", nargs="+", type=float, default=[1e-4], help="beta; 0 disables CKA-SR")
    train.add_argument("--cka-samples", type=int, default=8, help="samples-to-cal: first k samples of a batch")
    train.add_argument("--cka-every", type=int, default=5, help="batches-to-cal: penalty every N batches")
    train.add_argument("--compare", action="store_true", help="also run beta=0 (the baseline) for each setting")
    train.add_argument("--resnet-width", type=int, default=16, help="first-stage filters of the ResNets (paper: 16)")
    train.add_argument("--seeds", nargs="+", type=int, default=[0])
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    train.add_argument("--subset", type=int, default=None, help="use only the first N training samples (smoke runs)")
    train.add_argument("--output", default=None, help="write all results to this JSON file")
    train.add_argument("--plots", default=None, help="write PNG figures into this folder")
    train.add_argument("--export", default=None, help="export the last model as a SavedModel here")
    train.add_argument("--save", default=None, help="save the last model as a .keras file")
    train.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    return parser


def summarize(results):
    """One row per (method, sparsity, beta): mean ± std over seeds."""
    rows = {}
    for r in results:
        rows.setdefault(_setting(r["config"]), []).append(r)
    summary = []
    for (method, sparsity, beta), runs in sorted(rows.items()):
        acc = np.array([r["test_accuracy"] for r in runs])
        summary.append({
            "method": method,
            "sparsity_target": sparsity,
            "cka_weight": beta,
            "seeds": [r["config"]["seed"] for r in runs],
            "test_accuracy_mean": float(acc.mean()),
            "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "val_accuracy_mean": float(np.mean([r["val_accuracy"] for r in runs])),
            "sparsity_achieved": float(np.mean([r["sparsity"] for r in runs])),
            "cka_mean": float(np.mean([r["cka_mean"] for r in runs])),
            "small_weight_share": float(np.mean([r["small_weight_share"] for r in runs])),
            "seconds_mean": float(np.mean([r["seconds"] for r in runs])),
        })
    _add_paired_deltas(summary, results)
    return summary


def _setting(config):
    """(method, sparsity, beta) of a run; dense runs have sparsity 0 whatever was passed."""
    sparsity = config["sparsity"] if config["method"] != "dense" else 0.0
    return config["method"], sparsity, config["cka_weight"]


def _add_paired_deltas(summary, results):
    """Accuracy gain over beta=0 with the same seeds, and its std over seeds."""
    by_key = {_setting(r["config"]) + (r["config"]["seed"],): r for r in results}
    for row in summary:
        if row["cka_weight"] == 0:
            continue
        gains = []
        for seed in row["seeds"]:
            mine = by_key.get((row["method"], row["sparsity_target"], row["cka_weight"], seed))
            base = by_key.get((row["method"], row["sparsity_target"], 0.0, seed))
            if mine is not None and base is not None:
                gains.append(mine["test_accuracy"] - base["test_accuracy"])
        if gains:
            row["gain_mean"] = float(np.mean(gains))
            row["gain_std"] = float(np.std(gains, ddof=1)) if len(gains) > 1 else 0.0


def format_table(summary):
    header = (
        f"{'method':<8} {'sparsity':>8} {'beta':>7} {'test acc (mean ± std)':>24} {'n':>2} "
        f"{'gain vs beta=0':>17} {'achieved':>9} {'CKA':>6} {'|w|<1e-3':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in summary:
        acc = f"{100 * row['test_accuracy_mean']:.2f} ± {100 * row['test_accuracy_std']:.2f}"
        gain = (
            f"{100 * row['gain_mean']:+.2f} ± {100 * row['gain_std']:.2f}" if "gain_mean" in row else ""
        )
        lines.append(
            f"{row['method']:<8} {row['sparsity_target']:>8.3f} {row['cka_weight']:>7.0e} {acc:>24} "
            f"{len(row['seeds']):>2} {gain:>17} {row['sparsity_achieved']:>9.4f} "
            f"{row['cka_mean']:>6.3f} {row['small_weight_share']:>9.4f}"
        )
    return "\n".join(lines)


def train(args):
    import keras

    from keras_cka_sr import datasets, experiment

    if args.export and keras.backend.backend() not in ("tensorflow", "jax"):
        raise SystemExit("--export writes a TF SavedModel: use KERAS_BACKEND=tensorflow or jax.")
    betas = sorted(set(args.cka_weight) | ({0.0} if args.compare else set()))
    data = datasets.load(args.dataset, data_dir=args.data_dir)
    if args.subset:
        data = data.subset(train=args.subset, test=max(args.subset // 4, 64))
    print(
        f"keras-cka-sr: {args.dataset} ({len(data.x_train)} train / {len(data.x_val)} val / "
        f"{len(data.x_test)} test), {args.model}, backend {keras.backend.backend()}",
        flush=True,
    )
    results = []
    start = time.time()
    for method in args.method:
        sparsities = [0.0] if method == "dense" else args.sparsity
        for sparsity in sparsities:
            for seed in args.seeds:
                for beta in betas:
                    config = experiment.RunConfig(
                        model=args.model, method=method, sparsity=sparsity, cka_weight=beta,
                        cka_samples=args.cka_samples, cka_every=args.cka_every,
                        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                        seed=seed, verbose=args.verbose, resnet_width=args.resnet_width,
                    )
                    print(f"\n== {method} sparsity={sparsity} beta={beta:g} seed={seed}", flush=True)
                    result = experiment.run(config, data)
                    print(
                        f"   test accuracy {result['test_accuracy']:.4f}, sparsity "
                        f"{result['sparsity']:.4f}, mean CKA {result['cka_mean']:.3f}, "
                        f"{result['seconds']:.1f}s",
                        flush=True,
                    )
                    results.append(result)
    summary = summarize(results)
    print(f"\n{format_table(summary)}")
    print(f"\n{len(results)} runs in {time.time() - start:.0f}s on backend {keras.backend.backend()}.")
    last = results[-1]["model"]
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as handle:
            json.dump(
                {
                    "dataset": args.dataset,
                    "backend": keras.backend.backend(),
                    "summary": summary,
                    "runs": [{k: v for k, v in r.items() if k != "model"} for r in results],
                },
                handle, indent=1, default=_json_default,
            )
        print(f"results: {args.output}")
    if args.plots:
        from keras_cka_sr import plots

        for path in plots.write_all(results, summary, args.plots):
            print(f"plot: {path}")
    if args.save:
        last.save(args.save)
        print(f"saved: {args.save}")
    if args.export:
        last.export(args.export, format="tf_saved_model", verbose=False)
        print(f"exported: {args.export}")
    return summary


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "train":
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
