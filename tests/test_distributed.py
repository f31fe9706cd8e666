"""Training on two logical CPU devices: tf.distribute.MirroredStrategy (TF backend) and
keras.distribution.DataParallel (JAX backend). Each runs tests/distributed_worker.py in
its own process, because the devices must be set up before the backend starts."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # each test trains in a subprocess

BACKEND = keras.backend.backend()
WORKER = os.path.join(os.path.dirname(__file__), "distributed_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_worker(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [sys.executable, WORKER, *args], capture_output=True, text=True, env=env, timeout=600
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


needs_tf = pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute: TF backend")
needs_jax = pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution: JAX backend")


@needs_tf
def test_mirrored_strategy_prunes_and_regularizes_per_replica():
    result = run_worker("mirrored")
    assert result["replicas"] == 2
    assert result["mask_names"][-2:] == ["hidden_kernel_mask", "out_kernel_mask"]  # composite
    assert all(np.isfinite(result["cka_sr"])) and all(np.isfinite(result["loss"]))
    assert result["weights_finite"]
    assert result["masks_identical_on_replicas"]
    assert result["sparsity"] == pytest.approx(0.8, abs=0.02)
    # Each replica's penalty is on its local 8 samples; the metric is their mean,
    # which differs from the penalty of the global batch of 16.
    assert result["first_step_penalty"] == pytest.approx(result["per_replica_expected"], rel=1e-5)
    assert abs(result["global_batch_value"] - result["per_replica_expected"]) > 1e-2


@needs_jax
def test_data_parallel_equals_a_single_device():
    result = run_worker("data-parallel")
    assert result["devices"] == 2
    single, distributed = result["single"], result["distributed"]
    assert distributed["penalty"] == pytest.approx(single["penalty"], rel=1e-5)
    for key in ("loss", "cka_sr"):
        np.testing.assert_allclose(distributed["history"][key], single["history"][key], rtol=1e-5)
    assert len(single["masks"]) == len(distributed["masks"]) == 5  # 3 convs, 2 in the composite
    for a, b in zip(single["masks"], distributed["masks"]):
        np.testing.assert_array_equal(np.array(a), np.array(b))


@pytest.mark.parametrize(
    "distribute",
    [pytest.param("mirrored", marks=needs_tf), pytest.param("data-parallel", marks=needs_jax)],
)
def test_main_job_distributes(tmp_path, distribute):
    output = tmp_path / "r.json"
    assert run_worker(f"cli-{distribute}", str(output)) == {"status": 0}
    runs = json.loads(output.read_text())["runs"]
    assert [r["config"]["distribute"] for r in runs] == [distribute] * 2
    assert all(r["finite"] and r["test_accuracy"] > 0.3 for r in runs)


@pytest.mark.parametrize(
    "mode",
    [pytest.param("mirrored", marks=needs_tf), pytest.param("data-parallel", marks=needs_jax)],
)
def test_penalty_grad_cap_on_two_devices(mode):
    """A cap too large to bind trains as Keras' own step (up to float32 round-off: the two
    gradients are summed after the backward passes); a binding one changes the weights."""
    result = run_worker(f"cap-{mode}")
    none, large, binding = result["none"], result["large"], result["binding"]
    for key in ("loss", "cka_sr"):
        np.testing.assert_allclose(large["history"][key], none["history"][key], rtol=1e-4)
    for a, b in zip(large["weights"], none["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)
    assert all(np.isfinite(binding["history"]["loss"]))
    assert any(
        not np.allclose(np.array(a), np.array(b), atol=1e-4)
        for a, b in zip(binding["weights"], none["weights"])
    )
