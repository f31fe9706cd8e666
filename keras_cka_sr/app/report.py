"""The main job's report: per-setting statistics, paired gains and the table (the results
file and resume are `study`'s)."""

import dataclasses
import math

import numpy as np

from keras_cka_sr.app import statistics
from keras_cka_sr.app.run_config import RunConfig

# Fields that change nothing in a run without the penalty (beta 0): a beta-0 run is the
# baseline of every setting of these.
PENALTY_FIELDS = ("cka_samples", "cka_every", "cka_start", "cka_grad_cap")
_SHOWN = ("method", "sparsity", "cka_weight")  # a row's own columns
_NOT_A_SETTING = ("seed", "verbose")
_DATA_FIELDS = ("dataset", "subset", "backend")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


def summarize(results: list[dict]) -> list[dict]:
    """One row per setting: mean ± std over seeds, and paired gains over beta 0.

    A setting is every configuration field (and data set, subset, backend) of a run but its
    seed: runs that differ in anything else are never pooled. The fields that vary among
    `results` besides method, sparsity and beta are the row's `setting` (e.g. `{"cka_samples":
    128, "cka_every": 1}`); `{}` where nothing else varies."""
    full = [full_setting(r) for r in results]
    names = sorted({name for setting in full for name in setting} - set(_SHOWN))
    varying = [n for n in names if len({_hashable(s.get(n)) for s in full}) > 1]
    rows = {}
    for run, setting in zip(results, full):
        key = (
            setting["method"],
            setting["sparsity"],
            setting["cka_weight"],
            tuple((n, _hashable(setting.get(n))) for n in varying),
        )
        rows.setdefault(key, []).append(run)
    summary = []
    for (method, sparsity, beta, extra), runs in sorted(rows.items(), key=_row_order):
        acc = np.array([r["test_accuracy"] for r in runs])
        summary.append(
            {
                "method": method,
                "sparsity_target": sparsity,
                "cka_weight": beta,
                "setting": {n: full_setting(runs[0]).get(n) for n, _ in extra},
                "seeds": [r["config"]["seed"] for r in runs],
                "test_accuracy_mean": float(acc.mean()),
                "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "val_accuracy_mean": float(np.mean([r["val_accuracy"] for r in runs])),
                "sparsity_achieved": float(np.mean([r["sparsity"] for r in runs])),
                "cka_mean": float(np.mean([r["cka_mean"] for r in runs])),
                "small_weight_share": float(np.mean([r["small_weight_share"] for r in runs])),
                "seconds_mean": float(np.mean([r["seconds"] for r in runs])),
                "below_target": sum(below_target(r) for r in runs),
                "_runs": runs,
            }
        )
    _add_paired_deltas(summary)
    for row in summary:
        del row["_runs"]
    return summary


def full_setting(run):
    """A run's configuration less its seed, with its data set, subset and backend (when the
    run records them); fields a run predates (absent or null) count at their defaults; dense runs have
    sparsity 0 whatever was passed."""
    # A field a run predates counts at its default, whether absent or written as null
    # (`nesterov` was null in runs from before the recipe had it).
    config = {**_DEFAULTS, **{k: v for k, v in run["config"].items() if v is not None}}
    setting = {k: v for k, v in config.items() if k not in _NOT_A_SETTING}
    setting.update({n: run[n] for n in _DATA_FIELDS if n in run})
    if setting.get("method") == "dense":
        setting["sparsity"] = 0.0
    return setting


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _row_order(item):
    (method, sparsity, beta, extra), _ = item
    return (method, sparsity, beta, tuple((n, (v is not None, str(v))) for n, v in extra))


def _baseline(row, summary):
    """The beta-0 row `row` is compared with: same method, sparsity and setting, where the
    fields that change nothing without the penalty (`PENALTY_FIELDS`) match if such a row
    exists, else the one beta-0 row that differs only in them (none if several do)."""
    candidates = [
        other
        for other in summary
        if other["cka_weight"] == 0
        and (other["method"], other["sparsity_target"]) == (row["method"], row["sparsity_target"])
        and _without_penalty(other["setting"]) == _without_penalty(row["setting"])
    ]
    exact = [other for other in candidates if other["setting"] == row["setting"]]
    if exact:
        return exact[0]
    return candidates[0] if len(candidates) == 1 else None


def _without_penalty(setting):
    return {k: v for k, v in setting.items() if k not in PENALTY_FIELDS}


def _add_paired_deltas(summary):
    """Against its beta-0 row (`_baseline`) with the same seeds: the accuracy gain (mean,
    std, 95% interval, paired t-test p, Holm-adjusted p across the table's comparisons,
    smallest effect detectable with 80% power) and the difference of the final mean
    within-stage CKA (mean and 95% interval: the manipulation check)."""
    compared = []
    for row in summary:
        if row["cka_weight"] == 0:
            continue
        baseline = _baseline(row, summary)
        if baseline is None:
            continue
        base_by_seed = {r["config"]["seed"]: r for r in baseline["_runs"]}
        pairs = [
            (mine, base_by_seed[mine["config"]["seed"]])
            for mine in row["_runs"]
            if mine["config"]["seed"] in base_by_seed
        ]
        if not pairs:
            continue
        gain = statistics.paired_test([m["test_accuracy"] - b["test_accuracy"] for m, b in pairs])
        cka_diff = statistics.paired_test([m["cka_mean"] - b["cka_mean"] for m, b in pairs])
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
    for row, adjusted in zip(compared, statistics.holm([row["gain_p"] for row in compared])):
        row["gain_p_holm"] = adjusted


COLUMNS = """\
test acc % = mean ± std over seeds (no spread for one seed); gain, ΔCKA = paired by seed with
beta 0: mean [95% t-interval]; p = paired t-test; Holm = p adjusted over this table's
comparisons; MDE = the true gain these seeds detect 80% of the time; CKA = final mean
within-stage CKA of the tapped layers (validation probe, inference mode); sparsity = achieved
(methods channels, blocks: the fraction of FLOPs removed); |w|<1e-3 = share of weights below 1e-3
(zeros included)."""


def format_table(summary):
    """The console table, its column legend and one verdict line per comparison."""
    header = (
        f"{'method':<7} {'sparsity':>8} {'beta':>7} {'test acc %':>13} {'n':>2} "
        f"{'gain [95% interval]':>22} {'p':>5} {'Holm':>5} {'MDE':>5} {'CKA':>5} "
        f"{'ΔCKA [95% interval]':>25} {'sparsity':>8} {'|w|<1e-3':>8}"
    )
    settings = any(row.get("setting") for row in summary)
    if settings:
        header += "  setting"
    lines = [header, "-" * len(header)]
    for row in summary:
        acc = f"{100 * row['test_accuracy_mean']:.2f}"
        if len(row["seeds"]) > 1:
            acc += f" ± {100 * row['test_accuracy_std']:.2f}"
        gain = p = holm = mde = cka_diff = ""
        if "gain_mean" in row:
            gain = statistics.format_estimate(
                100 * row["gain_mean"], [100 * v for v in row["gain_ci95"]], 2
            )
            cka_diff = statistics.format_estimate(row["cka_diff_mean"], row["cka_diff_ci95"], 3)
            p, holm = _p(row["gain_p"]), _p(row["gain_p_holm"])
            mde = f"{100 * row['gain_mde80']:.2f}" if _finite(row["gain_mde80"]) else ""
        lines.append(
            f"{row['method']:<7} {row['sparsity_target']:>8.3f} {row['cka_weight']:>7.0e} "
            f"{acc:>13} {len(row['seeds']):>2} {gain:>22} {p:>5} {holm:>5} {mde:>5} "
            f"{row['cka_mean']:>5.3f} {cka_diff:>25} {row['sparsity_achieved']:>8.4f} "
            f"{row['small_weight_share']:>8.4f}" + (f"  {setting_text(row)}" if settings else "")
        )
    lines += ["", COLUMNS]
    short = [row for row in summary if row.get("below_target")]
    if short:
        lines.append("")
    for row in short:
        lines.append(
            f"{row['method']} {100 * row['sparsity_target']:g}% beta {row['cka_weight']:.0e}: "
            f"{row['below_target']} of {len(row['seeds'])} runs BELOW TARGET SPARSITY "
            f"(achieved {row['sparsity_achieved']:.4f}): the schedule did not reach it; more "
            "epochs or data (steps count batches)."
        )
    if not any(row["cka_weight"] == 0 for row in summary):
        lines += ["", "No baseline: add --compare to train beta 0 on the same seeds and see gains."]
    else:
        lines += [""] + [verdict(row) for row in summary if row["cka_weight"] != 0]
    return "\n".join(lines)


def setting_text(row: dict) -> str:
    """The fields besides method, sparsity and beta that set `row` apart: `a=1 b=2`."""
    return " ".join(f"{name}={value}" for name, value in row.get("setting", {}).items())


def verdict(row) -> str:
    """One line in words: what the comparison of `row` with beta 0 shows."""
    name = f"{row['method']} {100 * row['sparsity_target']:g}% beta {row['cka_weight']:.0e}"
    if row.get("setting"):
        name += f" ({setting_text(row)})"
    if "gain_mean" not in row:
        return f"{name}: no beta 0 run of the same setting and seeds; nothing to compare."
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


# Achieved sparsity this far below the target is a run that did not reach it (per-layer
# rounding of a model's masks stays well below this).
BELOW_TARGET = 0.002


def below_target(result: dict) -> bool:
    """Whether a sparse run ended less sparse than its target (dense runs have none)."""
    config = result["config"]
    if config.get("method") == "dense" or result.get("sparsity") is None:
        return False
    return result["sparsity"] < config["sparsity"] - BELOW_TARGET


def run_line(result: dict) -> str:
    """One run's figures in a line: accuracy, sparsity, CKA, time and the gradient ratio."""
    notes = ""
    ratio = result["cka_grad_ratio_max"]
    if ratio is not None and math.isfinite(ratio):
        notes = f", penalty/task gradient <= {ratio:.2g}"
    elif ratio == math.inf:
        notes = ", penalty/task gradient unbounded (the task's was 0 on a kernel)"
    if below_target(result):
        notes += f"  BELOW TARGET SPARSITY {result['config']['sparsity']:g}"
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
