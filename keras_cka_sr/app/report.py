"""The main job's report: per-setting statistics, paired gains and the table (the results
file and resume are `study`'s)."""

import math

import numpy as np

from keras_cka_sr.app import stats


def summarize(results):
    """One row per (method, sparsity, beta): mean ± std over seeds."""
    rows = {}
    for r in results:
        rows.setdefault(_setting(r["config"]), []).append(r)
    summary = []
    for (method, sparsity, beta), runs in sorted(rows.items()):
        acc = np.array([r["test_accuracy"] for r in runs])
        summary.append(
            {
                "method": method,
                "sparsity_target": sparsity,
                "cka_weight": beta,
                "seeds": [r["config"]["seed"] for r in runs],
                "test_accuracy_mean": float(acc.mean()),
                "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "val_accuracy_mean": float(np.mean([r["val_accuracy"] for r in runs])),
                "sparsity_achieved": float(np.mean([r["sparsity"] for r in runs])),
                "cka_mean": float(np.mean([r["cka_mean"] for r in runs])),
                "small_weight_share": float(np.mean([r["small_weight_share"] for r in runs])),
                "seconds_mean": float(np.mean([r["seconds"] for r in runs])),
            }
        )
    _add_paired_deltas(summary, results)
    return summary


def _setting(config):
    """(method, sparsity, beta) of a run; dense runs have sparsity 0 whatever was passed."""
    sparsity = config["sparsity"] if config["method"] != "dense" else 0.0
    return config["method"], sparsity, config["cka_weight"]


def _add_paired_deltas(summary, results):
    """Against beta = 0 with the same seeds: the accuracy gain (mean, std, 95% interval,
    paired t-test p, Holm-adjusted p across the table's comparisons, smallest effect
    detectable with 80% power) and the difference of the final mean within-stage CKA (mean
    and 95% interval: the manipulation check)."""
    by_key = {_setting(r["config"]) + (r["config"]["seed"],): r for r in results}
    compared = []
    for row in summary:
        if row["cka_weight"] == 0:
            continue
        pairs = []
        for seed in row["seeds"]:
            mine = by_key.get((row["method"], row["sparsity_target"], row["cka_weight"], seed))
            base = by_key.get((row["method"], row["sparsity_target"], 0.0, seed))
            if mine is not None and base is not None:
                pairs.append((mine, base))
        if not pairs:
            continue
        gain = stats.paired_test([m["test_accuracy"] - b["test_accuracy"] for m, b in pairs])
        cka_diff = stats.paired_test([m["cka_mean"] - b["cka_mean"] for m, b in pairs])
        row.update(
            pairs=gain.n,
            gain_mean=gain.mean,
            gain_std=gain.std,
            gain_ci95=[gain.mean - gain.half_width, gain.mean + gain.half_width],
            gain_p=gain.p,
            gain_mde80=gain.mde80,
            cka_diff_mean=cka_diff.mean,
            cka_diff_ci95=[
                cka_diff.mean - cka_diff.half_width,
                cka_diff.mean + cka_diff.half_width,
            ],
        )
        compared.append(row)
    for row, adjusted in zip(compared, stats.holm([row["gain_p"] for row in compared])):
        row["gain_p_holm"] = adjusted


COLUMNS = """\
test acc % = mean ± std over seeds (no spread for one seed); gain, ΔCKA = paired by seed with
beta 0: mean [95% t-interval]; p = paired t-test; Holm = p adjusted over this table's
comparisons; MDE = the true gain these seeds detect 80% of the time; CKA = final mean
within-stage CKA of the tapped layers (validation probe, inference mode); sparsity = achieved;
|w|<1e-3 = share of weights below 1e-3 (zeros included)."""


def format_table(summary):
    """The console table, its column legend and one verdict line per comparison."""
    header = (
        f"{'method':<7} {'sparsity':>8} {'beta':>7} {'test acc %':>13} {'n':>2} "
        f"{'gain [95% interval]':>22} {'p':>5} {'Holm':>5} {'MDE':>5} {'CKA':>5} "
        f"{'ΔCKA [95% interval]':>25} {'sparsity':>8} {'|w|<1e-3':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in summary:
        acc = f"{100 * row['test_accuracy_mean']:.2f}"
        if len(row["seeds"]) > 1:
            acc += f" ± {100 * row['test_accuracy_std']:.2f}"
        gain = p = holm = mde = cka_diff = ""
        if "gain_mean" in row:
            gain = stats.format_estimate(
                100 * row["gain_mean"], [100 * v for v in row["gain_ci95"]], 2
            )
            cka_diff = stats.format_estimate(row["cka_diff_mean"], row["cka_diff_ci95"], 3)
            p, holm = _p(row["gain_p"]), _p(row["gain_p_holm"])
            mde = f"{100 * row['gain_mde80']:.2f}" if _finite(row["gain_mde80"]) else ""
        lines.append(
            f"{row['method']:<7} {row['sparsity_target']:>8.3f} {row['cka_weight']:>7.0e} "
            f"{acc:>13} {len(row['seeds']):>2} {gain:>22} {p:>5} {holm:>5} {mde:>5} "
            f"{row['cka_mean']:>5.3f} {cka_diff:>25} {row['sparsity_achieved']:>8.4f} "
            f"{row['small_weight_share']:>8.4f}"
        )
    lines += ["", COLUMNS]
    if not any(row["cka_weight"] == 0 for row in summary):
        lines += ["", "No baseline: add --compare to train beta 0 on the same seeds and see gains."]
    else:
        lines += [""] + [verdict(row) for row in summary if row["cka_weight"] != 0]
    return "\n".join(lines)


def verdict(row) -> str:
    """One line in words: what the comparison of `row` with beta 0 shows."""
    name = f"{row['method']} {100 * row['sparsity_target']:g}% beta {row['cka_weight']:.0e}"
    if "gain_mean" not in row:
        return f"{name}: no beta 0 run with the same seeds; nothing to compare."
    if row["pairs"] < 2:
        return f"{name}: one seed: a difference of one pair, no interval (give more --seeds)."
    low, high = row["gain_ci95"]
    if low > 0 or high < 0:
        word = "higher" if low > 0 else "lower"
        holm = row["gain_p_holm"]
        chance = "" if holm < 0.05 else ": could be chance across the table"
        accuracy = (
            f"accuracy {word} by {abs(100 * row['gain_mean']):.2f} points (interval "
            f"excludes 0; Holm p {_p(holm)}{chance})"
        )
    else:
        accuracy = (
            "no accuracy difference shown (interval includes 0; MDE "
            f"{100 * row['gain_mde80']:.2f} points)"
        )
    low, high = row["cka_diff_ci95"]
    if high < 0:
        acted = f"CKA fell by {-row['cka_diff_mean']:.3f}: the penalty acted"
    elif low > 0:
        acted = f"CKA rose by {row['cka_diff_mean']:.3f}"
    else:
        acted = "CKA not measurably lower: the penalty may not have acted"
    return f"{name}: {accuracy}; {acted}."


def _p(value):
    if not _finite(value):
        return ""
    return "<.001" if value < 0.001 else f"{value:.3f}"[1:] if value < 1 else "1"


def _finite(value):
    return value is not None and math.isfinite(value)


def run_line(result: dict) -> str:
    """One run's figures in a line: accuracy, sparsity, CKA, time and the gradient ratio."""
    notes = ""
    ratio = result["cka_grad_ratio_max"]
    if ratio is not None and math.isfinite(ratio):
        notes = f", penalty/task gradient <= {ratio:.2g}"
    elif ratio == math.inf:
        notes = ", penalty/task gradient unbounded (the task's was 0 on a kernel)"
    if not result["finite"]:
        notes += "  NON-FINITE (loss or weights are NaN/inf)"
    return (
        f"test accuracy {result['test_accuracy']:.4f}, sparsity {result['sparsity']:.4f}, "
        f"mean CKA {result['cka_mean']:.3f}, {result['seconds']:.1f}s{notes}"
    )


def duration(seconds):
    """`42s`, `7m`, `1h05m`: a rough time left."""
    if seconds < 90:
        return f"{seconds:.0f}s"
    minutes = round(seconds / 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
