"""The command line starts quietly: no TensorFlow/absl start-up log, no retracing alarm."""

import logging
import os
import pathlib
import subprocess
import sys

import keras
import pytest

import keras_cka_sr
from keras_cka_sr import _startup as startup
from keras_cka_sr import pruning
from keras_cka_sr.sparse.scores import LossGradients
from tests.support.models import TAPS, data, small_cnn

ROOT = pathlib.Path(__file__).resolve().parents[2]
STARTUP_NOISE = ("cudart_stub", "cpu_feature_guard", "absl::InitializeLog", "cuInit")


def _python(*args, module="keras_cka_sr_cli", **env_values):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(env_values)
    command = [sys.executable, *(["-m", module] if module else []), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def _cli(*args, **env_values):
    return _python(*args, **env_values)


@pytest.mark.parametrize("module", ["keras_cka_sr_cli", "keras_cka_sr"])
@pytest.mark.parametrize("level", [None, "3"])
def test_help_prints_no_startup_log(module, level):
    done = _python(
        "train", "--help", module=module, **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {})
    )
    assert done.returncode == 0 and "usage: keras-cka-sr train" in done.stdout
    assert not [n for n in STARTUP_NOISE if n in done.stderr], done.stderr


PARSE_ONLY = """
import sys, keras_cka_sr_cli
try:
    keras_cka_sr_cli.main(sys.argv[1:])
except SystemExit as exit:
    print("exit", exit.code, "keras imported:", "keras" in sys.modules)
"""


@pytest.mark.parametrize(
    "args", [["train", "--help"], ["train", "--method", "gmpp"], ["train", "--epochs", "0"]]
)
def test_help_and_usage_errors_are_answered_before_keras_loads(args):
    done = _python("-c", PARSE_ONLY, *args, module=None)
    assert "keras imported: False" in done.stdout, done.stdout + done.stderr
    if "--help" not in args:  # the error and where help is; not the 28-line usage block
        assert len(done.stderr.splitlines()) == 2, done.stderr
        assert "(see `keras-cka-sr train --help`)" in done.stderr


AFTER_PARSING = """
import sys, keras_cka_sr_cli
try:
    keras_cka_sr_cli.main(["train", "--dataset", "digits"])  # refused after Keras loaded
except SystemExit:
    pass
import keras_cka_sr
import keras_cka_sr.app.cli
print(keras_cka_sr.app.cli is sys.modules["keras_cka_sr.app.cli"],
      keras_cka_sr._validation is sys.modules["keras_cka_sr._validation"],
      keras_cka_sr.CKAMonitor.__module__)
"""


def test_modules_loaded_before_the_package_are_its_attributes_afterwards():
    done = _python("-c", AFTER_PARSING, module=None)
    assert done.stdout.split() == ["True", "True", "keras_cka_sr.callbacks"], done.stderr[-2000:]


@pytest.mark.slow
def test_a_study_prints_no_startup_log_and_no_retracing_warning():
    # TensorFlow warns of retracing from the fifth model on; the other backends need no
    # more than two runs to show a quiet start.
    seeds = "0 1 2" if keras.backend.backend() == "tensorflow" else "0"
    done = _cli(
        *"train --dataset digits --model mlp --subset 128 --epochs 2 --method dense "
        f"--seeds {seeds} --cka-weight 0 1e-4 --verbose 1".split()
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{2 * len(seeds.split())} runs in" in done.stdout
    written = list(pathlib.Path("keras-cka-sr-runs").glob("*.json"))  # the default file
    assert len(written) == 1 and f"results: {written[0]}" in done.stdout
    assert not [n for n in STARTUP_NOISE if n in done.stderr], done.stderr
    assert "retracing" not in done.stderr + done.stdout


def test_retracing_filter_drops_only_that_message():
    keep = logging.LogRecord("tensorflow", logging.WARNING, "", 0, "something else", (), None)
    drop = logging.LogRecord(
        "tensorflow",
        logging.WARNING,
        "",
        0,
        "5 out of the last 5 calls to <f> triggered tf.function retracing. Tracing is expensive",
        (),
        None,
    )
    assert startup._NotRetracing().filter(keep) and not startup._NotRetracing().filter(drop)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.function traces")
def test_our_compiled_functions_trace_once_per_model_and_batch_shape():
    """What the filter hides is TensorFlow counting traces across models; for one model our
    compiled functions do not retrace: the gradient monitor traces once over many epochs,
    the score gradients once per batch shape (full, ragged last; then generalized)."""
    x, y = data(n=70)  # a ragged last batch of 6
    model = pruning.prune_low_magnitude(small_cnn(), pruning.ConstantSparsity(0.5, 0, frequency=2))
    loss = keras_cka_sr.CKASimilarityLoss(1e-3, every_n_steps=2)
    trained = keras_cka_sr.attach_cka_loss(model, TAPS, loss)
    trained.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = keras_cka_sr.CKAGradientMonitor(x[:16], y[:16], TAPS, loss)
    callbacks = [pruning.UpdatePruningStep(), keras_cka_sr.CKAMonitor(x[:16], TAPS), monitor]
    trained.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=callbacks)
    assert monitor._norms.experimental_get_tracing_count() == 1
    scores = LossGradients(model)
    for n in (64, 70, 33):
        scores.summed(x[:n], y[:n], 16)
    assert scores._gradient.experimental_get_tracing_count() == 2
