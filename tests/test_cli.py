import json
import os

import keras
import pytest

from keras_cka_sr import cli

pytest.importorskip("mlxtend")


def test_train_smoke_writes_results_plots_and_models(tmp_path, capsys):
    output = tmp_path / "results.json"
    plots = tmp_path / "plots"
    argv = [
        "train", "--subset", "256", "--epochs", "2", "--batch-size", "64", "--method", "gmp",
        "--sparsity", "0.8", "--compare", "--verbose", "0", "--cka-every", "1",
        "--output", str(output), "--plots", str(plots), "--save", str(tmp_path / "m.keras"),
    ]
    if keras.backend.backend() in ("tensorflow", "jax"):
        argv += ["--export", str(tmp_path / "saved")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "test acc (mean ± std)" in printed and "gain vs beta=0" in printed

    results = json.loads(output.read_text())
    assert set(results) == {"dataset", "backend", "summary", "runs"}
    assert len(results["runs"]) == 2 and len(results["summary"]) == 2
    for row in results["summary"]:
        assert {"method", "sparsity_target", "cka_weight", "test_accuracy_mean", "test_accuracy_std",
                "sparsity_achieved", "cka_mean", "small_weight_share", "seeds"} <= set(row)
        assert row["sparsity_achieved"] == pytest.approx(0.8, abs=0.01)
    assert "gain_mean" in results["summary"][1]
    run = results["runs"][0]
    assert len(run["cka_matrix"]) == len(run["cka_layers"]) == 4
    for name in ("cka_heatmap.png", "weight_magnitudes.png", "accuracy_vs_sparsity.png"):
        path = plots / name
        assert path.exists() and path.stat().st_size > 1000
    assert os.path.exists(tmp_path / "m.keras")
    if keras.backend.backend() in ("tensorflow", "jax"):
        assert os.path.exists(tmp_path / "saved" / "saved_model.pb")


def test_rst_and_oneshot_smoke(tmp_path):
    argv = ["train", "--subset", "128", "--epochs", "2", "--method", "rst", "oneshot", "dense",
            "--sparsity", "0.9", "--cka-weight", "1e-3", "--verbose", "0",
            "--output", str(tmp_path / "r.json")]
    assert cli.main(argv) == 0
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    achieved = {row["method"]: row["sparsity_achieved"] for row in summary}
    assert achieved["rst"] == pytest.approx(0.9, abs=0.01)
    assert achieved["oneshot"] == pytest.approx(0.9, abs=0.01)
    assert achieved["dense"] < 0.1


def test_bad_arguments_exit_with_usage():
    with pytest.raises(SystemExit):
        cli.main(["train", "--method", "magic"])
