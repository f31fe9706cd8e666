"""A schedule that leaves the masks short of its target warns, whatever its step counter says
(tfmot's counting is kept: training steps count from 1)."""

import warnings

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning


def _fit(schedule, steps=4, global_ranking=False, width=16):
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(width)(inp)))
    pruned = pruning.prune_low_magnitude(model, schedule, global_ranking=global_ranking)
    pruned.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(16 * steps, 8)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruned.fit(x, np.zeros((len(x), 2)), batch_size=16, epochs=1, verbose=0,
                   callbacks=[pruning.UpdatePruningStep()])  # fmt: skip
    return pruned, [str(w.message) for w in caught if "did not reach" in str(w.message)]


@pytest.mark.parametrize(
    "schedule",
    [
        pruning.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=0),
        pruning.ConstantSparsity(0.5, 0, end_step=0),
        pruning.ConstantSparsity(0.5, 0),  # tfmot's frequency=100 over 4 steps
    ],
    ids=["polynomial-end-0", "constant-end-0", "default-frequency"],
)
def test_a_schedule_that_never_prunes_warns(schedule):
    model, messages = _fit(schedule)
    assert pruning.sparsity_summary(model).sparsity == 0.0
    assert len(messages) == 1 and "Pruning did not reach its target" in messages[0]
    assert [u["sparsity"] for u in pruning.unfinished_schedules(model)] == [0.0, 0.0]


def test_a_schedule_that_reaches_its_target_stays_quiet():
    model, messages = _fit(pruning.ConstantSparsity(0.5, 0, frequency=1))
    assert messages == [] and pruning.unfinished_schedules(model) == []


def test_global_ranking_is_checked_over_its_layers_together():
    model, messages = _fit(pruning.ConstantSparsity(0.5, 0, frequency=1), global_ranking=True)
    per_layer = [r.sparsity for r in pruning.sparsity_summary(model).rows]
    assert messages == [] and max(per_layer) != min(per_layer)


def test_mixed_precision_masks_rank_the_float32_weights():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        # 8 x 2048 weights: bfloat16 copies of them hold many ties
        model, messages = _fit(pruning.ConstantSparsity(0.95, 0, frequency=1), steps=2, width=2048)
    finally:
        keras.config.set_dtype_policy("float32")
    for row in pruning.sparsity_summary(model).rows:
        assert row.nonzeros == max(round(row.params * 0.05), 1), row


def _small_first_layer(min_density=0.0):
    inp = keras.Input((8,))
    first = keras.layers.Dense(16, name="first")
    model = keras.Model(inp, keras.layers.Dense(2, name="head")(first(inp)))
    first.kernel.assign(first.kernel * 1e-6)  # the global ranking's first victim
    return pruning.prune_low_magnitude(
        model,
        pruning.ConstantSparsity(0.9, 0, frequency=1),
        global_ranking=True,
        min_density=min_density,
    )


def _train(model):
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, np.zeros((32, 2)), batch_size=16, epochs=2, verbose=0,
                  callbacks=[pruning.UpdatePruningStep()])  # fmt: skip
    return [str(w.message) for w in caught if "pruned to 100%" in str(w.message)]


def test_global_ranking_that_empties_a_layer_warns_once():
    model = _small_first_layer()
    messages = _train(model)
    assert len(messages) == 1 and "'first'" in messages[0] and "min_density" in messages[0]
    assert pruning.sparsity_summary(model).rows[0].nonzeros == 0


def test_a_floor_keeps_a_share_of_every_layer():
    model = _small_first_layer(min_density=0.1)
    assert _train(model) == []
    first, head = pruning.sparsity_summary(model).rows
    assert first.nonzeros == round(0.1 * first.params)  # 13 of 128
    wrapper = pruning.collect_prunable_layers(model)[0]
    assert type(wrapper).from_config(wrapper.get_config()).min_density == 0.1


def test_a_floor_without_global_ranking_is_refused():
    with pytest.raises(ValueError, match="min_density=0.1. is a floor for global ranking"):
        pruning.prune_low_magnitude(keras.layers.Dense(2), min_density=0.1)
