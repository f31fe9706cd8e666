"""Tables of a study's runs (the JSON `keras-cka-sr train --output` writes), grouped by any
config fields, with paired CKA-SR gains (same seed, beta vs 0): their 95% t-intervals, paired
t-test p-values, Holm-adjusted p-values over the table's comparisons (a `--primary`
comparison fixed before the runs stays out of the family), the smallest gain the seeds detect
with 80% power, and the paired difference of the final mean CKA (did the penalty act?).

    python benchmarks/studies/summarize.py benchmarks/results/paper_recipe_lenet_lr.json \
        --by method sparsity learning_rate --metric val_accuracy
    python benchmarks/studies/summarize.py benchmarks/results/paper_recipe_lenet.json \
        --by method sparsity --paired
    python benchmarks/studies/summarize.py benchmarks/results/penalty_cap_lenet*.json \
        --by method sparsity --treatment cka_grad_cap --paired
    python benchmarks/studies/summarize.py benchmarks/results/dose_response_resnet20.json \
        --treatment cka_samples cka_every --paired --primary 1e-4 --primary-treatment 8 5

`--treatment` fields tell runs of the same beta apart (a field a run predates is None); the
baseline of a paired gain is every beta = 0 run of the group, whatever its treatment.
"""

import argparse
import json
import math

import numpy as np

from keras_cka_sr.app import statistics


def load_runs(paths):
    runs = []
    for path in paths:
        with open(path) as handle:
            runs.extend(json.load(handle)["runs"])
    return runs


def table(runs, by, metric, paired, treatment=(), primary=None, also=()):
    """One dict per (group, variant): `key`, `variant` (beta, or `(beta, *treatment
    values)`), `n`, `mean`, `std`; with `paired` and beta != 0 also the paired `gain`
    (a `statistics.PairedTest` of metric differences), `cka` (the same for the final mean CKA)
    and `holm`: the gain's p-value Holm-adjusted over the table's comparisons, leaving out
    the variant `primary` (a pre-registered test is read unadjusted; its `holm` is None);
    `also` maps each further field to its (mean, max) over the seeds that have it (None when
    none has: a field a run predates, or a ratio that baseline runs do not measure)."""
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
            row = dict(
                key=key,
                variant=variant,
                n=len(values),
                mean=float(values.mean()),
                std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                gain=None,
                cka=None,
                holm=None,
                also={field: _mean_max(by_seed.values(), field) for field in also},
            )
            seeds = [s for s in by_seed if s in base]
            if paired and _beta(variant) != 0 and seeds:
                row["gain"] = statistics.paired_test(
                    [by_seed[s][metric] - base[s][metric] for s in seeds]
                )
                row["cka"] = statistics.paired_test(
                    [by_seed[s]["cka_mean"] - base[s]["cka_mean"] for s in seeds]
                )
            rows.append(row)
    family = [r for r in rows if r["gain"] is not None and r["variant"] != primary]
    for row, adjusted in zip(family, statistics.holm([r["gain"].p for r in family])):
        row["holm"] = adjusted
    return rows


def _mean_max(runs, field):
    values = [r[field] for r in runs if r.get(field) is not None]
    return (float(np.mean(values)), float(np.max(values))) if values else None


def _tuple(variant):
    return variant if isinstance(variant, tuple) else (variant,)


def _beta(variant):
    return _tuple(variant)[0]


def _order(value):
    """None (a field the run predates) sorts first."""
    return (value is not None, value if value is not None else 0)


def _interval(test, scale, digits):
    if test is None:
        return ""
    interval = [scale * (test.mean - test.half_width), scale * (test.mean + test.half_width)]
    return statistics.format_estimate(scale * test.mean, interval, digits)


def _mean_max_cell(value):
    return "" if value is None else f"{value[0]:.6g} ({value[1]:.6g})"


def _p(value):
    return "" if value is None or not math.isfinite(value) else f"{value:.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--by", nargs="+", default=["method", "sparsity"])
    parser.add_argument("--metric", default="test_accuracy")
    parser.add_argument("--paired", action="store_true", help="gain of each beta over beta=0")
    parser.add_argument("--treatment", nargs="+", default=[], help="fields beside beta")
    parser.add_argument(
        "--also",
        nargs="+",
        default=[],
        help="further run fields, printed as mean (max) over seeds (e.g. small_weight_share "
        "cka_grad_ratio_max)",
    )
    parser.add_argument(
        "--primary",
        type=float,
        default=None,
        help="the pre-registered comparison's beta: read unadjusted and left out of the "
        "Holm family (with --treatment, give its values with --primary-treatment)",
    )
    parser.add_argument(
        "--primary-treatment",
        nargs="*",
        default=[],
        help="the primary variant's --treatment values, in order (e.g. 8 5)",
    )
    args = parser.parse_args(argv)
    primary = None
    if args.primary is not None:
        values = [json.loads(v) for v in args.primary_treatment]
        if len(values) != len(args.treatment):
            parser.error("--primary-treatment needs one value per --treatment field.")
        primary = (args.primary, *values) if args.treatment else args.primary
    rows = table(
        load_runs(args.paths), args.by, args.metric, args.paired, args.treatment, primary, args.also
    )
    columns = " | ".join(args.by + ["beta"] + args.treatment)
    also = "".join(f" {field} mean (max) |" for field in args.also)
    print(
        f"| {columns} | n | {args.metric} % (mean ± std) | paired gain [95% CI] | p | Holm p "
        f"| MDE 80% | ΔCKA [95% CI] |{also}"
    )
    print("|" + "---|" * (len(args.by) + len(args.treatment) + len(args.also) + 8))
    for row in rows:
        beta, *rest = _tuple(row["variant"])
        cells = " | ".join([str(k) for k in row["key"]] + [f"{beta:g}"] + [str(v) for v in rest])
        gain = row["gain"]
        holm = "primary" if row["variant"] == primary and gain is not None else _p(row["holm"])
        mde = "" if gain is None or not math.isfinite(gain.mde80) else f"{100 * gain.mde80:.2f}"
        print(
            f"| {cells} | {row['n']} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} "
            f"| {_interval(gain, 100, 2)} | {_p(gain.p if gain else None)} | {holm} | {mde} "
            f"| {_interval(row['cka'], 1, 3)} |"
            + "".join(f" {_mean_max_cell(row['also'][field])} |" for field in args.also)
        )
    return rows


if __name__ == "__main__":
    main()
