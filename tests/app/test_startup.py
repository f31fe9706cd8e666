"""The command line starts quietly: no TensorFlow/absl start-up log, no retracing alarm."""

import logging
import os
import pathlib
import subprocess
import sys

import keras
import pytest

import keras_cka_sr
import keras_cka_sr_cli as startup
from keras_cka_sr import pruning
from keras_cka_sr.sparse.scores import LossGradients
from tests.support.models import TAPS, data, small_cnn

ROOT = pathlib.Path(__file__).resolve().parents[2]
STARTUP_NOISE = ("cudart_stub", "cpu_feature_guard", "absl::InitializeLog", "cuInit")


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "keras_cka_sr_cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def test_help_prints_no_startup_log():
    done = _cli("train", "--help")
    assert done.returncode == 0 and "usage: keras-cka-sr train" in done.stdout
    assert not [n for n in STARTUP_NOISE if n in done.stderr], done.stderr


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
