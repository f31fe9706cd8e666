"""The benchmark scripts run end to end at tiny settings and report what they promise.

Timings are not asserted (these machines are noisy); only that every figure is there.
"""

import json
import os
import subprocess

import keras
import numpy as np
import pytest

from tests.support.scripts import ROOT, load_script


def load(name):
    return load_script("benchmarks", name)


def common_args(tmp_path, steps):
    return [
        "--backend",
        keras.backend.backend(),
        "--steps",
        str(steps),
        "--warmup",
        "1",
        "--json",
        str(tmp_path / "result.json"),
    ]


def overhead_args(tmp_path, settings):
    small = ["--depth", "14", "--batch-size", "8", "--rounds", "1", "--settings", settings]
    return common_args(tmp_path, 5) + small


@pytest.mark.slow
def test_cka_overhead_reports_every_setting_dense_and_pruned(tmp_path):
    argv = overhead_args(tmp_path, "all:1,4:5") + ["--prune", "0.5"]
    payload = load("cka_overhead").main(argv)
    rows = payload["rows"]
    settings = [(r["num_samples"], r["every_n_steps"], r["pruned_sparsity"]) for r in rows]
    assert settings == [("all", 1, None), (4, 5, None), ("all", 1, 0.5), (4, 5, 0.5)]
    assert all(r["overhead"] > 0 and r["floor"] >= 1.0 for r in rows)
    assert payload["control_ratio"] > 0 and payload["pruned_plain_step_s"] > 0
    assert json.loads((tmp_path / "result.json").read_text())["rows"] == rows


def test_cka_overhead_rejects_bad_settings(capsys):
    with pytest.raises(SystemExit):
        load("cka_overhead").main(["--backend", keras.backend.backend(), "--settings", "all"])
    assert "num_samples:every_n_steps" in capsys.readouterr().err


@pytest.mark.slow
def test_cka_kernel_shows_both_paths(tmp_path):
    argv = common_args(tmp_path, 1) + ["--cases", "resnet32_blocks_n8,mlp_features_n512_d64"]
    rows = load("cka_kernel").main(argv + ["--blocks-per-stage", "2"])["rows"]
    assert [r["case"] for r in rows] == ["resnet14_blocks_n8", "mlp_features_n512_d64"]
    assert [r["path"] for r in rows] == ["gram", "feature"]
    assert [(r["layers"], r["pairs"]) for r in rows] == [(6, 3), (6, 15)]
    assert all(r[f"{k}_s"] > 0 for r in rows for k in ("ours", "floor", "naive"))


@pytest.mark.slow
def test_pruning_overhead_prunes_both_libraries(tmp_path):
    pytest.importorskip("tensorflow_model_optimization")
    payload = load("pruning_overhead").main(common_args(tmp_path, 10) + ["--rounds", "1"])
    assert set(payload["step_s"]) == {
        "plain_keras3",
        "ours_keras3",
        "tfmot_tf_keras",
        "plain_tf_keras",
    }
    # 11 steps, PolynomialDecay to 0.9 ending at step 11, masks updated at step 10.
    sparsity = payload["kernel_sparsity"]
    assert sparsity["ours_keras3"] == pytest.approx(0.9 * (1 - (1 / 11) ** 3), abs=2e-3)
    assert sparsity["tfmot_tf_keras"] == pytest.approx(sparsity["ours_keras3"], abs=2e-3)


def test_gradient_monitor_cost_reports_both_times(tmp_path):
    payload = load("gradient_monitor_cost").main(common_args(tmp_path, 1) + ["--batch-size", "16"])
    assert payload["train_step_seconds"] > 0 and payload["measure_seconds"] > 0


def test_penalty_cap_cost_times_three_variants(tmp_path):
    argv = common_args(tmp_path, 2) + ["--batch-size", "16", "--rounds", "1"]
    payload = load("penalty_cap_cost").main(argv)
    assert set(payload["step_s"]) == {"no penalty", "CKA-SR", "CKA-SR + cap"}
    assert all(v > 0 for v in payload["step_s"].values()) and payload["capped_over_cka"] > 0


def test_sparse_methods_cost_reports_every_method(tmp_path):
    argv = common_args(tmp_path, 1) + [
        "--model",
        "mlp",
        "--batch-size",
        "16",
        "--score-samples",
        "32",
        "--synflow-rounds",
        "2",
    ]
    payload = load("sparse_methods_cost").main(argv)
    assert set(payload["seconds"]) == {"set", "rigl", "snip", "grasp", "synflow"}
    assert all(v > 0 for v in payload["in_train_steps"].values())
    assert json.loads((tmp_path / "result.json").read_text())["model"] == "mlp"


def test_study_summary_pairs_runs_by_seed(tmp_path):
    def run(method, beta, seed, acc, cka=0.9):
        config = {"method": method, "sparsity": 0.9, "cka_weight": beta, "seed": seed}
        return {"config": config, "test_accuracy": acc, "cka_mean": cka}

    runs = [run("rst", 0.0, 0, 0.50), run("rst", 0.0, 1, 0.60), run("rst", 0.0, 2, 0.70)]
    runs += [run("rst", 1e-4, s, a, 0.8) for s, a in enumerate([0.52, 0.61, 0.73])]
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"runs": runs}))
    base, treated = load_script("benchmarks/studies", "summarize").main([str(path), "--paired"])
    assert (base["n"], treated["n"], treated["variant"]) == (3, 3, 1e-4)
    assert base["gain"] is None  # no gain for the baseline
    assert base["mean"] == pytest.approx(0.6) and treated["mean"] == pytest.approx(0.62)
    gain = treated["gain"]  # gains 0.02, 0.01, 0.03: std 0.01, t(2) = 4.303
    assert gain.mean == pytest.approx(0.02)
    assert gain.half_width == pytest.approx(4.303 * 0.01 / 3**0.5, rel=1e-4)
    assert treated["cka"].mean == pytest.approx(-0.1)
    assert treated["holm"] == pytest.approx(gain.p)  # a family of one


def test_study_summary_treatment_shares_the_beta_zero_baseline(tmp_path):
    def run(beta, cap, seed, acc):
        config = {"method": "rst", "sparsity": 0.98, "cka_weight": beta, "seed": seed}
        if cap is not None:
            config["cka_grad_cap"] = cap
        return {"config": config, "test_accuracy": acc, "cka_mean": 0.9}

    base = [run(0.0, None, s, a) for s, a in enumerate([0.6, 0.7])]
    uncapped = [run(1e-4, None, s, 0.1) for s in range(2)]
    capped = [run(1e-4, 0.1, s, a) for s, a in enumerate([0.62, 0.69])]
    (tmp_path / "a.json").write_text(json.dumps({"runs": base + uncapped}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": capped}))
    argv = [str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--paired"]
    rows = load_script("benchmarks/studies", "summarize").main(
        argv + ["--treatment", "cka_grad_cap"]
    )
    assert [row["variant"] for row in rows] == [(0.0, None), (1e-4, None), (1e-4, 0.1)]
    assert rows[1]["gain"].mean == pytest.approx(-0.55)
    assert rows[2]["gain"].mean == pytest.approx(0.005)
    # --primary leaves the pre-registered comparison out of the Holm family.
    rows = load_script("benchmarks/studies", "summarize").main(
        argv + ["--treatment", "cka_grad_cap", "--primary", "1e-4", "--primary-treatment", "0.1"]
    )
    assert rows[2]["holm"] is None and rows[1]["holm"] == pytest.approx(rows[1]["gain"].p)


@pytest.mark.slow
def test_sparse_inference_times_and_sizes_every_variant(tmp_path):
    pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the TFLite converter needs the TensorFlow backend")
    args = ["--invokes", "1", "--rounds", "1", "--warmup", "1", "--size", "32"]
    args += ["--mobilenet-sparsities", "0.9", "--lenet-sparsities", "0.95"]
    payload = load("sparse_inference").main(args + ["--json", str(tmp_path / "r.json")])
    mobilenet, lenet = payload["results"]
    assert set(mobilenet["tflite_bytes"]) == {"dense", "0.9", "0.9_sparse_encoding"}
    pruned = mobilenet["pruned"]["0.9"]  # the policy prunes the 1x1 convolutions only
    assert pruned["pruned_weights_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert 0.5 < pruned["prunable_sparsity"] < 0.9
    sizes = lenet["tflite_bytes"]
    assert sizes["0.95_sparse_encoding"] < 0.3 * sizes["dense"]  # the sparse encoding shrinks
    assert set(lenet["latency"]) == {
        "1_threads_xnnpack", "1_threads_no_delegate", "2_threads_xnnpack", "2_threads_no_delegate"
    }  # fmt: skip
    assert lenet["latency"]["1_threads_xnnpack"]["dense"]["ratio_to_dense"] == 1.0


@pytest.mark.slow
def test_cka_kernel_times_each_batch_size_and_dtype(tmp_path):
    argv = common_args(tmp_path, 1) + ["--n", "8", "--dtypes", "float32,bfloat16"]
    argv += ["--blocks-per-stage", "2"]
    rows = load("cka_kernel").main(argv)["rows"]
    assert [(r["n"], r["dtype"]) for r in rows] == [(8, "float32"), (8, "bfloat16")]
    assert all(r["ours_s"] > 0 and r["floor_s"] > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the GPU script picks its backends itself"
)
def test_gpu_script_cpu_smoke_without_tensorflow(tmp_path):
    """benchmarks/gpu/run.sh --cpu-smoke runs every part to the end where the GPU machine's
    image would: no TensorFlow (a module that refuses to import stands in for it)."""
    blocker = tmp_path / "no_tf" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("no TensorFlow on the GPU machine")\n')
    env = dict(os.environ, PYTHONPATH=str(blocker.parent))
    env.pop("KERAS_BACKEND")
    out = tmp_path / "out"
    script = os.path.join(ROOT, "benchmarks", "gpu", "run.sh")
    done = subprocess.run(["bash", script, "--cpu-smoke", str(out)], env=env, timeout=900)
    payload = json.loads((out / "gpu.json").read_text())
    parts = payload["parts"]
    assert done.returncode == 0, {name: part["status"] for name, part in parts.items()}
    assert set(parts) == {
        "overhead_b128", "host_sync", "cka_kernel", "train_jax", "train_torch", "channel_latency"
    }  # fmt: skip
    latency = parts["channel_latency"]["figures"]["rows"]
    assert [r["variant"] for r in latency] == ["dense", "0.5"] and latency[1]["macs"] < latency[0][
        "macs"
    ]
    guard = parts["host_sync"]["figures"]["transfer_guard"]
    assert guard["guard_is_live"] and not guard["pruned_cka_sr"]["host_transfer_in_step"]
    assert {r["dtype"] for r in parts["cka_kernel"]["figures"]["rows"]} == {"float32", "bfloat16"}
    assert parts["train_torch"]["figures"]["machine"]["backend"] == "torch"
    assert (out / "log.txt").exists()


def test_beta_moved_is_the_smallest_beta_whose_cka_interval_is_below_zero(tmp_path, capsys):
    def run(beta, seed, cka, samples=8, every=5):
        config = {"method": "rst", "sparsity": 0.99, "cka_weight": beta, "seed": seed,
                  "cka_samples": samples, "cka_every": every}  # fmt: skip
        return {"config": config, "test_accuracy": 0.9, "cka_mean": cka}

    runs = [run(0.0, s, 0.97 + 0.001 * s) for s in range(3)]
    runs += [run(1e-3, s, 0.97 + d) for s, d in enumerate([0.001, -0.001, 0.004])]  # straddles 0
    runs += [run(1e-2, s, 0.96 + 0.001 * s + d) for s, d in enumerate([0.0, 1e-3, -1e-3])]
    runs += [run(1e-1, s, 0.90 + 0.001 * s) for s in range(3)]
    runs += [run(1e-4, s, 0.90, samples=128, every=1) for s in range(3)]  # other knobs
    script = load_script("benchmarks/studies", "beta_moved")
    assert script.beta_moved(runs) == 1e-2
    assert script.beta_moved(runs, samples=128, every=1) == 1e-4
    assert script.beta_moved(runs[:6]) is None
    (tmp_path / "study.json").write_text(json.dumps({"runs": runs[:6]}))
    script.main([str(tmp_path / "study.json")])
    assert capsys.readouterr().out == ""  # nothing moved: the all-samples arm runs 1e-4 only


def test_study_summary_also_gives_mean_and_max_of_further_fields(tmp_path, capsys):
    def run(beta, seed, ratio):
        config = {"method": "rst", "sparsity": 0.99, "cka_weight": beta, "seed": seed}
        return {"config": config, "test_accuracy": 0.9, "cka_mean": 0.9, "ratio": ratio}

    runs = [run(0.0, s, None) for s in range(2)] + [run(0.1, s, r) for s, r in [(0, 1.0), (1, 3.0)]]
    (tmp_path / "study.json").write_text(json.dumps({"runs": runs}))
    argv = [str(tmp_path / "study.json"), "--paired", "--also", "ratio"]
    base, treated = load_script("benchmarks/studies", "summarize").main(argv)
    assert base["also"] == {"ratio": None} and treated["also"] == {"ratio": (2.0, 3.0)}
    assert "| ratio mean (max) |" in capsys.readouterr().out


def _run(beta, seed, accuracy, cka, method="rst", sparsity=0.99, **config):
    return {
        "config": dict(
            method=method,
            sparsity=sparsity,
            cka_weight=beta,
            seed=seed,
            cka_samples=128,
            cka_every=1,
            **config,
        ),  # fmt: skip
        "test_accuracy": accuracy,
        "cka_mean": cka,
    }


def test_mechanism_slope_recovers_a_known_slope_and_pairs_within_each_file(tmp_path):
    """Two files, each with its own beta 0: gain = -2 x ΔCKA (+ noise by seed) -> a slope near
    -2 whose seed-bootstrap interval lies below 0."""
    rng = np.random.default_rng(0)
    paths = []
    for index, betas in enumerate(([1e-3, 1e-2], [1e-1])):
        runs = []
        for seed in range(8):
            base_acc, base_cka = 0.9 + 0.01 * rng.normal(), 0.95
            runs.append(_run(0.0, seed, base_acc, base_cka))
            for beta in betas:
                dcka = -10 * beta + 0.002 * rng.normal()
                runs.append(
                    _run(beta, seed, base_acc - 2 * dcka + 1e-4 * rng.normal(), base_cka + dcka)
                )
        path = tmp_path / f"study{index}.json"
        path.write_text(json.dumps({"runs": runs}))
        paths.append(str(path))
    result = load_script("benchmarks/studies", "mechanism_slope").main(paths)
    assert result["points"] == 24 and len(result["arms"]) == 3
    assert result["slope"] == pytest.approx(-2.0, abs=0.05)
    assert result["ci95_bootstrap_seeds"][1] < 0 and "survives" in result["reading"]


def test_cka_vs_sparsity_pairs_with_dense_and_refuses_to_pool_settings(tmp_path, capsys):
    runs = [_run(0.0, s, 0.9, 0.90 + 0.001 * s, method="dense", sparsity=0.0) for s in range(3)]
    runs += [_run(0.0, s, 0.9, 0.95 + 0.001 * s) for s in range(3)]
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"runs": runs}))
    script = load_script("benchmarks/studies", "cka_vs_sparsity")
    dense, rst = script.rows(runs)
    assert dense["method"] == "dense" and dense["difference"] is None
    assert rst["difference"].mean == pytest.approx(0.05) and rst["n"] == 3
    runs.append(_run(0.0, 9, 0.9, 0.9, learning_rate=0.5))
    with pytest.raises(SystemExit, match="differ in learning_rate"):
        script.rows(runs)


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the script converts with TensorFlow and runs JAX and torch in child processes",
)
def test_structured_inference_times_every_variant_on_every_runtime(tmp_path):
    argv = ["--models", "resnet20_mnist", "--fractions", "0.5", "--block-fractions", "0.25",
            "--round-to", "1", "8", "--invokes", "1", "--rounds",
            "1", "--warmup", "1", "--no-torch-pruning", "--json", str(tmp_path / "r.json")]  # fmt: skip
    (result,) = load("structured_inference").main(argv)["results"]
    assert set(result["latency"]) == {
        "tflite_xnnpack_1_threads", "tflite_xnnpack_2_threads", "jax_jit_cpu", "torch_eager_cpu"
    }  # fmt: skip
    for runtime in result["latency"].values():
        assert set(runtime) == {"dense", "0.5_flops_removed", "0.5_flops_removed_round_to_8",
                                "blocks_0.25_flops_removed"}  # fmt: skip
        assert runtime["dense"]["ratio_to_dense"] == 1.0 and runtime["0.5_flops_removed"]["ms"] > 0
    assert abs(result["flops_removed"]["0.5_flops_removed"] - 0.5) < 0.05
    assert result["flops_removed"]["blocks_0.25_flops_removed"] >= 0.25
    assert result["macs"]["0.5_flops_removed"] < result["macs"]["dense"]
    # counts rounded to multiples of 8 step coarsely: at least the fraction goes, often more
    assert result["flops_removed"]["0.5_flops_removed_round_to_8"] >= 0.5


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="Torch-Pruning prunes torch models")
def test_torch_pruning_side_prunes_the_same_resnet_to_half_its_macs():
    pytest.importorskip("torch_pruning")
    side = load("structured_inference").torch_pruning_child(invokes=1, warmup=0, rounds=1)
    for who in ("torch_pruning", "keras_cka_sr"):
        before, after = side[who]["macs"]
        assert 0.45 <= 1 - after / before <= 0.55, (who, before, after)
    # the same architecture: parameters within 1% (BatchNorm counted alike)
    ours, theirs = side["keras_cka_sr"]["params"][0], side["torch_pruning"]["params"][0]
    assert abs(ours - theirs) / theirs < 0.01


def test_keras_hub_pruning_reports_every_kernel_kind_and_the_round_trip(tmp_path):
    pytest.importorskip("keras_hub")
    rows = load("keras_hub_pruning").main(
        ["--backend", keras.backend.backend(), "--steps", "2", "--targets", "0.5"]
        + ["--batch-size", "4", "--json", str(tmp_path / "hub.json")]
    )
    assert [r["model"] for r in rows] == ["GPT2CausalLM", "BertTextClassifier"]
    for row in rows:
        assert row["stripped_class"] == row["reloaded_class"] == row["model"]
        assert row["reloaded_max_abs_diff"] < 1e-5
        assert {"query", "feedforward_output_dense", "token_embedding"} <= set(row["kinds"])
        assert all(abs(k["sparsity"] - 0.5) < 0.02 for k in row["kinds"].values())
    assert json.loads((tmp_path / "hub.json").read_text())["rows"][0]["target"] == 0.5


def _block_run(criterion, seed, accuracy, removed_accuracy, model="resnet20", sparsity=0.25):
    config = {"method": "blocks", "model": model, "sparsity": sparsity, "cka_weight": 0.0}
    config |= {"block_criterion": criterion, "seed": seed}
    step = {"removed": ["a"], "val_accuracy_removed": removed_accuracy, "scores": {}}
    structure = {"flops_removed": 0.35, "block_steps": [step]}
    return {"config": config, "test_accuracy": accuracy, "structure": structure}


def test_block_removal_pairs_criteria_by_seed_with_holm_and_refuses_pooling(tmp_path):
    shift = {"cka": 0.02, "angular": 0.01, "l1": 0.0, "random": -0.01}
    runs = [
        _block_run(c, s, 0.9 + shift[c] + 0.001 * s * (c == "cka"), 0.5 + shift[c])
        for c in shift
        for s in range(3)
    ]
    path = tmp_path / "study.json"
    path.write_text(json.dumps({"runs": runs}))
    result = load_script("benchmarks/studies", "block_removal").main([str(path)])
    cka_random, cka_l1 = result["primary"]
    assert (cka_random["a"], cka_random["b"]) == ("cka", "random")
    assert cka_random["mean"] == pytest.approx(3.1) and cka_l1["mean"] == pytest.approx(2.1)
    assert cka_random["p_holm"] >= cka_random["p"]
    before = result["secondary_before_fine_tuning"][0]
    assert before["mean"] == pytest.approx(3.0)
    path.write_text(json.dumps({"runs": runs + [_block_run("cka", 5, 0.9, 0.5, sparsity=0.5)]}))
    with pytest.raises(SystemExit, match="pooled"):
        load_script("benchmarks/studies", "block_removal").main([str(path)])


def test_block_removability_pairs_beta_arms_with_beta_zero_by_seed(tmp_path):
    def run(beta, seed, before, after, accuracy):
        r = _block_run("cka", seed, accuracy, after)
        r["config"] |= {"cka_weight": beta, "epochs": 4}
        r["history"] = {"val_accuracy": [0.5, before, 0.9, 0.9]}
        r["structure"]["block_steps"][0]["scores"] = {"a": 0.9, "b": 0.8}
        return r

    baseline = [run(0.0, s, 0.9, 0.5, 0.95) for s in range(3)]
    study = [run(0.1, s, 0.9, 0.6 + 0.01 * s, 0.94) for s in range(3)]
    study += [run(0.03, s, 0.9, 0.5, 0.95 + 0.001 * s) for s in range(3)]
    paths = []
    for name, runs in (("study", study), ("baseline", baseline)):
        paths.append(str(tmp_path / f"{name}.json"))
        (tmp_path / f"{name}.json").write_text(json.dumps({"runs": runs}))
    result = load_script("benchmarks/studies", "block_removability").main(paths)
    assert result["primary"]["mean"] == pytest.approx(-11.0)  # cost 40 -> 29, 28, 27 points
    costs = {c["measure"]: c for c in result["secondary"] if c["beta"] == 0.03}
    assert costs["removal_cost"]["differences"] == pytest.approx([0, 0, 0])
    assert all("p_holm" in c for c in result["secondary"])
    baseline[0]["config"]["epochs"] = 6
    (tmp_path / "baseline.json").write_text(json.dumps({"runs": baseline}))
    with pytest.raises(SystemExit, match="cannot be paired"):
        load_script("benchmarks/studies", "block_removability").main(paths)
