"""Channel-pruned runs against dense runs of the same seeds: the paired accuracy difference
with its 95% t-interval (the primary comparison of channels_accuracy.sh).

    python benchmarks/studies/channels_vs_dense.py benchmarks/results/paper_recipe_resnet20.json \\
        benchmarks/results/channels_resnet20.json --json benchmarks/results/channels_vs_dense.json
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_cka_sr.app import statistics

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))
import _common  # noqa: E402


def paired(dense_path, channels_path, metric="test_accuracy"):
    dense = {
        r["config"]["seed"]: r
        for r in json.load(open(dense_path))["runs"]
        if r["config"]["method"] == "dense" and r["config"]["cka_weight"] == 0
    }
    pruned = {
        r["config"]["seed"]: r
        for r in json.load(open(channels_path))["runs"]
        if r["config"]["method"] == "channels"
    }
    seeds = sorted(set(dense) & set(pruned))
    if len(seeds) < 2:
        raise SystemExit(f"need 2 or more seeds in both files; shared: {seeds}")
    diffs = np.array([100 * (pruned[s][metric] - dense[s][metric]) for s in seeds])
    test = statistics.paired_test(diffs)
    mean, half = test.mean, test.half_width
    structure = [pruned[s]["structure"] for s in seeds]
    return {
        "seeds": seeds,
        "dense_accuracy": [100 * dense[s][metric] for s in seeds],
        "channels_accuracy": [100 * pruned[s][metric] for s in seeds],
        "difference_points": diffs.tolist(),
        "mean_difference": mean,
        "interval_95": [mean - half, mean + half],
        "flops_removed": [s["flops_removed"] for s in structure],
        "params": structure[0]["params"],
        "within_one_point": "holds"
        if mean - half > -1
        else ("fails" if mean + half < -1 else "not shown"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dense")
    parser.add_argument("channels")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = paired(args.dense, args.channels)
    low, high = result["interval_95"]
    print(f"seeds {result['seeds']}: dense {np.mean(result['dense_accuracy']):.2f}%, channels "
          f"{np.mean(result['channels_accuracy']):.2f}%, difference {result['mean_difference']:+.2f} "
          f"points [{low:+.2f}, {high:+.2f}]; FLOPs removed {np.mean(result['flops_removed']):.3f}; "
          f"within 1 point: {result['within_one_point']}")  # fmt: skip
    _common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
