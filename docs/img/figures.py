"""Draws the docs' pictures from committed results files, without training:
`python docs/img/figures.py` (the ResNet-20 study, benchmarks/results/paper_recipe_resnet20.json;
the dose-response studies, benchmarks/results/dose_response_*.json; the block-removal study,
block_removal_resnet32.json)."""

import pathlib

from keras_cka_sr.app import plots, report, study

HERE = pathlib.Path(__file__).parent
RESULTS = HERE.parents[1] / "benchmarks" / "results"


def _runs(name):
    """A results file's runs, each with its data set (older runs take the file's)."""
    return list(study.finished_runs(str(RESULTS / name)).values())


def main():
    runs = [r for r in _runs("paper_recipe_resnet20.json") if r["config"]["method"] != "dense"]
    plots.accuracy_vs_sparsity(
        report.summarize(runs), HERE / "accuracy_vs_sparsity.png", plots.subject(runs[0])
    )
    chosen = [r for r in runs if r["config"]["method"] == "rst" and r["config"]["seed"] == 0]
    chosen = [r for r in chosen if r["config"]["sparsity"] == 0.99]
    baseline = next(r for r in chosen if r["config"]["cka_weight"] == 0)
    cka_sr = next(r for r in chosen if r["config"]["cka_weight"] > 0)
    plots.cka_heatmaps(baseline, cka_sr, HERE / "cka_heatmap.png")
    for model in ("resnet20", "lenet5"):
        if (RESULTS / f"dose_response_{model}.json").exists():
            runs = _runs(f"dose_response_{model}.json")
            plots.dose_response(runs, HERE / f"dose_response_{model}.png")
    plots.block_scores(_runs("block_removal_resnet32.json"), HERE / "block_scores_resnet32.png")


if __name__ == "__main__":
    main()
