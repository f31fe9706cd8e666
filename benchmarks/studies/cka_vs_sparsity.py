"""Do layers of sparse networks grow more alike than dense ones (the paper's motivation)?
Within-stage CKA of the trained nets at beta 0, per method and sparsity, beside the dense
net of the same file: mean and 95% t-interval over seeds, and the paired difference from
dense (same seed) with its interval. Optionally the figure.

    python benchmarks/studies/cka_vs_sparsity.py benchmarks/results/paper_recipe_resnet20.json \
        [--figure docs/img/cka_vs_sparsity_resnet20.png]
"""

import argparse
import json
import math

import numpy as np

from keras_cka_sr.app import statistics


def rows(runs):
    """One dict per (method, sparsity) of the beta-0 runs: n, mean CKA, its half-width, and
    the paired difference from dense (a `statistics.PairedTest`, None without dense runs)."""
    from keras_cka_sr.app.report import full_setting  # fields a run predates at defaults

    base = [full_setting(r) for r in runs if r["config"]["cka_weight"] == 0]
    ignored = {"method", "sparsity", "seed", "verbose", "cka_weight", "cka_samples", "cka_every"}
    ignored |= {"cka_start", "cka_grad_cap", "dataset", "subset", "backend"}
    for field in sorted({k for c in base for k in c} - ignored):
        values = {json.dumps(c.get(field)) for c in base}
        if len(values) > 1:
            raise SystemExit(
                f"the beta-0 runs differ in {field} ({sorted(values)}): this table would pool "
                "them; give a file of one setting."
            )
    by_setting = {}
    for run in runs:
        config = run["config"]
        if config["cka_weight"] != 0:
            continue
        sparsity = 0.0 if config["method"] == "dense" else config["sparsity"]
        by_setting.setdefault((config["method"], sparsity), {})[config["seed"]] = run
    dense = by_setting.get(("dense", 0.0), {})
    table = []
    for (method, sparsity), by_seed in sorted(
        by_setting.items(), key=lambda kv: (kv[0][0] != "dense", kv[0])
    ):
        values = [r["cka_mean"] for r in by_seed.values()]
        spread = statistics.paired_test(values)  # the t-interval of the mean (not a difference)
        seeds = [s for s in by_seed if s in dense]
        difference = None
        if method != "dense" and seeds:
            difference = statistics.paired_test(
                [by_seed[s]["cka_mean"] - dense[s]["cka_mean"] for s in seeds]
            )
        table.append(
            dict(
                method=method,
                sparsity=sparsity,
                n=len(values),
                mean=float(np.mean(values)),
                half_width=spread.half_width,
                difference=difference,
            )  # fmt: skip
        )
    return table


def _cell(test):
    if test is None:
        return ""
    return statistics.format_estimate(
        test.mean, [test.mean - test.half_width, test.mean + test.half_width], 3
    )


def figure(table, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    dense = next((r for r in table if r["method"] == "dense"), None)
    if dense is not None:
        ax.axhspan(dense["mean"] - dense["half_width"], dense["mean"] + dense["half_width"],
                   color="gray", alpha=0.25, label=f"dense (n={dense['n']}), 95% interval")  # fmt: skip
        ax.axhline(dense["mean"], color="gray")
    for index, method in enumerate(sorted({r["method"] for r in table} - {"dense"})):
        mine = [r for r in table if r["method"] == method]
        ax.errorbar(
            [100 * r["sparsity"] + 0.15 * (index - 0.5) for r in mine],
            [r["mean"] for r in mine],
            yerr=[r["half_width"] if math.isfinite(r["half_width"]) else 0 for r in mine],
            marker="os"[index % 2], capsize=3, linestyle="none", label=f"{method}, beta 0",
        )  # fmt: skip
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("mean within-stage CKA after training")
    ax.set_title(f"{title}: are sparse nets' layers more alike than dense ones?\n"
                 "mean and 95% interval over seeds", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--figure", default=None)
    parser.add_argument("--title", default="ResNet-20 on MNIST-5k")
    args = parser.parse_args(argv)
    with open(args.path) as handle:
        table = rows(json.load(handle)["runs"])
    print("| method | sparsity | n | within-stage CKA [95% CI] | minus dense, paired [95% CI] |")
    print("|---|---|---|---|---|")
    for r in table:
        low, high = r["mean"] - r["half_width"], r["mean"] + r["half_width"]
        interval = (
            f"{r['mean']:.3f} [{low:.3f}, {high:.3f}]"
            if math.isfinite(r["half_width"])
            else f"{r['mean']:.3f}"
        )
        print(
            f"| {r['method']} | {r['sparsity']:g} | {r['n']} | {interval} | {_cell(r['difference'])} |"
        )
    if args.figure:
        figure(table, args.figure, args.title)
    return table


if __name__ == "__main__":
    main()
