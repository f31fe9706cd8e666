"""A study: the grid of runs one `keras-cka-sr train` asks for, the results file it grows
and the bookkeeping that lets an interrupted study resume without losing or mixing up runs.

* A run's key is everything that changes its result: its `RunConfig` (less the console
  verbosity) and the data set, subset and backend it ran on. `--resume` skips a run only
  when its key is in the file.
* The results file is created exclusively (two studies never share a file by accident),
  and every write goes to a fresh file in the same folder, is flushed to disk and renamed
  over the old one: a process killed at any moment leaves the previous file whole.
* Progress is reported through a `Progress` object (the command line prints it); this
  module prints nothing.
"""

import dataclasses
import json
import math
import os
import tempfile
import time

from keras_cka_sr.app import report
from keras_cka_sr.app.run_config import RunConfig

DEFAULT_OUTPUT_DIR = "keras-cka-sr-runs"
# What a run ran on besides its `RunConfig`: stored beside `config` in every run.
DATA_FIELDS = ("dataset", "subset", "backend")


_DEFAULT_BLOCK_CRITERION = next(
    f.default for f in dataclasses.fields(RunConfig) if f.name == "block_criterion"
)


class StudyError(ValueError):
    """A study that cannot start or go on as asked; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """What the runs of a study ran on: `DATA_FIELDS` of every run."""

    dataset: str
    subset: int | None
    backend: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def grid(
    common: dict,
    methods: list[str],
    sparsities: list[float],
    betas: list[float],
    seeds: list[int],
    compare: bool = False,
    block_criteria: list[str] = ("cka",),
) -> list[RunConfig]:
    """Every run's `RunConfig`, in run order: per method, sparsity (dense: one), block
    criterion (`blocks` only: the others run once, at the default), seed and beta (with 0
    added by `compare`). Values listed twice are refused (a seed paired with itself); an
    invalid value raises before any run trains."""
    block_criteria = list(block_criteria)
    for flag, values in (
        ("--method", methods),
        ("--sparsity", sparsities),
        ("--cka-weight", betas),
        ("--seeds", seeds),
        ("--block-criterion", block_criteria),
    ):
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise StudyError(
                f"{flag} lists {', '.join(map(str, repeated))} more than once; give each "
                "value once."
            )
    all_betas = sorted(set(betas) | ({0.0} if compare else set()))
    configs = []
    for method in methods:
        criteria = block_criteria if method == "blocks" else [_DEFAULT_BLOCK_CRITERION]
        for sparsity in [0.0] if method == "dense" else sparsities:
            for criterion in criteria:
                for seed in seeds:
                    for beta in all_betas:
                        configs.append(
                            RunConfig(
                                **common,
                                method=method,
                                sparsity=sparsity,
                                block_criterion=criterion,
                                seed=seed,
                                cka_weight=beta,
                            )
                        )
    return configs


def run_key(config: dict, setting: dict) -> str:
    """A run's identity: its configuration without the console verbosity, and its data
    set, subset and backend. Fields a results file predates count at their defaults, so
    older studies resume."""
    full = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    full.update(config)
    full.pop("verbose", None)
    full.update({name: setting.get(name) for name in DATA_FIELDS})
    return json.dumps(full, sort_keys=True)


def key_of(run: dict) -> str:
    """`run_key` of a run as written to a results file."""
    return run_key(run["config"], run)


def default_output(now: time.struct_time | None = None) -> str:
    """A results path that no other study has: keras-cka-sr-runs/<date>-<time>.json (a
    suffix -2, -3, ... if taken), created empty-but-valid and exclusively here, so two
    studies started in the same second get two files."""
    stamp = time.strftime("%Y%m%d-%H%M%S", now or time.localtime())
    stem = os.path.join(DEFAULT_OUTPUT_DIR, stamp)
    os.makedirs(DEFAULT_OUTPUT_DIR, exist_ok=True)
    for count in range(1, 10_000):
        path = f"{stem}.json" if count == 1 else f"{stem}-{count}.json"
        if _create_exclusively(path):
            return path
    raise StudyError(f"no free results file name {stem}-N.json in {DEFAULT_OUTPUT_DIR!r}.")


def claim_output(path: str, resume: bool, overwrite: bool) -> None:
    """Makes `path` this study's results file, or refuses: an existing file is only
    continued (`resume`) or replaced (`overwrite`), never silently lost."""
    if resume:
        finished_runs(path)  # refuses a file that is not a results file
        if not os.path.exists(path):
            _create_exclusively(path)
        return
    if overwrite:
        write_results(path, [])
        return
    if not _create_exclusively(path):
        raise StudyError(
            f"--output {path!r} already exists (another study's results?); nothing was "
            "trained and it was left untouched. Add --resume to continue that study, give "
            "another --output, or add --overwrite to replace it."
        )


def _create_exclusively(path: str) -> bool:
    """Creates `path` as a results file with no runs; False if it exists already."""
    try:
        handle = open(path, "x")
    except FileExistsError:
        return False
    with handle:
        handle.write(_dumps(_payload([])))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def finished_runs(path: str) -> dict[str, dict]:
    """Runs already written to `path`, by `key_of`; {} when there is no file.

    Runs of files written before runs recorded their data set and backend take the file's.
    A file that is not a results file of this command is refused (and left untouched)."""
    if not os.path.exists(path):
        return {}

    def fail(what):
        raise StudyError(
            f"--resume: {path!r} is not a results file of keras-cka-sr train ({what}); it "
            "was left untouched. Give another --output, or move the file away to start "
            "afresh."
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
    runs = {}
    for index, run in enumerate(payload["runs"]):
        if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
            fail(f'run {index} has no "config" object')
        for name in DATA_FIELDS:
            if name not in run:
                inherited = payload.get(name)
                run[name] = inherited if isinstance(inherited, str) else None
        runs[key_of(run)] = run
    return runs


def write_results(path: str, results: list[dict]) -> None:
    """All finished runs as strict JSON (NaN -> null): written to a new file in the same
    folder, flushed to disk, then renamed over `path` (a kill at any point leaves either
    the old file or the new one, never a mix)."""
    text = _dumps(_payload(results))
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder
    )
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_folder(folder)


def _fsync_folder(folder):
    """The rename itself reaches the disk (POSIX; a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _payload(results):
    payload = {name: _common(results, name) for name in ("dataset", "backend")}
    payload.update(summary=report.summarize(results), runs=results)
    return payload


def _common(results, name):
    """The runs' value of `name` if they share one; else the sorted list of values."""
    values = sorted({str(r.get(name)) for r in results})
    return values[0] if len(values) == 1 else (values or None)


def _dumps(payload):
    return json.dumps(_nan_to_none(payload), indent=1, default=_json_default, allow_nan=False)


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "dtype") and hasattr(value, "item"):  # a NumPy scalar
        return _nan_to_none(value.item())
    return value


def _json_default(value):
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class Progress:
    """What a study reports as it goes; every method does nothing here (the command line
    prints). `index` counts from 1 over the study's runs."""

    def skipped(self, index: int, total: int, config: RunConfig) -> None:
        """Run `index` is finished in the results file and was not trained again."""

    def starting(self, index: int, total: int, config: RunConfig, seconds_left: float | None):
        """Run `index` starts; `seconds_left` estimates the study's rest (None at first)."""

    def finished(self, index: int, total: int, result: dict, model) -> None:
        """Run `index` trained and was written; `result` as in the file, `model` trained."""


@dataclasses.dataclass
class StudyResult:
    """The study's runs (read back and trained, in run order), the number read back from
    the results file, and the model of the last run trained here (None if none)."""

    runs: list[dict]
    skipped: int
    last_model: object = None


def run_study(
    configs: list[RunConfig],
    data,
    setting: Setting,
    output: str | None,
    resume: bool = False,
    progress: Progress | None = None,
) -> StudyResult:
    """Trains every run of `configs` on `data` that `output` does not hold yet (with
    `resume`), writing all runs of the file after each one. Runs of other studies in the
    same file (another learning rate, another data set) are kept."""
    from keras_cka_sr.app import experiment

    progress = progress or Progress()
    finished = finished_runs(output) if (resume and output) else {}
    keyed = [(run_key(dataclasses.asdict(c), setting.as_dict()), c) for c in configs]
    asked = {key for key, _ in keyed}
    others = [run for key, run in finished.items() if key not in asked]
    to_train = sum(key not in finished for key, _ in keyed)
    runs, skipped, last_model, seconds = [], 0, None, []
    for index, (key, config) in enumerate(keyed, 1):
        if key in finished:
            progress.skipped(index, len(configs), config)
            runs.append(finished[key])
            skipped += 1
            continue
        left = (to_train - len(seconds)) * sum(seconds) / len(seconds) if seconds else None
        progress.starting(index, len(configs), config, left)
        outcome = experiment.run(config, data)
        result = {**outcome.to_dict(), **setting.as_dict()}
        seconds.append(result["seconds"])
        runs.append(result)
        last_model = outcome.model
        if output:
            write_results(output, others + runs)
        progress.finished(index, len(configs), result, outcome.model)
    if output and seconds and runs[-1] is not result:
        # Runs read back after the last one trained are written too (each write replaces
        # the whole file). A resume that trained nothing leaves the file as it is.
        write_results(output, others + runs)
    return StudyResult(runs, skipped, last_model)
