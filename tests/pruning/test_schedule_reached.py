"""A schedule that leaves the masks short of its target warns, whatever its step counter says
(tfmot's counting is kept: training steps count from 1)."""

import warnings

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning


def _fit(schedule, steps=4, global_ranking=False):
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(16)(inp)))
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
