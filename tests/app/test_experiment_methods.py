"""Every method of the main job, with and without CKA-SR, on the backend under test."""

import math

import keras
import numpy as np
import pytest

from keras_cka_sr.app import datasets, experiment, methods, recipes, run_config, zoo


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits").subset(train=128, test=64)


def config(method, **overrides):
    values = dict(
        model="mlp",
        method=method,
        sparsity=0.9,
        cka_weight=0.0,
        epochs=2,
        batch_size=32,
        verbose=0,
        probe_size=16,
        score_samples=64,
        synflow_rounds=5,
        dst_every=2,
        lth_rounds=1,
        prune_steps=1,
    )
    values.update(overrides)
    return run_config.RunConfig(**values)


@pytest.mark.parametrize(
    "method", [m for m in methods.TRAINING_METHODS.names() if m != "blocks"]
)  # blocks: a ResNet's, below
def test_every_method_reaches_its_sparsity(method, digits):
    result = experiment.run(config(method), digits)
    expected = 0.0 if method == "dense" else 0.9
    # channels: the fraction of FLOPs removed, in whole channels
    assert result.sparsity == pytest.approx(expected, abs=1e-2 if method == "channels" else 2e-3)
    assert result.finite and 0.0 <= result.test_accuracy <= 1.0
    assert "model" not in result.to_dict() and isinstance(result.model, keras.Model)


@pytest.mark.parametrize("method", ["snip", "rigl", "lth"])
def test_methods_compose_with_cka_sr_and_the_paper_recipe(method, digits):
    result = experiment.run(
        config(method, cka_weight=1e-3, cka_every=1, **{**recipes.PAPER, "lr_schedule": "step"}),
        digits,
    )
    assert result.sparsity == pytest.approx(0.9, abs=2e-3)
    assert result.finite and result.history["cka_sr"][0] > 0
    assert math.isfinite(result.cka_grad_ratio_max)


def test_channels_prunes_in_steps_to_a_smaller_faster_model(digits):
    result = experiment.run(config("channels", sparsity=0.5, epochs=4, prune_steps=2), digits)
    structure = result.structure
    assert structure["params"][1] < structure["params"][0]
    assert structure["flops_removed"] == result.sparsity == pytest.approx(0.5, abs=1e-2)
    assert structure["macs"][1] == pytest.approx(0.5 * structure["macs"][0], rel=0.02)
    assert all(ms > 0 for ms in structure["latency_ms"])
    assert len(result.history["loss"]) == 4  # 2 dense epochs, then 1 after each step
    widths = [layer.units for layer in result.model.layers if hasattr(layer, "units")]
    assert widths[-1] == 10 and max(widths[:-1]) < 300


def test_channels_round_kept_counts_to_multiples_of_channel_round_to(digits):
    with pytest.warns(UserWarning, match="more than the 50.0% asked"):
        result = experiment.run(config("channels", sparsity=0.5, channel_round_to=64), digits)
    widths = [layer.units for layer in result.model.layers if hasattr(layer, "units")]
    assert all(w % 64 == 0 for w in widths[:-1]) and widths[-1] == 10
    assert result.sparsity == result.structure["flops_removed"] > 0.55


def test_channel_round_to_is_refused_for_other_methods():
    with pytest.raises(ValueError, match="channel_round_to=8 applies to method 'channels' only"):
        config("gmp", channel_round_to=8)


@pytest.mark.parametrize("criterion", ["cka", "random"])
def test_blocks_removes_residual_blocks_to_its_flops_target(digits, criterion):
    result = experiment.run(
        config("blocks", model="resnet20", sparsity=0.3, epochs=2, block_criterion=criterion),
        digits,
    )
    structure = result.structure
    (step,) = structure["block_steps"]
    assert step["removed"] and result.sparsity == structure["flops_removed"] >= 0.3
    assert 0.0 <= step["val_accuracy_removed"] <= 1.0
    if criterion == "cka":  # the most identity-like first
        assert step["removed"][0] == max(step["scores"], key=step["scores"].get)
    names = {layer.name for layer in result.model.layers}
    assert not any(add in names for add in step["removed"])


def test_blocks_refuses_a_model_without_residual_blocks(digits):
    with pytest.raises(ValueError, match="model 'mlp' has none"):
        experiment.plan(config("blocks", epochs=2), digits)


def test_channels_needs_an_epoch_per_prune_step():
    with pytest.raises(ValueError, match="leaves 2 fine-tuning epochs for prune_steps=3"):
        config("channels", epochs=4, prune_steps=3)


def test_weight_decay_is_pytorchs_coupled_l2():
    model = zoo.build("mlp", (8, 8, 1), 10)
    recipes.add_weight_decay(model, 5e-4)
    weights = sum(
        float(np.sum(np.square(keras.ops.convert_to_numpy(w)))) for w in model.trainable_weights
    )
    x = np.zeros((1, 8, 8, 1), "float32")
    model(x)
    assert float(sum(keras.ops.convert_to_numpy(term) for term in model.losses)) == pytest.approx(
        5e-4 / 2 * weights, rel=1e-5
    )
    recipes.add_weight_decay(model, 0)
    model(x)
    assert not model.losses


def test_learning_rate_schedules():
    assert recipes.learning_rate(0.1, "constant", 10, 10) == 0.1
    cosine = recipes.learning_rate(0.1, "cosine", 10, 10)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        recipes.learning_rate(0.1, "linear", 10, 10)


@pytest.mark.parametrize("epochs", [1, 2, 5, 20])
def test_step_schedule_drops_where_pytorchs_multisteplr_does(epochs):
    steps_per_epoch = 3
    step = recipes.learning_rate(0.1, "step", steps_per_epoch, epochs)
    # The official code: MultiStepLR(milestones=[int(epochs / 2), int(epochs * 3 / 4)]),
    # stepped after each epoch; epoch e (0-based) trains at 0.1 * 0.1 ** (milestones <= e).
    milestones = [int(epochs / 2), int(epochs * 3 / 4)]
    expected = [0.1 * 0.1 ** sum(m <= e for m in milestones) for e in range(epochs)]
    schedule = step if callable(step) else (lambda t: step)
    got = [float(schedule(e * steps_per_epoch + i)) for e in range(epochs) for i in range(3)]
    assert got == pytest.approx([lr for lr in expected for _ in range(3)])


def test_nesterov_sgd_is_pytorchs_update_at_a_constant_rate():
    lr, mu, w0 = 0.1, 0.9, np.array([1.0, -2.0], "float32")
    optimizer = recipes.optimizer("sgd", lr, mu, "constant", 1, 1, nesterov=True)
    w = keras.Variable(w0)
    buffer, expected = np.zeros(2), w0.astype("float64")
    for _ in range(4):  # loss = sum(w^3) / 3: the gradient is w^2
        optimizer.apply_gradients([(keras.ops.square(w), w)])
        gradient = expected**2
        buffer = mu * buffer + gradient  # torch.optim.SGD(nesterov=True)
        expected = expected - lr * (gradient + mu * buffer)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(w), expected, rtol=1e-5)


def test_nesterov_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="nesterov"):
        recipes.optimizer("adam", 1e-3, 0.9, "constant", 1, 1, nesterov=True)
    with pytest.raises(ValueError, match="momentum > 0"):
        recipes.optimizer("sgd", 0.1, 0.0, "constant", 1, 1, nesterov=True)


def test_best_validation_keeps_the_first_best_epochs_weights():
    model = zoo.build("mlp", (8, 8, 1), 10)
    best = experiment._BestValidation(model)
    weights = model.get_weights()
    for epoch, accuracy in enumerate([0.5, 0.7, 0.7, 0.6]):
        if epoch == 1:
            weights = model.get_weights()
        best.on_epoch_end(epoch, {"val_accuracy": accuracy})
        model.set_weights([w + 1 for w in model.get_weights()])
    assert (best.epoch, best.accuracy) == (2, 0.7)
    for kept, expected in zip(best.weights, weights):
        np.testing.assert_array_equal(kept, expected)


def test_best_validation_is_chosen_among_epochs_at_the_final_sparsity():
    from keras_cka_sr import pruning

    model = pruning.prune_low_magnitude(
        zoo.build("mlp", (8, 8, 1), 10), pruning.ConstantSparsity(0.5, 0, frequency=1)
    )
    best = experiment._BestValidation(model)
    # Dense epochs with the best accuracy, then pruned epochs: only those count.
    for epoch, accuracy in enumerate([0.9, 0.95, 0.6, 0.7, 0.65]):
        if epoch == 2:
            for layer in pruning.collect_prunable_layers(model):
                layer.masks[0].assign(np.random.default_rng(0).random(layer.masks[0].shape) > 0.5)
        best.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert (best.epoch, best.accuracy) == (4, 0.7)
    assert best.sparsity == pytest.approx(0.5, abs=0.05)


def test_a_run_reports_its_best_validation_checkpoint(digits):
    result = experiment.run(config("gmp", epochs=4), digits)
    # The schedule ramps over the first 3 of 4 epochs: the checkpoint is as sparse as the end.
    assert 1 <= result.best_val_epoch <= 4
    assert result.best_val_accuracy == result.history["val_accuracy"][result.best_val_epoch - 1]
    assert result.best_val_sparsity == pytest.approx(result.sparsity, abs=1e-3)
    assert 0.0 <= result.test_accuracy_best_val <= 1.0
    if result.best_val_epoch == 4:
        assert result.test_accuracy_best_val == pytest.approx(result.test_accuracy)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(method="deepr"), "`method` must be one of"),
        (dict(optimizer="rmsprop"), "`optimizer` must be one of"),
        (dict(lr_schedule="linear"), "`lr_schedule` must be one of"),
        (dict(allocation="layer"), "`allocation` must be"),
        (dict(momentum=1.0), "momentum"),
        (dict(drop_fraction=0.0), "drop_fraction"),
        (dict(lth_rounds=0), "lth_rounds"),
    ],
)
def test_bad_configs_are_rejected_at_construction(overrides, message):
    method = overrides.pop("method", "rst")
    with pytest.raises(ValueError, match=message):
        config(method, **overrides)


@pytest.mark.parametrize("method", ["gmp", "oneshot"])
def test_magnitude_methods_rank_globally_on_request(method, digits):
    result = experiment.run(config(method, allocation="global", epochs=2), digits)
    rows = result.sparsity_summary["rows"]
    assert result.sparsity_summary["sparsity"] == pytest.approx(0.9, abs=2e-3)
    assert max(r["sparsity"] for r in rows) - min(r["sparsity"] for r in rows) > 0.05


def test_magnitude_methods_refuse_erk():
    with pytest.raises(ValueError, match="does not apply to method 'gmp'"):
        config("gmp", allocation="erk")


def test_largest_gradient_ratio_skips_nan_and_keeps_an_unbounded_one():
    nan, inf = float("nan"), float("inf")
    assert experiment._largest([nan, 0.5, 2.0]) == 2.0  # max() would return the leading nan
    assert experiment._largest([1.0, inf, nan]) == inf  # the task's gradient was 0
    assert math.isnan(experiment._largest([nan])) and math.isnan(experiment._largest([]))


def test_gmp_reaches_its_target_in_a_one_step_run():
    data = datasets.load("digits").subset(train=64, test=64)
    result = experiment.run(config("gmp", sparsity=0.95, epochs=1, batch_size=64), data)
    assert result.sparsity == pytest.approx(0.95, abs=2e-3)
