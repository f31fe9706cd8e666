"""The block-removal study (block_removal.sh): per model, accuracy of each removal criterion at
equal FLOPs, and the pre-registered paired comparisons with Holm's adjustment.

PRIMARY (Holm over the 4): final test accuracy, cka minus random and cka minus l1, per model.
SECONDARY (Holm over their own family): the same two before fine-tuning (validation accuracy
right after removal), and angular minus random (final). Optional: `--dense FILE` adds, per
model, cka minus the dense runs of the same seeds and recipe (the issue's cost in points).

    python benchmarks/studies/block_removal.py benchmarks/results/block_removal_resnet20.json \\
        benchmarks/results/block_removal_resnet32.json --json benchmarks/results/block_removal.json
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_cka_sr.app import statistics

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
import _common  # noqa: E402

PRIMARY = (("cka", "random"), ("cka", "l1"))
SECONDARY_BEFORE = (("cka", "random"), ("cka", "l1"))
SECONDARY_FINAL = (("angular", "random"),)
# What must match for a dense run to pair with the block runs of its seed.
RECIPE = ("epochs", "optimizer", "learning_rate", "momentum", "nesterov", "weight_decay")
RECIPE += ("lr_schedule", "batch_size", "resnet_width")


def _runs(path):
    runs = json.load(open(path))["runs"]
    blocks = [r for r in runs if r["config"]["method"] == "blocks" and r.get("finite", True)]
    models = {r["config"]["model"] for r in blocks}
    if len(models) != 1:
        raise SystemExit(f"{path}: expected the runs of one model; found {sorted(models)}")
    settings = {(r["config"]["sparsity"], r["config"]["cka_weight"]) for r in blocks}
    if len(settings) != 1:
        raise SystemExit(f"{path}: runs of several sparsities or betas would be pooled: {settings}")
    by = {}
    for r in blocks:
        key = (r["config"]["block_criterion"], r["config"]["seed"])
        if key in by:
            raise SystemExit(f"{path}: two runs of criterion {key[0]} seed {key[1]}")
        by[key] = r
    return models.pop(), by


def _before(run):
    return run["structure"]["block_steps"][0]["val_accuracy_removed"]


def _final(run):
    return run["test_accuracy"]


def _compare(by, a, b, metric):
    seeds = sorted({s for c, s in by if c == a} & {s for c, s in by if c == b})
    diffs = [100 * (metric(by[(a, s)]) - metric(by[(b, s)])) for s in seeds]
    if len(diffs) < 2:
        return {"a": a, "b": b, "seeds": seeds, "differences": diffs, "mean": None}
    test = statistics.paired_test(diffs)
    return {
        "a": a,
        "b": b,
        "seeds": seeds,
        "differences": diffs,
        "mean": test.mean,
        "interval_95": [test.mean - test.half_width, test.mean + test.half_width],
        "p": test.p,
        "mde80": test.mde80,
    }


def _adjust(family):
    tested = [c for c in family if c["mean"] is not None]
    for c, adjusted in zip(tested, statistics.holm([c["p"] for c in tested])):
        c["p_holm"] = adjusted
    return family


def analyse(paths, dense_path=None):
    models, primary, before, final = {}, [], [], []
    for path in paths:
        model, by = _runs(path)
        criteria = sorted({c for c, _ in by})
        summary = {}
        for criterion in criteria:
            runs = [by[k] for k in sorted(by) if k[0] == criterion]
            summary[criterion] = {
                "seeds": [r["config"]["seed"] for r in runs],
                "test_accuracy": [100 * _final(r) for r in runs],
                "val_accuracy_removed": [100 * _before(r) for r in runs],
                "flops_removed": [r["structure"]["flops_removed"] for r in runs],
                "removed": [r["structure"]["block_steps"][0]["removed"] for r in runs],
            }
        models[model] = summary
        primary += [dict(_compare(by, a, b, _final), model=model) for a, b in PRIMARY]
        before += [dict(_compare(by, a, b, _before), model=model) for a, b in SECONDARY_BEFORE]
        final += [dict(_compare(by, a, b, _final), model=model) for a, b in SECONDARY_FINAL]
        if dense_path:
            dense = {
                r["config"]["seed"]: r
                for r in json.load(open(dense_path))["runs"]
                if r["config"]["method"] == "dense"
                and r["config"]["cka_weight"] == 0
                and r["config"]["model"] == model
            }
            recipe = {k: next(iter(by.values()))["config"][k] for k in RECIPE}
            mismatched = sorted(
                s
                for s, r in dense.items()
                if any(r["config"].get(k) != v for k, v in recipe.items())
            )
            if mismatched:
                raise SystemExit(
                    f"{dense_path}: dense runs of seeds {mismatched} differ from the block runs "
                    f"in their recipe ({recipe}); they cannot be paired."
                )
            if dense:
                joined = {**by, **{("dense", s): r for s, r in dense.items()}}
                summary["cost_vs_dense"] = _compare(joined, "cka", "dense", _final)
    return {
        "models": models,
        "primary": _adjust(primary),
        "secondary_before_fine_tuning": _adjust(before),
        "secondary_final": _adjust(final),
    }


def _print(result):
    for model, summary in result["models"].items():
        print(f"\n{model}")
        for criterion, s in summary.items():
            if criterion == "cost_vs_dense":
                continue
            acc, val = np.array(s["test_accuracy"]), np.array(s["val_accuracy_removed"])
            print(
                f"  {criterion:<8} seeds {s['seeds']}  FLOPs removed "
                f"{np.mean(s['flops_removed']):.3f}  right after removal {val.mean():.2f} ± "
                f"{val.std(ddof=1) if len(val) > 1 else 0:.2f}%  final {acc.mean():.2f} ± "
                f"{acc.std(ddof=1) if len(acc) > 1 else 0:.2f}%"
            )
        cost = summary.get("cost_vs_dense")
        if cost and cost["mean"] is not None:
            text = statistics.format_estimate(cost["mean"], cost["interval_95"], 2)
            print(f"  cka minus dense (seeds {cost['seeds']}): {text} points")
    for title, key in (
        ("PRIMARY (final test accuracy, Holm over the family)", "primary"),
        ("secondary: right after removal, before fine-tuning", "secondary_before_fine_tuning"),
        ("secondary: final", "secondary_final"),
    ):
        print(f"\n{title}")
        for c in result[key]:
            if c["mean"] is None:
                print(f"  {c['model']}: {c['a']} - {c['b']}: fewer than 2 paired seeds")
                continue
            text = statistics.format_estimate(c["mean"], c["interval_95"], 2)
            print(
                f"  {c['model']}: {c['a']} - {c['b']} = {text} points (n={len(c['seeds'])}, "
                f"p {c['p']:.3f}, Holm {c['p_holm']:.3f}, MDE {c['mde80']:.2f})"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    parser.add_argument("--dense", default=None, help="a results file with dense runs")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = analyse(args.results, args.dense)
    _print(result)
    _common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
