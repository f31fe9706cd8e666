"""Draws the README's pictures from a committed results file, without training:
`python docs/img/figures.py` (the ResNet-20 study, benchmarks/results/paper_recipe_resnet20.json)."""

import json
import pathlib

from keras_cka_sr.app import plots, report

HERE = pathlib.Path(__file__).parent
RESULTS = HERE.parents[1] / "benchmarks" / "results" / "paper_recipe_resnet20.json"


def main():
    runs = json.loads(RESULTS.read_text())["runs"]
    plots.accuracy_vs_sparsity(report.summarize(runs), HERE / "accuracy_vs_sparsity.png")
    chosen = [r for r in runs if r["config"]["method"] == "rst" and r["config"]["seed"] == 0]
    chosen = [r for r in chosen if r["config"]["sparsity"] == 0.99]
    baseline = next(r for r in chosen if r["config"]["cka_weight"] == 0)
    cka_sr = next(r for r in chosen if r["config"]["cka_weight"] > 0)
    plots.cka_heatmaps(baseline, cka_sr, HERE / "cka_heatmap.png")


if __name__ == "__main__":
    main()
