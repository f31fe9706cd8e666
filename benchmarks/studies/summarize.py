"""Tables of a study's runs (the JSON `keras-cka-sr train --output` writes), grouped by any
config fields, with paired CKA-SR gains (same seed, beta vs 0) and their 95% t-intervals.

    python benchmarks/studies/summarize.py benchmarks/results/paper_recipe_lenet_lr.json \
        --by method sparsity learning_rate --metric val_accuracy
    python benchmarks/studies/summarize.py benchmarks/results/paper_recipe_lenet.json \
        --by method sparsity --paired
"""

import argparse
import json
import math

import numpy as np

from keras_cka_sr.cli import paired_interval


def load_runs(paths):
    runs = []
    for path in paths:
        with open(path) as handle:
            runs.extend(json.load(handle)["runs"])
    return runs


def table(runs, by, metric, paired):
    """Rows `(group, beta, n, mean, std, gain, low, high)`; `gain` is NaN without `paired`."""
    groups = {}
    for run in runs:
        config = run["config"]
        key = tuple(config[field] for field in by)
        groups.setdefault(key, {}).setdefault(config["cka_weight"], {})[config["seed"]] = run
    rows = []
    for key in sorted(groups):
        by_beta = groups[key]
        for beta in sorted(by_beta):
            values = np.array([r[metric] for r in by_beta[beta].values()], dtype=float)
            gain = low = high = math.nan
            if paired and beta != 0 and 0 in by_beta:
                base = by_beta[0]
                diffs = [r[metric] - base[s][metric] for s, r in by_beta[beta].items() if s in base]
                if diffs:
                    gain, _, half = paired_interval(diffs)
                    low, high = gain - half, gain + half
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append((key, beta, len(values), float(values.mean()), std, gain, low, high))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--by", nargs="+", default=["method", "sparsity"])
    parser.add_argument("--metric", default="test_accuracy")
    parser.add_argument("--paired", action="store_true", help="gain of each beta over beta=0")
    args = parser.parse_args(argv)
    rows = table(load_runs(args.paths), args.by, args.metric, args.paired)
    print(
        f"| {' | '.join(args.by)} | beta | n | {args.metric} (mean ± std) | paired gain [95% CI] |"
    )
    print("|" + "---|" * (len(args.by) + 4))
    for key, beta, n, mean, std, gain, low, high in rows:
        paired = (
            f"{100 * gain:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]" if math.isfinite(low) else ""
        )
        cells = " | ".join(str(k) for k in key)
        print(f"| {cells} | {beta:g} | {n} | {100 * mean:.2f} ± {100 * std:.2f} | {paired} |")
    return rows


if __name__ == "__main__":
    main()
