"""The primary analysis of middle_range.sh (pre-registered in its header): the slope of the
paired accuracy gain on the paired ΔCKA, one point per (arm, seed) over the arms with beta > 0
of the given results files, each paired with its own file's beta-0 run of the same seed; its
95% interval by a bootstrap over seeds (a resampled seed brings all its points).

    python benchmarks/studies/mechanism_slope.py benchmarks/results/dose_response_resnet20.json \
        benchmarks/results/middle_range_resnet20.json [--json benchmarks/results/mechanism_slope.json]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
import _common  # noqa: E402


def points(paths):
    """(path, beta, cka_samples, cka_every, seed, ΔCKA, gain) per arm run with a baseline."""
    found = []
    for path in paths:
        with open(path) as handle:
            runs = json.load(handle)["runs"]
        base = {r["config"]["seed"]: r for r in runs if r["config"]["cka_weight"] == 0}
        for run in runs:
            config = run["config"]
            if config["cka_weight"] == 0 or config["seed"] not in base:
                continue
            b = base[config["seed"]]
            found.append(
                (
                    path,
                    config["cka_weight"],
                    config["cka_samples"],
                    config["cka_every"],
                    config["seed"],
                    run["cka_mean"] - b["cka_mean"],
                    run["test_accuracy"] - b["test_accuracy"],
                )
            )
    return found


def slope(x, y):
    """Ordinary least-squares slope of y on x (NaN when x does not vary)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dx = x - x.mean()
    denominator = float(dx @ dx)
    return float(dx @ (y - y.mean()) / denominator) if denominator > 0 else float("nan")


def bootstrap_interval(found, resamples=10_000, seed=0):
    """Percentile 95% interval of the slope, resampling seeds with replacement."""
    rng = np.random.default_rng(seed)
    seeds = sorted({p[4] for p in found})
    by_seed = {s: [p for p in found if p[4] == s] for s in seeds}
    slopes = []
    for _ in range(resamples):
        chosen = rng.choice(seeds, size=len(seeds), replace=True)
        sample = [p for s in chosen for p in by_seed[s]]
        value = slope([p[5] for p in sample], [p[6] for p in sample])
        if np.isfinite(value):
            slopes.append(value)
    return [float(np.percentile(slopes, 2.5)), float(np.percentile(slopes, 97.5))], len(slopes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=[],
        metavar="BETA:SAMPLES:EVERY",
        help="leave these arms out (an exploratory sensitivity analysis, not the primary)",
    )
    args = parser.parse_args(argv)
    left_out = {tuple(float(v) for v in arm.split(":")) for arm in args.exclude}
    found = [p for p in points(args.paths) if (p[1], p[2], p[3]) not in left_out]
    if len(found) < 3:
        raise SystemExit(f"{len(found)} paired points: too few for a slope.")
    estimate = slope([p[5] for p in found], [p[6] for p in found])
    interval, kept = bootstrap_interval(found)
    if interval[1] < 0:
        reading = "below 0: less similarity, more accuracy (the mechanism survives here)"
    elif interval[0] > 0:
        reading = "above 0: less similarity, less accuracy (the mechanism is refuted here)"
    else:
        reading = "contains 0: not shown either way"
    arms = sorted({(p[0], p[1], p[2], p[3]) for p in found})
    print(
        f"{len(found)} paired points, {len(arms)} arms, {len({p[4] for p in found})} seeds; "
        f"slope of the accuracy gain on ΔCKA: {estimate:+.3f} (accuracy per unit of CKA; "
        f"95% seed bootstrap [{interval[0]:+.3f}, {interval[1]:+.3f}]): {reading}."
    )
    result = {
        "paths": args.paths,
        "excluded_arms": sorted(args.exclude),
        "points": len(found),
        "arms": [list(a) for a in arms],
        "slope": estimate,
        "ci95_bootstrap_seeds": interval,
        "bootstrap_resamples_kept": kept,
        "reading": reading,
    }
    _common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
