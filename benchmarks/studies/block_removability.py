"""The block-removability follow-up (block_removability.sh): is removing CKA-ranked blocks
cheaper in a network trained with CKA-SR than in one trained without?

Removal cost of a run = validation accuracy at the end of the dense phase minus validation
accuracy right after the blocks are removed (points). PRIMARY: paired (by seed) cost
difference, beta 1e-1 minus beta 0. SECONDARY (Holm over the three): the same for 3e-2, and the
final test accuracy difference of both arms.

    python benchmarks/studies/block_removability.py \\
        benchmarks/results/block_removability_resnet20.json \\
        --baseline benchmarks/results/block_removal_resnet20.json \\
        --json benchmarks/results/block_removability.json
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_cka_sr.app import statistics

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
import _common  # noqa: E402

PRIMARY_BETA = 0.1
# Fields every paired run must share (the arms differ only in the penalty and the seed).
SAME = ("model", "sparsity", "prune_steps", "epochs", "optimizer", "learning_rate", "momentum")
SAME += ("nesterov", "weight_decay", "lr_schedule", "batch_size", "resnet_width")


def removal_cost(run):
    """Points of validation accuracy lost by the removal (before fine-tuning)."""
    dense_epochs = run["config"]["epochs"] // 2
    before = run["history"]["val_accuracy"][dense_epochs - 1]
    return 100 * (before - run["structure"]["block_steps"][0]["val_accuracy_removed"])


def _arms(paths):
    arms = {}
    for path in paths:
        for r in json.load(open(path))["runs"]:
            c = r["config"]
            if c["method"] != "blocks" or c["block_criterion"] != "cka" or not r.get("finite", 1):
                continue
            key = (c["cka_weight"], c["seed"])
            if key in arms:
                raise SystemExit(f"two runs of beta {key[0]} seed {key[1]} in {paths}")
            arms[key] = r
    recipes = {tuple(r["config"].get(k) for k in SAME) for r in arms.values()}
    if len(recipes) > 1:
        raise SystemExit(f"the runs differ in {SAME}: {sorted(recipes)}; they cannot be paired")
    return arms


def _compare(arms, beta, metric):
    seeds = sorted({s for b, s in arms if b == beta} & {s for b, s in arms if b == 0.0})
    diffs = [metric(arms[(beta, s)]) - metric(arms[(0.0, s)]) for s in seeds]
    result = {"beta": beta, "seeds": seeds, "differences": diffs, "mean": None}
    if len(diffs) >= 2:
        test = statistics.paired_test(diffs)
        result |= {"mean": test.mean, "p": test.p, "mde80": test.mde80}
        result["interval_95"] = [test.mean - test.half_width, test.mean + test.half_width]
    return result


def analyse(paths):
    arms = _arms(paths)
    betas = sorted({b for b, _ in arms})
    if 0.0 not in betas:
        raise SystemExit("no beta-0 runs of the cka criterion to pair with")
    summary = {
        str(beta): {
            "seeds": [s for b, s in sorted(arms) if b == beta],
            "removal_cost": [removal_cost(arms[k]) for k in sorted(arms) if k[0] == beta],
            "test_accuracy": [100 * arms[k]["test_accuracy"] for k in sorted(arms) if k[0] == beta],
            "mean_block_cka": [
                float(np.mean(list(arms[k]["structure"]["block_steps"][0]["scores"].values())))
                for k in sorted(arms)
                if k[0] == beta
            ],
            "removed": [
                arms[k]["structure"]["block_steps"][0]["removed"]
                for k in sorted(arms)
                if k[0] == beta
            ],
        }
        for beta in betas
    }
    primary = _compare(arms, PRIMARY_BETA, removal_cost)
    secondary = [
        dict(_compare(arms, beta, removal_cost), measure="removal_cost")
        for beta in betas
        if beta not in (0.0, PRIMARY_BETA)
    ]
    secondary += [
        dict(_compare(arms, beta, lambda r: 100 * r["test_accuracy"]), measure="test_accuracy")
        for beta in betas
        if beta != 0.0
    ]
    tested = [c for c in secondary if c["mean"] is not None]
    for c, adjusted in zip(tested, statistics.holm([c["p"] for c in tested])):
        c["p_holm"] = adjusted
    return {"arms": summary, "primary": primary, "secondary": secondary}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="the study's file and the beta-0 runs' file")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = analyse(args.results)
    for beta, arm in result["arms"].items():
        print(
            f"beta {beta}: seeds {arm['seeds']}  removal cost {np.mean(arm['removal_cost']):.1f} "
            f"points  final {np.mean(arm['test_accuracy']):.2f}%  mean block CKA "
            f"{np.mean(arm['mean_block_cka']):.3f}"
        )
    for title, rows in (("PRIMARY", [result["primary"]]), ("secondary", result["secondary"])):
        for c in rows:
            what = c.get("measure", "removal_cost")
            if c["mean"] is None:
                print(f"{title}: beta {c['beta']:g} - 0, {what}: fewer than 2 paired seeds")
                continue
            text = statistics.format_estimate(c["mean"], c["interval_95"], 2)
            holm = f", Holm {c['p_holm']:.3f}" if "p_holm" in c else ""
            print(
                f"{title}: beta {c['beta']:g} - 0, {what}: {text} points (p {c['p']:.3f}{holm}, "
                f"MDE {c['mde80']:.2f})"
            )
    _common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
