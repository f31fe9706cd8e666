"""The main job's report: per-setting statistics, paired gains, the table, and the results
file (strict JSON, written atomically, read back for `--resume`)."""

import dataclasses
import json
import math
import os

import numpy as np


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


# Two-sided 95% quantiles of Student's t, by degrees of freedom (1 to 30).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def paired_interval(gains):
    """(mean, std, half-width of the 95% t-interval of the mean) of paired differences;
    the half-width is NaN for fewer than 2 pairs (and t(30) is used beyond 31)."""
    gains = np.asarray(gains, dtype=float)
    if len(gains) < 2:
        return float(gains.mean()), 0.0, math.nan
    std = float(gains.std(ddof=1))
    t = _T975[min(len(gains) - 1, len(_T975)) - 1]
    return float(gains.mean()), std, t * std / math.sqrt(len(gains))


def _add_paired_deltas(summary, results):
    """Accuracy gain over beta=0 with the same seeds: mean, std and 95% interval."""
    by_key = {_setting(r["config"]) + (r["config"]["seed"],): r for r in results}
    for row in summary:
        if row["cka_weight"] == 0:
            continue
        gains = []
        for seed in row["seeds"]:
            mine = by_key.get((row["method"], row["sparsity_target"], row["cka_weight"], seed))
            base = by_key.get((row["method"], row["sparsity_target"], 0.0, seed))
            if mine is not None and base is not None:
                gains.append(mine["test_accuracy"] - base["test_accuracy"])
        if gains:
            row["gain_mean"], row["gain_std"], half = paired_interval(gains)
            row["gain_ci95"] = [row["gain_mean"] - half, row["gain_mean"] + half]


def format_table(summary):
    header = (
        f"{'method':<8} {'sparsity':>8} {'beta':>7} {'test acc (mean ± std)':>24} {'n':>2} "
        f"{'gain vs beta=0':>17} {'95% interval':>16} {'achieved':>9} {'CKA':>6} {'|w|<1e-3':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in summary:
        acc = f"{100 * row['test_accuracy_mean']:.2f} ± {100 * row['test_accuracy_std']:.2f}"
        gain = (
            f"{100 * row['gain_mean']:+.2f} ± {100 * row['gain_std']:.2f}"
            if "gain_mean" in row
            else ""
        )
        low, high = row.get("gain_ci95", (math.nan, math.nan))
        interval = f"[{100 * low:+.2f}, {100 * high:+.2f}]" if math.isfinite(low) else ""
        lines.append(
            f"{row['method']:<8} {row['sparsity_target']:>8.3f} {row['cka_weight']:>7.0e} {acc:>24} "
            f"{len(row['seeds']):>2} {gain:>17} {interval:>16} {row['sparsity_achieved']:>9.4f} "
            f"{row['cka_mean']:>6.3f} {row['small_weight_share']:>9.4f}"
        )
    return "\n".join(lines)


def run_key(config):
    """A run's identity: its configuration without the console verbosity. Fields a
    result file predates count at their defaults, so older studies resume."""
    from keras_cka_sr.app import experiment

    full = {f.name: f.default for f in dataclasses.fields(experiment.RunConfig)}
    full.update(config)
    return json.dumps({k: v for k, v in full.items() if k != "verbose"}, sort_keys=True)


def finished_runs(path):
    """Runs already written to `path` by an earlier (interrupted) invocation, by key.

    A file that is not a results file of this command is refused (and left untouched)."""
    if not os.path.exists(path):
        return {}

    def fail(what):
        raise SystemExit(
            f"keras-cka-sr: error: --resume: {path!r} is not a results file of "
            f"keras-cka-sr train ({what}); it was left untouched. Give another --output, "
            "or move the file away to start afresh."
        )

    try:
        with open(path) as handle:
            payload = json.load(handle)
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read it: {error}")
    except json.JSONDecodeError as error:
        fail(f"not valid JSON: {error}")
    if not isinstance(payload, dict) or not isinstance(payload.get("runs"), list):
        fail('expected a JSON object with a "runs" list')
    runs = payload["runs"]
    for index, run in enumerate(runs):
        if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
            fail(f'run {index} has no "config" object')
    return {run_key(run["config"]): run for run in runs}


def write_results(path, dataset, backend, results):
    """All finished runs as strict JSON (NaN -> null), replaced atomically."""
    payload = {
        "dataset": dataset,
        "backend": backend,
        "summary": summarize(results),
        "runs": results,
    }
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(_nan_to_none(payload), handle, indent=1, default=_json_default, allow_nan=False)
    os.replace(temporary, path)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        return None
    return value


def _json_default(value):
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
