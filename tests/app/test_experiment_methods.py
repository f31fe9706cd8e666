"""Every method of the main job, with and without CKA-SR, on the backend under test."""

import math

import keras
import numpy as np
import pytest

from keras_cka_sr.app import datasets, experiment, recipes, zoo


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
    )
    values.update(overrides)
    return experiment.RunConfig(**values)


@pytest.mark.parametrize("method", experiment.TRAINING_METHODS.names())
def test_every_method_reaches_its_sparsity(method, digits):
    result = experiment.run(config(method), digits)
    expected = 0.0 if method == "dense" else 0.9
    assert result.sparsity == pytest.approx(expected, abs=2e-3)
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
    assert recipes.learning_rate(0.1, "constant", 100) == 0.1
    cosine = recipes.learning_rate(0.1, "cosine", 100)
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(100)) == pytest.approx(0.0)
    step = recipes.learning_rate(0.1, "step", 100)
    assert [float(step(t)) for t in (0, 50, 51, 75, 76)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001]
    )
    with pytest.raises(ValueError, match="lr_schedule"):
        recipes.learning_rate(0.1, "linear", 100)


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
