"""PNG figures of the main job (matplotlib, Agg backend: no screen needed)."""

import os

import numpy as np


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


def cka_heatmaps(baseline, cka_sr, path):
    """CKA matrices of the tapped layers, baseline and CKA-SR side by side."""
    plt = _pyplot()
    runs = [(r, t) for r, t in ((baseline, "baseline"), (cka_sr, "CKA-SR")) if r is not None]
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.8), squeeze=False)
    for ax, (run, title) in zip(axes[0], runs):
        matrix = np.asarray(run["cka_matrix"])
        image = ax.imshow(matrix, vmin=0, vmax=1, cmap="magma")
        labels = run["cka_layers"]
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        beta = run["config"]["cka_weight"]
        ax.set_title(
            f"{title} (beta={beta:g}): mean within-stage CKA {run['cka_mean']:.3f}", fontsize=9
        )
        fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(plt, fig, path)


def magnitude_histograms(runs, path):
    """Histogram of log10 |w| of the prunable kernels, one line per run."""
    plt = _pyplot()
    fig, ax = _line_axes(plt, "log10 |w| (nonzero kernel weights)", "count")
    for run in runs:
        hist = run["magnitude_histogram"]
        edges = np.asarray(hist["log10_edges"])
        centers = (edges[:-1] + edges[1:]) / 2
        label = f"beta={run['config']['cka_weight']:g} ({hist['zeros']} exact zeros)"
        ax.step(centers, hist["counts"], where="mid", label=label)
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def accuracy_vs_sparsity(summary, path):
    """Test accuracy (mean ± std over seeds) against sparsity, per method and beta."""
    plt = _pyplot()
    fig, ax = _line_axes(plt, "target sparsity", "test accuracy")
    lines = {}
    for row in summary:
        lines.setdefault((row["method"], row["cka_weight"]), []).append(row)
    for (method, beta), rows in sorted(lines.items()):
        rows = sorted(rows, key=lambda r: r["sparsity_target"])
        x = [r["sparsity_target"] for r in rows]
        ax.errorbar(
            x,
            [r["test_accuracy_mean"] for r in rows],
            yerr=[r["test_accuracy_std"] for r in rows],
            marker="o",
            capsize=3,
            label=f"{method}, beta={beta:g}",
        )
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def write_all(results, summary, directory):
    """Writes the three figures into `directory`; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    first = results[0]["config"]
    same = [
        r
        for r in results
        if r["config"]["method"] == first["method"]
        and r["config"]["sparsity"] == first["sparsity"]
        and r["config"]["seed"] == first["seed"]
    ]
    baseline = next((r for r in same if r["config"]["cka_weight"] == 0), None)
    regularized = next((r for r in same if r["config"]["cka_weight"] > 0), None)
    paths.append(cka_heatmaps(baseline, regularized, os.path.join(directory, "cka_heatmap.png")))
    paths.append(magnitude_histograms(same, os.path.join(directory, "weight_magnitudes.png")))
    paths.append(accuracy_vs_sparsity(summary, os.path.join(directory, "accuracy_vs_sparsity.png")))
    return paths
