"""Two real JAX processes on this machine (loopback only; tests/multiprocess_worker.py): a
pruned model with CKA-SR trains under `keras.distribution.DataParallel` across them, as one
process does on the same global batches; a worker killed mid-epoch and both restarted resume
from `BackupAndRestore`'s last backup and end where an uninterrupted run ends.

TensorFlow's `MultiWorkerMirroredStrategy` is not tested: Keras 3's `fit` cannot take it
(keras-team/keras#20585; docs/scaling-out.md)."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("jax")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("KERAS_BACKEND") not in (None, "jax"),
        reason="the workers run JAX; tested once, in the JAX session",
    ),
]

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "multiprocess_worker.py"
LIMIT = 120  # seconds a run of the workers may take before they are killed


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(out, processes=2, kill_at=None):
    """Starts the workers; returns their exit codes (the others are killed once one dies)."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    port = _free_port()
    workers = []
    for index in range(processes):
        args = [sys.executable, str(WORKER), str(out), str(index), str(processes), str(port)]
        if kill_at is not None and index == processes - 1:
            args.append(str(kill_at))
        log = open(out / f"log-{index}.txt", "a")
        workers.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + LIMIT
    try:
        while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
            if any(w.poll() not in (None, 0) for w in workers):
                break  # one died: the others wait for it in a collective forever
            time.sleep(0.2)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    return [w.returncode for w in workers]


def _result(out, index=0):
    return json.loads((out / f"{index}.json").read_text())


def _logs(out):
    return "\n".join(p.read_text()[-3000:] for p in sorted(out.glob("log-*.txt")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("two-processes")
    codes = _run(out)
    assert codes == [0, 0], _logs(out)
    return out


def test_two_processes_train_as_one_on_the_same_global_batches(uninterrupted, tmp_path):
    first, second = _result(uninterrupted, 0), _result(uninterrupted, 1)
    assert first["devices"] == 2
    assert first["masks"] == second["masks"]  # masks identical on both workers
    np.testing.assert_allclose(first["history"]["loss"], second["history"]["loss"], rtol=0)
    assert _run(tmp_path, processes=1) == [0], _logs(tmp_path)
    alone = _result(tmp_path)
    np.testing.assert_allclose(first["history"]["loss"], alone["history"]["loss"], atol=1e-5)
    np.testing.assert_allclose(first["history"]["cka_sr"], alone["history"]["cka_sr"], atol=1e-6)
    for mine, reference in zip(first["masks"], alone["masks"]):
        np.testing.assert_array_equal(mine, reference)
    assert np.mean([np.mean(np.asarray(m) == 0) for m in first["masks"]]) > 0.7


def test_a_worker_killed_mid_epoch_resumes_from_the_backup(uninterrupted, tmp_path):
    # Step 10 of 16 is in epoch 3: the backup of epoch 2 holds steps 1-8.
    codes = _run(tmp_path, kill_at=10)
    assert codes[1] == -9, _logs(tmp_path)  # SIGKILL
    assert not (tmp_path / "0.json").exists() and (tmp_path / "backup-0").exists()
    assert _run(tmp_path) == [0, 0], _logs(tmp_path)
    resumed, reference = _result(tmp_path), _result(uninterrupted)
    assert len(resumed["history"]["loss"]) == 2  # epochs 3 and 4 only: 1 and 2 were restored
    assert resumed["pruning_step"] == reference["pruning_step"]
    assert resumed["cka_step"] == reference["cka_step"] == 16
    assert resumed["masks"] == reference["masks"]
    for mine, expected in zip(resumed["weights"], reference["weights"]):
        np.testing.assert_array_equal(mine, expected)  # bit-identical on XLA:CPU
