"""CKAGradientMonitor: per-kernel ratio of the penalty's gradient to the task's."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, pruning
from keras_cka_sr.callbacks import CKAGradientMonitor
from tests.support.grads import gradients

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp():
    inp = keras.Input((4,))
    h1 = keras.layers.Dense(5, activation="tanh", name="a")(inp)
    h2 = keras.layers.Dense(5, activation="tanh", name="b")(h1)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h2))


def probe(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype("float32"), np.arange(n) % 3


def test_ratios_equal_an_independent_computation():
    base = mlp()
    loss = CKASimilarityLoss(weight=0.3, every_n_steps=5, start_step=100)
    model = attach_cka_loss(base, ["a", "b"], loss)
    model.compile("sgd", CE)
    x, y = probe()
    monitor = CKAGradientMonitor(x, y, ["a", "b"], loss)
    monitor.set_model(model)
    got = monitor.measure()

    (k1, b1), (k2, b2), (k3, b3) = [
        [ops.convert_to_numpy(w) for w in base.get_layer(n).weights] for n in ("a", "b", "out")
    ]
    plain = CKASimilarityLoss(weight=0.3)

    def hidden(w1, w2):
        h1 = ops.tanh(ops.add(ops.matmul(x, w1), b1))
        return h1, ops.tanh(ops.add(ops.matmul(h1, w2), b2))

    def task(w1, w2, w3):
        return CE(y, ops.add(ops.matmul(hidden(w1, w2)[1], w3), b3))

    def penalty(w1, w2, w3):
        return plain(list(hidden(w1, w2)))

    g_task = gradients(task, [k1, k2, k3])
    g_penalty = gradients(penalty, [k1, k2, k3])
    expected = [np.linalg.norm(p) / np.linalg.norm(t) for p, t in zip(g_penalty, g_task)]
    paths = [base.get_layer(n).kernel.path for n in ("a", "b", "out")]
    assert list(got) == paths
    np.testing.assert_allclose([got[p] for p in paths], expected, rtol=1e-4)
    assert got[paths[2]] == 0.0  # the head is not tapped: no penalty gradient


def test_measuring_changes_no_variable():
    model = attach_cka_loss(pruning.prune_low_magnitude(mlp()), ["a", "b"])
    model.compile("sgd", CE)
    x, y = probe()
    before = [ops.convert_to_numpy(v).copy() for v in model.variables]
    monitor = CKAGradientMonitor(x, y, ["a", "b"], CKASimilarityLoss())
    monitor.set_model(model)
    monitor.measure()
    for v, b in zip(model.variables, before):
        np.testing.assert_array_equal(ops.convert_to_numpy(v), b, err_msg=v.path)


def test_fit_logs_the_largest_ratio_and_warns_once_when_the_penalty_dominates():
    x, y = probe(32)
    loss = CKASimilarityLoss(weight=1e3)
    model = attach_cka_loss(mlp(), ["a", "b"], loss)
    model.compile(keras.optimizers.SGD(1e-4), CE)
    monitor = CKAGradientMonitor(x[:16], y[:16], ["a", "b"], loss)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[monitor]).history
    assert len(history["cka_grad_ratio"]) == 2 and min(history["cka_grad_ratio"]) > 1
    assert len(monitor.ratios) == 3  # before the first batch + 2 epochs
    dominance = [w for w in caught if "steers that kernel" in str(w.message)]
    assert len(dominance) == 1


def test_a_cap_below_warn_above_silences_the_warning_but_not_the_log():
    x, y = probe(32)
    loss = CKASimilarityLoss(weight=1e3)
    model = attach_cka_loss(mlp(), ["a", "b"], loss, penalty_grad_cap=0.5)
    model.compile(keras.optimizers.SGD(1e-4), CE)
    monitor = CKAGradientMonitor(x[:16], y[:16], ["a", "b"], loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor]).history
    assert history["cka_grad_ratio"][0] > 1  # the raw ratio, before the cap


def test_small_weight_does_not_warn():
    x, y = probe()
    loss = CKASimilarityLoss(weight=1e-6)
    model = attach_cka_loss(mlp(), ["a", "b"], loss)
    model.compile("sgd", CE)
    monitor = CKAGradientMonitor(x, y, ["a", "b"], loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[monitor])
    assert max(monitor.ratios[-1].values()) < 1


def test_listed_before_update_pruning_step_it_raises_no_missing_callback_warning():
    x, y = probe()
    loss = CKASimilarityLoss(weight=1e-4)
    wrapped = pruning.prune_low_magnitude(mlp(), pruning.ConstantSparsity(0.5, 0, frequency=1))
    model = attach_cka_loss(wrapped, ["a", "b"], loss)
    model.compile("sgd", CE)
    monitor = CKAGradientMonitor(x, y, ["a", "b"], loss)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0,
                  callbacks=[monitor, pruning.UpdatePruningStep()])  # fmt: skip
    assert len(monitor.ratios) == 2  # before the first batch + 1 epoch


def test_bad_arguments():
    x, y = probe()
    with pytest.raises(TypeError, match="CKASimilarityLoss"):
        CKAGradientMonitor(x, y, ["a", "b"], loss=lambda f: 0.0)
    with pytest.raises(ValueError, match="warn_above"):
        CKAGradientMonitor(x, y, ["a", "b"], CKASimilarityLoss(), warn_above=float("nan"))
