"""The example scripts run (tiny settings), so they stay true."""

import keras
import pytest

from tests.support.scripts import load_script

pytest.importorskip("mlxtend")


def load(name):
    return load_script("examples", name)


def test_attach_to_functional_model():
    history = load("attach_to_functional_model").main(["--epochs", "1", "--subset", "256"])
    assert history.history["cka_sr"][0] > 0


def test_subclassed_model():
    results = load("subclassed_model").main(["--epochs", "1", "--subset", "128"])
    assert results["ConvNet"]["cka_sr"][0] > 0
    assert results["ConvNetPlainAddLoss"]["loss"][0] > 0


def test_prune_with_cka_sr_and_export(tmp_path):
    argv = ["--epochs", "2", "--subset", "512"]
    if keras.backend.backend() != "torch":
        argv += ["--export", str(tmp_path / "saved")]
    result = load("prune_with_cka_sr_and_export").main(argv)
    assert all(s == pytest.approx(0.9, abs=0.01) for s in result["sparsity"].values())
    assert 0.0 <= result["test_accuracy"] <= 1.0  # 2 epochs on 512 digits: not a quality check
    if keras.backend.backend() != "torch":
        assert result["export_matches"] is True


def test_cifar_example_needs_data_dir():
    with pytest.raises(SystemExit):
        load("cifar10_resnet20").main([])


def test_tfmot_pruning_in_keras_tutorial():
    result = load("pruning_in_keras").main(
        ["--epochs", "1", "--prune-epochs", "2", "--subset", "1024", "--frequency", "1"]
    )
    assert all(s == pytest.approx(0.8, abs=0.01) for s in result["kernel_sparsity"].values())
    sizes = result["gzip_bytes"]
    assert sizes["pruned_keras"] < 0.5 * sizes["baseline_keras"]
    if keras.backend.backend() != "torch":
        # the same predictions up to float rounding near ties (2 of 1000 digits at most)
        assert result["pruned_tflite_accuracy"] == pytest.approx(
            result["stripped_keras_accuracy"], abs=0.002
        )
        assert sizes["pruned_quantized_tflite"] < 0.5 * sizes["pruned_tflite"]


@pytest.mark.slow
def test_tfmot_pruning_comprehensive_guide():
    results = load("pruning_comprehensive_guide").main(["--epochs", "1", "--subset", "256"])
    assert len(results) == 11 and all(results.values())
