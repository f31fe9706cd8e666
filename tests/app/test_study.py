"""A study's bookkeeping: run keys, the results file and resume (no training: `experiment.run`
is replaced by a stand-in that returns a finished run at once)."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from keras_cka_sr.app import experiment, study
from keras_cka_sr.app.run_config import ALLOCATIONS, RunConfig

MNIST = study.Setting("mnist5k", None, "jax")


def _other_value(field, value):
    """A valid value of `field` other than `value`."""
    choices = field.metadata.get("choices")
    if choices is not None:
        choices = choices() if callable(choices) else choices
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if value is None:
        return 0.5
    raise AssertionError(f"no other value for {field.name}")


@pytest.mark.parametrize("field", [f for f in dataclasses.fields(RunConfig)], ids=lambda f: f.name)
def test_every_config_field_but_verbose_is_in_the_run_key(field):
    base = dataclasses.asdict(RunConfig())
    changed = {**base, field.name: _other_value(field, base[field.name])}
    same = study.run_key(base, MNIST.as_dict()) == study.run_key(changed, MNIST.as_dict())
    assert same == (field.name == "verbose")


@pytest.mark.parametrize(
    "name,value", [("dataset", "digits"), ("subset", 64), ("backend", "torch")]
)
def test_data_set_subset_and_backend_are_in_the_run_key(name, value):
    config = dataclasses.asdict(RunConfig())
    other = {**MNIST.as_dict(), name: value}
    assert study.run_key(config, MNIST.as_dict()) != study.run_key(config, other)


def test_allocation_names_are_the_librarys():
    from keras_cka_sr import cka, sparse
    from keras_cka_sr.app import run_config

    assert ALLOCATIONS == ("default",) + sparse.ALLOCATIONS
    assert run_config.UNBIASED_MIN_SAMPLES == cka.min_samples(True)


@pytest.fixture
def fake_runs(monkeypatch):
    """`experiment.run` returns at once; the list holds the configs it was asked to run."""
    trained = []

    @dataclasses.dataclass
    class Outcome:
        config: RunConfig
        model: object = None

        def to_dict(self):
            return {
                "config": dataclasses.asdict(self.config),
                "test_accuracy": 0.5 + self.config.seed / 100,
                "val_accuracy": 0.5,
                "sparsity": self.config.sparsity,
                "small_weight_share": 0.0,
                "cka_mean": 0.9,
                "seconds": 1.0,
                "finite": True,
            }

    def run(config, data):
        trained.append(config)
        return Outcome(config)

    monkeypatch.setattr(experiment, "run", run)
    return trained


def _configs(*seeds, **values):
    return [RunConfig(seed=s, cka_weight=0.0, verbose=0, **values) for s in seeds]


def test_resume_does_not_take_a_run_of_another_data_set_or_subset(fake_runs, tmp_path):
    output = str(tmp_path / "r.json")
    study.claim_output(output, resume=False, overwrite=False)
    digits = study.Setting("digits", None, "jax")
    study.run_study(_configs(0), None, digits, output)
    for setting in (MNIST, dataclasses.replace(digits, subset=64)):
        fake_runs.clear()
        done = study.run_study(_configs(0), None, setting, output, resume=True)
        assert len(fake_runs) == 1 and done.skipped == 0
    runs = json.loads(open(output).read())["runs"]
    assert [(r["dataset"], r["subset"]) for r in runs] == [
        ("digits", None),
        ("mnist5k", None),
        ("digits", 64),
    ]
    fake_runs.clear()
    assert study.run_study(_configs(0), None, digits, output, resume=True).skipped == 1
    assert fake_runs == []


def test_runs_of_an_older_file_take_its_data_set_and_backend(fake_runs, tmp_path):
    output = tmp_path / "old.json"
    run = {"config": dataclasses.asdict(_configs(0)[0]), "test_accuracy": 0.5}
    output.write_text(json.dumps({"dataset": "mnist5k", "backend": "jax", "runs": [run]}))
    assert study.run_study(_configs(0), None, MNIST, str(output), resume=True).skipped == 1
    assert fake_runs == []


def test_two_studies_in_the_same_second_get_two_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = time.strptime("2026-12-01 10:20:30", "%Y-%m-%d %H:%M:%S")
    paths = []
    threads = [
        threading.Thread(target=lambda: paths.append(study.default_output(now))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(paths)) == 6
    assert os.path.join("keras-cka-sr-runs", "20261201-102030.json") in paths
    assert os.path.join("keras-cka-sr-runs", "20261201-102030-6.json") in paths
    for path in paths:  # each one a valid results file with no runs yet
        assert json.loads(open(path).read())["runs"] == []


def test_an_existing_output_is_refused_unless_resume_or_overwrite(fake_runs, tmp_path):
    output = str(tmp_path / "r.json")
    study.claim_output(output, resume=False, overwrite=False)
    study.run_study(_configs(0, 1), None, MNIST, output)
    before = open(output).read()
    with pytest.raises(study.StudyError, match="--resume to continue.*--overwrite"):
        study.claim_output(output, resume=False, overwrite=False)
    assert open(output).read() == before
    study.claim_output(output, resume=True, overwrite=False)
    assert open(output).read() == before
    study.claim_output(output, resume=False, overwrite=True)
    assert json.loads(open(output).read())["runs"] == []


def test_a_second_cli_study_on_an_existing_output_trains_nothing(tmp_path, fake_runs, capsys):
    from keras_cka_sr.app import cli

    output = tmp_path / "r.json"
    output.write_text('{"runs": []}')
    with pytest.raises(SystemExit, match="already exists"):
        cli.main(["train", "--output", str(output), "--seeds", "0"])
    assert fake_runs == [] and output.read_text() == '{"runs": []}'


KILLED_WRITER = """
import os, signal, sys
from keras_cka_sr.app import study

path = sys.argv[1]
study.report.summarize = lambda runs: []  # the runs below hold only what this test reads
study.write_results(path, [{"config": {"seed": 0}, "finite": True}])
real_write = None

class Dying:
    def __init__(self, handle):
        self.handle = handle
    def write(self, text):
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.handle.__exit__(*exc)

real_fdopen = os.fdopen
os.fdopen = lambda *a, **k: Dying(real_fdopen(*a, **k))
study.write_results(path, [{"config": {"seed": s}, "finite": True} for s in range(50)])
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_WRITER), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    runs = json.loads(path.read_text())["runs"]
    assert [r["config"]["seed"] for r in runs] == [0]
