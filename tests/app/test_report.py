"""The main job's table: paired gains, p-values, Holm, the CKA difference, the verdicts."""

import pytest

from keras_cka_sr.app import report, statistics


def run(beta, seed, accuracy, cka):
    config = dict(method="rst", sparsity=0.99, cka_weight=beta, seed=seed)
    return dict(
        config=config,
        test_accuracy=accuracy,
        val_accuracy=accuracy,
        sparsity=0.99,
        cka_mean=cka,
        small_weight_share=0.99,
        seconds=1.0,
    )


BASE = [run(0.0, s, a, c) for s, a, c in [(0, 0.90, 0.97), (1, 0.91, 0.96), (2, 0.92, 0.97)]]
ACTED = [run(1e-1, s, a, c) for s, a, c in [(0, 0.93, 0.60), (1, 0.95, 0.62), (2, 0.94, 0.58)]]
IDLE = [run(1e-4, s, a, c) for s, a, c in [(0, 0.91, 0.97), (1, 0.90, 0.96), (2, 0.92, 0.97)]]


def test_gain_and_cka_difference_are_paired_by_seed():
    row = report.summarize(BASE + ACTED)[1]
    gains = [0.03, 0.04, 0.02]
    expected = statistics.paired_test(gains)
    assert row["gain_mean"] == pytest.approx(0.03) and row["gain_p"] == pytest.approx(expected.p)
    assert row["gain_ci95"] == pytest.approx(
        [0.03 - expected.half_width, 0.03 + expected.half_width]
    )
    assert row["gain_mde80"] == pytest.approx(expected.mde80)
    assert row["cka_diff_mean"] == pytest.approx(-0.3667, abs=1e-4)
    assert row["cka_diff_ci95"][1] < 0


def test_holm_adjusts_over_the_tables_comparisons():
    summary = report.summarize(BASE + ACTED + IDLE)
    compared = [row for row in summary if row["cka_weight"] != 0]
    assert [row["gain_p_holm"] for row in compared] == pytest.approx(
        statistics.holm([row["gain_p"] for row in compared])
    )


def test_table_says_what_it_shows_in_words():
    table = report.format_table(report.summarize(BASE + ACTED + IDLE))
    assert "rst 99% beta 1e-01: accuracy higher by 3.00 points" in table
    assert "CKA fell by 0.367: the penalty acted" in table
    assert "rst 99% beta 1e-04: no accuracy difference shown" in table
    assert "CKA not measurably lower" in table
    assert "Holm = p adjusted" in table


def test_one_seed_has_no_spread_and_no_interval():
    table = report.format_table(report.summarize(BASE[:1] + ACTED[:1]))
    assert "± 0.00" not in table and "one seed" in table


def test_without_a_baseline_the_table_says_so():
    table = report.format_table(report.summarize(ACTED))
    assert "add --compare" in table


def test_an_interval_that_excludes_0_after_holm_may_be_chance():
    row = dict(
        method="gmp", sparsity_target=0.98, cka_weight=1e-4, pairs=3, gain_mean=-0.0073,
        gain_ci95=[-0.0131, -0.0016], gain_p_holm=0.66, gain_mde80=0.0072,
        cka_diff_mean=-0.006, cka_diff_ci95=[-0.043, 0.031],
    )  # fmt: skip
    line = report.verdict(row)
    assert "accuracy lower by 0.73 points" in line and "could be chance" in line
    assert report.verdict(dict(row, gain_p_holm=0.01)).count("chance") == 0


def _with(runs, **config):
    return [{**r, "config": {**r["config"], **config}} for r in runs]


def test_runs_that_differ_in_any_setting_are_never_pooled():
    """Two arms at the same beta (8 samples every 5th batch; all 128 every batch) and one
    beta-0 baseline: two rows of 3 pairs each, both paired with the same baseline, and the
    penalty-only fields do not split the baseline off."""
    reference = _with(ACTED, cka_samples=8, cka_every=5)
    all_samples = _with(IDLE, cka_weight=1e-1, cka_samples=128, cka_every=1)
    base = _with(BASE, cka_samples=8, cka_every=5)
    summary = report.summarize(base + reference + all_samples)
    assert [
        (r["cka_weight"], r["setting"], r["pairs"] if "pairs" in r else None) for r in summary
    ] == [
        (0.0, {"cka_every": 5, "cka_samples": 8}, None),
        (0.1, {"cka_every": 1, "cka_samples": 128}, 3),
        (0.1, {"cka_every": 5, "cka_samples": 8}, 3),
    ]
    assert summary[1]["gain_mean"] == pytest.approx(0.0)  # IDLE's accuracies equal BASE's
    assert summary[2]["gain_mean"] == pytest.approx(0.03)
    table = report.format_table(summary)
    assert "cka_every=1 cka_samples=128" in table


def test_a_data_set_or_a_learning_rate_splits_rows_and_their_baselines():
    runs = BASE + ACTED + _with(BASE, learning_rate=0.1) + _with(IDLE, learning_rate=0.1)
    runs += [{**r, "dataset": "digits"} for r in BASE[:2]]
    summary = report.summarize(runs)
    assert len(summary) == 5
    acted = next(r for r in summary if r["cka_weight"] == 0.1)
    idle = next(r for r in summary if r["cka_weight"] == 1e-4)
    assert acted["gain_mean"] == pytest.approx(0.03) and acted["pairs"] == 3
    assert idle["gain_mean"] == pytest.approx(0.0) and idle["pairs"] == 3


def test_a_run_below_its_target_sparsity_is_marked_in_its_line_and_the_table():
    short = {**BASE[0], "sparsity": 0.0, "finite": True, "cka_grad_ratio_max": None}
    short["config"] = {**short["config"], "sparsity": 0.95, "method": "gmp"}
    assert "BELOW TARGET SPARSITY 0.95" in report.run_line(short)
    reached = {**short, "sparsity": 0.9495}
    assert "BELOW" not in report.run_line(reached)
    table = report.format_table(report.summarize([short]))
    assert "1 of 1 runs BELOW TARGET SPARSITY (achieved 0.0000)" in table
