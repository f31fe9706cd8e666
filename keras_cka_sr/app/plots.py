"""PNG figures of the main job (matplotlib, Agg backend: no screen needed)."""

import math
import os

import numpy as np

from keras_cka_sr.app import statistics


def _pyplot():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("--plots needs matplotlib: `pip install matplotlib`.") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _line_axes(plt, xlabel, ylabel):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def subject(run) -> str:
    """The model and data set of a run, e.g. "resnet20 on mnist5k"."""
    return f"{run['config'].get('model', 'model')} on {run.get('dataset') or 'its data'}"


def _setting(run):
    config = run["config"]
    return (
        f"{subject(run)}, {config['method']} at {100 * config['sparsity']:g}% sparsity, "
        f"seed {config['seed']}"
    )


def cka_heatmaps(baseline, cka_sr, path):
    """CKA matrices of the tapped layers, baseline and CKA-SR side by side (one setting and
    seed, named in the title)."""
    plt = _pyplot()
    runs = [(r, t) for r, t in ((baseline, "baseline"), (cka_sr, "CKA-SR")) if r is not None]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 5.0), squeeze=False)
    # One colour scale for both panels, over the values they hold (CKA of trained layers
    # rarely goes below 0.5: a 0-1 scale would leave half its colours unused).
    lowest = min(float(np.min(r["cka_matrix"])) for r, _ in runs)
    vmin = max(0.0, math.floor(lowest * 10) / 10)
    for ax, (run, title) in zip(axes[0], runs):
        matrix = np.asarray(run["cka_matrix"])
        image = ax.imshow(matrix, vmin=vmin, vmax=1, cmap="magma")
        labels = run["cka_layers"]
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        beta = run["config"]["cka_weight"]
        ax.set_title(
            f"{title}, beta={beta:g}: mean within-stage CKA {run['cka_mean']:.3f}", fontsize=9
        )
        fig.colorbar(image, ax=ax, fraction=0.046, label="CKA")
    fig.suptitle(f"CKA between tapped layers after training: {_setting(runs[0][0])}", fontsize=10)
    return _save(plt, fig, path)


def magnitude_histograms(runs, path):
    """Histogram of log10 |w| over the nonzero prunable kernel weights, one line per beta
    (one setting and seed); the share of exact zeros per run is in the title."""
    plt = _pyplot()
    fig, ax = _line_axes(plt, "log10 |w| (nonzero kernel weights only)", "weights per bin")
    low, high, zeros = math.inf, -math.inf, []
    for run in runs:
        hist = run["magnitude_histogram"]
        edges = np.asarray(hist["log10_edges"])
        counts = np.asarray(hist["counts"])
        centers = (edges[:-1] + edges[1:]) / 2
        beta = run["config"]["cka_weight"]
        total = int(counts.sum()) + hist["zeros"]
        share = hist["zeros"] / total if total else 0.0
        zeros.append(f"beta={beta:g}: {100 * share:.1f}%")
        ax.step(centers, counts, where="mid", label=f"beta={beta:g}")
        used = np.flatnonzero(counts)
        if used.size:
            low, high = min(low, edges[used[0]]), max(high, edges[used[-1] + 1])
    if math.isfinite(low):
        ax.set_xlim(low - 0.25, high + 0.25)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"{_setting(runs[0])}\nexact zeros (not shown): {', '.join(zeros)}", fontsize=9)
    return _save(plt, fig, path)


def accuracy_vs_sparsity(summary, path, what: str = ""):
    """Test accuracy in percent (mean over seeds, error bars ± 1 std) against sparsity, per
    method and beta; lines are offset a little along x so that none hides another. `what`
    (e.g. "resnet20 on mnist5k") heads the title."""
    plt = _pyplot()
    seeds = sorted({len(row["seeds"]) for row in summary})
    fig, ax = _line_axes(plt, "target sparsity", "test accuracy (%)")
    lines = {}
    for row in summary:
        lines.setdefault((row["method"], row["cka_weight"]), []).append(row)
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P"]
    for index, ((method, beta), rows) in enumerate(sorted(lines.items())):
        rows = sorted(rows, key=lambda r: r["sparsity_target"])
        offset = 0.002 * (index - (len(lines) - 1) / 2)
        ax.errorbar(
            [r["sparsity_target"] + offset for r in rows],
            [100 * r["test_accuracy_mean"] for r in rows],
            yerr=[100 * r["test_accuracy_std"] for r in rows],
            marker=markers[index % len(markers)],
            linestyle=styles[index % len(styles)],
            capsize=3,
            label=f"{method}, beta={beta:g}",
        )
    ax.set_xlim(right=1.0)
    ax.legend(fontsize=8)
    counts = "/".join(map(str, seeds))
    ax.set_title(
        (f"{what}: " if what else "") + f"test accuracy, mean over {counts} seeds (bars: ± 1 std)\n"
        "points moved slightly sideways so that none hides another",
        fontsize=9,
    )
    return _save(plt, fig, path)


def _variant(config):
    """(beta, samples, every) of a run; the knobs do not matter at beta 0."""
    beta = config["cka_weight"]
    if beta == 0:
        return (0.0, None, None)
    return (beta, config.get("cka_samples"), config.get("cka_every"))


def _knobs_order(knobs):
    """Fewer samples first, then more batches between penalties first."""
    samples, every = knobs
    return (samples or 0, -(every or 0))


def _variant_label(variant, knobs_differ):
    beta, samples, every = variant
    if beta == 0 or not knobs_differ:
        return f"beta={beta:g}"
    return f"beta={beta:g}, {samples} samples every {every}"


def dose_response(runs, path):
    """The manipulation check against beta, for the runs of one setting (method and
    sparsity): left, per beta, the paired difference from beta 0 (same seed) of the mean
    within-stage CKA at the end of every epoch (validation probe, inference mode), averaged
    over seeds; middle and right, the paired difference of the final CKA and of test
    accuracy (mean and 95% t-interval), against beta on a log axis. Variants
    with other CKA-SR knobs (samples, every) are drawn as separate series."""
    settings = {(r["config"]["method"], r["config"]["sparsity"]) for r in runs}
    if len(settings) != 1:
        raise ValueError(
            f"`runs` must hold one (method, sparsity) setting; got {sorted(settings)}. "
            "Filter them first."
        )
    variants = {}
    for run in runs:
        variants.setdefault(_variant(run["config"]), {})[run["config"]["seed"]] = run
    base = variants.get((0.0, None, None))
    if not base or len(variants) < 2:
        raise ValueError("`runs` must hold beta 0 and at least one beta > 0 on the same seeds.")
    # Each beta > 0 (in order of beta, then knobs) with its (run, baseline run) pairs.
    pairs = {
        v: [(variants[v][s], base[s]) for s in variants[v] if s in base]
        for v in sorted(variants, key=lambda v: (v[0], *_knobs_order(v[1:])))
        if v[0] != 0
    }
    series = sorted({v[1:] for v in pairs}, key=_knobs_order)
    knobs_differ = len(series) > 1
    plt = _pyplot()
    fig, (trajectory, cka, gain) = plt.subplots(1, 3, figsize=(15, 4.5))
    for variant, paired in pairs.items():
        curves = [
            np.subtract(m["history"]["cka_mean"], b["history"]["cka_mean"]) for m, b in paired
        ]
        curve = np.mean(np.asarray(curves, dtype=float), axis=0)
        trajectory.plot(
            np.arange(1, len(curve) + 1),
            curve,
            marker=".",
            label=f"{_variant_label(variant, knobs_differ)} (n={len(curves)})",
        )
    trajectory.axhline(0.0, color="gray", linewidth=0.8)
    trajectory.xaxis.get_major_locator().set_params(integer=True)
    trajectory.set_xlabel("epoch")
    trajectory.set_ylabel("paired ΔCKA vs beta 0, per epoch")
    trajectory.set_title(
        "mean over seeds, each paired with beta 0 (pairs in the legend)", fontsize=9
    )
    trajectory.legend(fontsize=7)
    for index, knobs in enumerate(series):
        points = [
            (
                variant[0],
                statistics.paired_test([m["cka_mean"] - b["cka_mean"] for m, b in paired]),
                statistics.paired_test(
                    [100 * (m["test_accuracy"] - b["test_accuracy"]) for m, b in paired]
                ),
            )
            for variant, paired in pairs.items()
            if variant[1:] == knobs and len(paired) >= 2
        ]
        if not points:
            continue
        shift = 1.12**index
        label = f"{knobs[0]} samples every {knobs[1]}" if knobs_differ else None
        for ax, which in ((cka, 1), (gain, 2)):
            ax.errorbar(
                [p[0] * shift for p in points],
                [p[which].mean for p in points],
                yerr=[p[which].half_width for p in points],
                marker="os^D"[index % 4],
                capsize=3,
                linestyle="none",  # a line would claim the betas between were measured
                label=label,
            )
    ns = sorted({len(v) for v in variants.values()})
    for ax, ylabel in (
        (cka, "paired ΔCKA vs beta 0 (final)"),
        (gain, "paired test-accuracy gain vs beta 0 (points)"),
    ):
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("beta (log scale)")
        ax.set_ylabel(ylabel)
        pairs_text = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
        title = f"mean and 95% interval over {pairs_text} seed pairs"
        if len(series) > 1:
            title += "\neach further series drawn a little to the right, not to hide another"
        ax.set_title(title, fontsize=9)
        if knobs_differ:
            ax.legend(fontsize=7)
    method, sparsity = settings.pop()
    fig.suptitle(
        f"Does CKA-SR act? {subject(runs[0])}, {method} at {100 * sparsity:g}% sparsity: below 0 "
        "on the first two panels means the penalty lowered the similarity it penalizes",
        fontsize=10,
    )
    return _save(plt, fig, path)


def block_scores(runs, path):
    """One panel per block criterion (first seed, first removal step): each residual block's
    score in graph order, the removed ones in red."""
    plt = _pyplot()
    scored = [r for r in runs if (r.get("structure") or {}).get("block_steps")]
    seed = scored[0]["config"]["seed"]
    panels = [
        r
        for r in scored
        if r["config"]["seed"] == seed and r["structure"]["block_steps"][0]["scores"]
    ]
    if not panels:
        return None
    fig, axes = plt.subplots(
        1, len(panels), figsize=(max(7.0, 4.2 * len(panels)), 4.5), squeeze=False
    )
    for ax, run in zip(axes[0], panels):
        step = run["structure"]["block_steps"][0]
        names = list(step["scores"])
        colors = ["tab:red" if n in step["removed"] else "tab:gray" for n in names]
        ax.scatter(range(len(names)), [step["scores"][n] for n in names], c=colors, s=40)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.removesuffix("_add") for n in names], rotation=60, ha="right")
        criterion = run["config"].get("block_criterion", "cka")
        ax.set_ylabel({"cka": "CKA(input, output)", "angular": "angular distance / pi"}.get(
            criterion, "branch L1 norm"))  # fmt: skip
        ax.set_title(f"{criterion}: {len(step['removed'])} removed (red)")
    fig.suptitle(
        f"Residual block scores, {subject(panels[0])}, seed {seed}, first step", fontsize=11
    )
    return _save(plt, fig, path)


def write_all(results, summary, directory):
    """Writes into `directory`, per (method, sparsity), a CKA heatmap and a weight
    histogram of its first seed (baseline beside CKA-SR), for block removal the blocks'
    scores, and one accuracy-vs-sparsity figure; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    settings = {}
    for run in results:
        config = run["config"]
        settings.setdefault((config["method"], config["sparsity"]), []).append(run)
    for (method, sparsity), runs in settings.items():
        seed = runs[0]["config"]["seed"]
        same = [r for r in runs if r["config"]["seed"] == seed]
        baseline = next((r for r in same if r["config"]["cka_weight"] == 0), None)
        regularized = next((r for r in same if r["config"]["cka_weight"] > 0), None)
        tag = f"{method}_{sparsity:g}"
        paths.append(
            cka_heatmaps(baseline, regularized, os.path.join(directory, f"cka_heatmap_{tag}.png"))
        )
        paths.append(
            magnitude_histograms(same, os.path.join(directory, f"weight_magnitudes_{tag}.png"))
        )
    for sparsity in sorted(
        {r["config"]["sparsity"] for r in results if r["config"]["method"] == "blocks"}
    ):
        runs = [
            r for r in results
            if r["config"]["method"] == "blocks" and r["config"]["sparsity"] == sparsity
        ]  # fmt: skip
        drawn = block_scores(runs, os.path.join(directory, f"block_scores_{sparsity:g}.png"))
        if drawn:
            paths.append(drawn)
    paths.append(
        accuracy_vs_sparsity(
            summary, os.path.join(directory, "accuracy_vs_sparsity.png"), subject(results[0])
        )
    )
    return paths
