"""Tables of a study's runs (the JSON `keras-cka-sr train --output` writes), grouped by any
config fields, with paired CKA-SR gains (same seed, beta vs 0) and their 95% t-intervals.

    python benchmarks/studies/summarize.py benchmarks/results/paper_recipe_lenet_lr.json \
        --by method sparsity learning_rate --metric val_accuracy
    python benchmarks/studies/summarize.py benchmarks/results/paper_recipe_lenet.json \
        --by method sparsity --paired
    python benchmarks/studies/summarize.py benchmarks/results/penalty_cap_lenet*.json \
        --by method sparsity --treatment cka_grad_cap --paired

`--treatment` fields tell runs of the same beta apart (a field a run predates is None); the
baseline of a paired gain is every beta = 0 run of the group, whatever its treatment.
"""

import argparse
import json
import math

import numpy as np

from keras_cka_sr.app.report import paired_interval


def load_runs(paths):
    runs = []
    for path in paths:
        with open(path) as handle:
            runs.extend(json.load(handle)["runs"])
    return runs


def table(runs, by, metric, paired, treatment=()):
    """Rows `(group, variant, n, mean, std, gain, low, high)`; the variant is beta, or
    `(beta, *treatment values)` with `treatment`; `gain` is NaN without `paired`."""
    groups = {}
    for run in runs:
        config = run["config"]
        key = tuple(config[field] for field in by)
        beta = config["cka_weight"]
        variant = (beta, *(config.get(f) for f in treatment)) if treatment else beta
        groups.setdefault(key, {}).setdefault(variant, {})[config["seed"]] = run
    rows = []
    for key in sorted(groups):
        variants = groups[key]
        base = {}
        for variant, by_seed in variants.items():
            if _beta(variant) == 0:
                base.update(by_seed)
        for variant in sorted(variants, key=lambda v: tuple(map(_order, _tuple(v)))):
            by_seed = variants[variant]
            values = np.array([r[metric] for r in by_seed.values()], dtype=float)
            gain = low = high = math.nan
            if paired and _beta(variant) != 0 and base:
                diffs = [r[metric] - base[s][metric] for s, r in by_seed.items() if s in base]
                if diffs:
                    gain, _, half = paired_interval(diffs)
                    low, high = gain - half, gain + half
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append((key, variant, len(values), float(values.mean()), std, gain, low, high))
    return rows


def _tuple(variant):
    return variant if isinstance(variant, tuple) else (variant,)


def _beta(variant):
    return _tuple(variant)[0]


def _order(value):
    """None (a field the run predates) sorts first."""
    return (value is not None, value if value is not None else 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--by", nargs="+", default=["method", "sparsity"])
    parser.add_argument("--metric", default="test_accuracy")
    parser.add_argument("--paired", action="store_true", help="gain of each beta over beta=0")
    parser.add_argument("--treatment", nargs="+", default=[], help="fields beside beta")
    args = parser.parse_args(argv)
    rows = table(load_runs(args.paths), args.by, args.metric, args.paired, args.treatment)
    columns = " | ".join(args.by + ["beta"] + args.treatment)
    print(f"| {columns} | n | {args.metric} (mean ± std) | paired gain [95% CI] |")
    print("|" + "---|" * (len(args.by) + len(args.treatment) + 4))
    for key, variant, n, mean, std, gain, low, high in rows:
        paired = (
            f"{100 * gain:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]" if math.isfinite(low) else ""
        )
        beta, *rest = _tuple(variant)
        cells = " | ".join([str(k) for k in key] + [f"{beta:g}"] + [str(v) for v in rest])
        print(f"| {cells} | {n} | {100 * mean:.2f} ± {100 * std:.2f} | {paired} |")
    return rows


if __name__ == "__main__":
    main()
