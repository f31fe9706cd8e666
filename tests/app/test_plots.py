"""The main job's figures say what they show: rendered on a tiny study, labels read back."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_cka_sr.app import plots, report  # noqa: E402


def run(method, sparsity, beta, seed, accuracy):
    edges = np.linspace(-8, 1, 46).tolist()
    counts = [0] * 45
    counts[30], counts[33] = 40, 60  # bins [-2.0, -1.8] and [-1.4, -1.2] only
    return dict(
        config=dict(method=method, sparsity=sparsity, cka_weight=beta, seed=seed),
        test_accuracy=accuracy, val_accuracy=accuracy, sparsity=sparsity, cka_mean=0.9,
        small_weight_share=sparsity, seconds=1.0, cka_matrix=[[1.0, 0.9], [0.9, 1.0]],
        cka_layers=["a", "b"], magnitude_histogram=dict(log10_edges=edges, counts=counts, zeros=900),
    )  # fmt: skip


RUNS = [
    run(m, s, b, seed, 0.9 - s / 10 + b)
    for m in ("gmp", "rst")
    for s in (0.9, 0.95)
    for seed in (3, 4)
    for b in (0.0, 1e-4)
]


@pytest.fixture
def figures(monkeypatch, tmp_path):
    drawn = {}

    def keep(plt, fig, path):
        drawn[path.rsplit("/", 1)[-1]] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    plots.write_all(RUNS, report.summarize(RUNS), str(tmp_path))
    yield drawn
    plots._pyplot().close("all")


def test_one_heatmap_and_histogram_per_setting_naming_its_seed(figures):
    assert sorted(figures) == sorted(
        [f"{kind}_{m}_{s}.png" for kind in ("cka_heatmap", "weight_magnitudes")
         for m in ("gmp", "rst") for s in ("0.9", "0.95")] + ["accuracy_vs_sparsity.png"]
    )  # fmt: skip
    heatmap = figures["cka_heatmap_rst_0.95.png"]
    assert "rst at 95% sparsity, seed 3" in heatmap._suptitle.get_text()
    assert [ax.get_title()[:8] for ax in heatmap.axes[:2]] == ["baseline", "CKA-SR, "]


def test_histogram_shows_nonzero_weights_and_the_share_of_zeros(figures):
    ax = figures["weight_magnitudes_gmp_0.9.png"].axes[0]
    assert "exact zeros (not shown): beta=0: 90.0%, beta=0.0001: 90.0%" in ax.get_title()
    assert "nonzero" in ax.get_xlabel()
    # The bins that hold weights (with a 0.25 margin), not the histogram's -8 to 1.
    assert ax.get_xlim() == pytest.approx((-2.25, -0.95))


def test_accuracy_plot_is_in_percent_with_labelled_error_bars_up_to_1(figures):
    ax = figures["accuracy_vs_sparsity.png"].axes[0]
    assert ax.get_ylabel() == "test accuracy (%)" and ax.get_xlim()[1] == 1.0
    assert "(bars: ± 1 std)" in ax.get_title()
    lines = [container.lines[0] for container in ax.containers]
    xs = [tuple(line.get_xdata()) for line in lines]
    assert len(set(xs)) == len(xs) == 4  # offset: no line hides another
    assert min(min(line.get_ydata()) for line in lines) > 50


def dose_run(beta, seed, samples=8, every=5):
    cka = 0.95 - beta - 0.001 * seed  # paired ΔCKA = -beta exactly
    config = dict(
        method="rst",
        sparsity=0.99,
        cka_weight=beta,
        cka_samples=samples,
        cka_every=every,
        seed=seed,
    )
    return dict(config=config, cka_mean=cka, test_accuracy=0.9 + 0.01 * seed + beta / 10,
                history=dict(cka_mean=[0.97, 0.96, cka]))  # fmt: skip


DOSE = [dose_run(b, seed) for b in (0.0, 1e-3, 1e-1) for seed in (0, 1, 2)] + [
    dose_run(1e-3, seed, samples=128, every=1) for seed in (0, 1, 2)
]


@pytest.fixture
def dose_figure(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path: drawn.append(fig))
    plots.dose_response(DOSE, str(tmp_path / "dose.png"))
    yield drawn[0]
    plots._pyplot().close("all")


def test_dose_response_draws_the_paired_cka_difference_against_log_beta(dose_figure):
    trajectory, cka, gain = dose_figure.axes
    assert cka.get_xscale() == gain.get_xscale() == "log"
    reference = cka.containers[0].lines[0]  # series by samples: 8 before 128
    assert list(reference.get_xdata()) == [1e-3, 1e-1]
    assert list(reference.get_ydata()) == pytest.approx([-1e-3, -1e-1])
    assert list(gain.containers[0].lines[0].get_ydata()) == pytest.approx([0.01, 1.0])
    assert "below 0 on the first two panels" in dose_figure._suptitle.get_text()


def test_dose_response_trajectory_is_paired_and_names_each_variant(dose_figure):
    assert list(dose_figure.axes[0].lines[-2].get_ydata()) == pytest.approx([0, 0, -1e-1])
    labels = [t.get_text() for t in dose_figure.axes[0].get_legend().get_texts()]
    assert "beta=0.001, 128 samples every 1 (n=3)" in labels
    assert "beta=0.1, 8 samples every 5 (n=3)" in labels


def test_dose_response_refuses_mixed_settings_or_no_baseline():
    other = dict(DOSE[0], config=dict(DOSE[0]["config"], sparsity=0.95))
    with pytest.raises(ValueError, match="one \\(method, sparsity\\) setting"):
        plots.dose_response(DOSE + [other], "unused.png")
    with pytest.raises(ValueError, match="beta 0 and at least one beta > 0"):
        plots.dose_response([r for r in DOSE if r["config"]["cka_weight"] > 0], "unused.png")


def test_figures_name_the_model_and_the_data_set(tmp_path):
    run = {**RUNS[0], "config": {**RUNS[0]["config"], "model": "resnet20"}, "dataset": "mnist5k"}
    assert plots.subject(run) == "resnet20 on mnist5k"
    path = plots.accuracy_vs_sparsity(
        report.summarize([run]), tmp_path / "a.png", plots.subject(run)
    )
    assert path.exists()


def test_block_scores_mark_the_removed_blocks_per_criterion(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plots, "_save", lambda plt, fig, path: drawn.setdefault(path, fig) and path)
    scores = {"stage1_block2_add": 0.99, "stage1_block3_add": 0.95, "stage3_block2_add": 0.97}
    runs = []
    for criterion, removed in (("cka", ["stage1_block2_add"]), ("random", ["stage1_block3_add"])):
        r = run("blocks", 0.25, 0.0, 0, 0.9)
        r["config"]["block_criterion"] = criterion
        r["structure"] = {"block_steps": [
            {"scores": scores if criterion == "cka" else {}, "removed": removed}
        ]}  # fmt: skip
        runs.append(r)
    plots.block_scores(runs, str(tmp_path / "b.png"))
    (fig,) = drawn.values()
    (ax,) = fig.axes  # random has no scores: one panel
    colors = [tuple(c[:3]) for c in ax.collections[0].get_facecolors()]
    assert colors.count(colors[0]) == 1 and ax.get_title() == "cka: 1 removed (red)"
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "stage1_block2"
    plots._pyplot().close("all")
