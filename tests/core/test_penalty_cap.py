"""The opt-in per-tensor cap of the penalty's gradient (`penalty_grad_cap`)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_cka_sr
from keras_cka_sr import CKASimilarityLoss, attach_cka_loss
from keras_cka_sr.penalty_cap import cap_penalty_gradients, penalty_scales

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
BACKEND = keras.backend.backend()


def oracle(task, penalty, cap):
    """float64 NumPy: g_t + min(1, cap ||g_t|| / ||g_p||) g_p per tensor."""
    out = []
    for t, p in zip(task, penalty):
        t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
        norm_t, norm_p = np.linalg.norm(t), np.linalg.norm(p)
        scale = 1.0 if norm_p <= cap * norm_t else cap * norm_t / norm_p
        out.append(t + scale * p)
    return out


@pytest.mark.parametrize("cap", [0.1, 1.0, 50.0])
def test_capped_sum_equals_oracle(rng, cap):
    shapes = [(3, 4), (4,), (2, 2, 3, 5)]
    task = [rng.normal(size=s).astype("float32") for s in shapes]
    penalty = [rng.normal(size=s).astype("float32") * k for s, k in zip(shapes, [0.01, 1, 30])]
    got = cap_penalty_gradients(
        [ops.convert_to_tensor(t) for t in task], [ops.convert_to_tensor(p) for p in penalty], cap
    )
    for g, e in zip(got, oracle(task, penalty, cap)):
        np.testing.assert_allclose(ops.convert_to_numpy(g), e, rtol=1e-5, atol=1e-6)


def test_capped_penalty_norm_is_cap_times_task_norm(rng):
    task, penalty = rng.normal(size=(6, 5)), 100 * rng.normal(size=(6, 5))
    (combined,) = cap_penalty_gradients([ops.array(task)], [ops.array(penalty)], 0.25)
    capped = ops.convert_to_numpy(combined) - task
    np.testing.assert_allclose(np.linalg.norm(capped), 0.25 * np.linalg.norm(task), rtol=1e-5)


def test_zero_and_missing_gradients():
    zero, ones = ops.zeros((3,)), ops.ones((3,))
    scales = penalty_scales([zero, ones, None, ones], [ones, zero, ones, None], 0.5)
    # Only the penalty reaches it: removed; no penalty gradient: untouched.
    assert [float(ops.convert_to_numpy(s)) for s in scales] == [0.0, 1.0, 0.0, 1.0]
    combined = cap_penalty_gradients([zero, ones, None, ones], [ones, zero, ones, None], 0.5)
    for g, e in zip(combined, [[0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 1]]):
        np.testing.assert_array_equal(ops.convert_to_numpy(g), e)


def mlp():
    inp = keras.Input((6,))
    h1 = keras.layers.Dense(8, activation="tanh", name="a")(inp)
    h2 = keras.layers.Dense(8, activation="tanh", name="b")(h1)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h2))


def data(n=24):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 6)).astype("float32"), np.arange(n) % 3


def one_step(weights, beta, cap, eager, lr=0.5):
    """Weights after one full-batch SGD step on a fresh model set to `weights`."""
    base = mlp()
    base.set_weights(weights)
    model = attach_cka_loss(base, ["a", "b"], CKASimilarityLoss(weight=beta), penalty_grad_cap=cap)
    model.compile(keras.optimizers.SGD(lr), CE, run_eagerly=eager)
    x, y = data()
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
    return base.get_weights(), history.history


@pytest.mark.parametrize("eager", [False, True])
def test_step_applies_the_capped_gradient(eager):
    """Keras' own train step gives g_task (beta 0) and g_task + g_penalty (no cap); the capped
    step must move each weight by exactly the oracle's combination of the two."""
    weights, lr = mlp().get_weights(), 0.5
    task_only, _ = one_step(weights, 0.0, None, eager, lr)
    uncapped, _ = one_step(weights, 3.0, None, eager, lr)
    g_task = [(w - t) / lr for w, t in zip(weights, task_only)]
    g_penalty = [(t - u) / lr for t, u in zip(task_only, uncapped)]
    ratios = [np.linalg.norm(p) / np.linalg.norm(t) for t, p in zip(g_task, g_penalty)]
    reached = [r for r in ratios if r > 0]
    assert len(reached) == 4 and min(reached) < 0.5 * max(reached)
    cap = float(np.sqrt(min(reached) * max(reached)))  # binds on some tensors, not on others
    capped, history = one_step(weights, 3.0, cap, eager, lr)
    expected = [w - lr * g for w, g in zip(weights, oracle(g_task, g_penalty, cap))]
    for got, want in zip(capped, expected):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert np.isfinite(history["loss"][0]) and history["cka_sr"][0] > 0


@pytest.mark.parametrize("eager", [False, True])
def test_large_cap_is_keras_own_step(eager):
    weights = mlp().get_weights()
    plain, plain_history = one_step(weights, 3.0, None, eager)
    capped, capped_history = one_step(weights, 3.0, 1e9, eager)
    for got, want in zip(capped, plain):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    for key in ("loss", "cka_sr"):
        np.testing.assert_allclose(capped_history[key], plain_history[key], rtol=1e-5)


def test_skipped_penalty_steps_train_as_keras_does():
    """every_n_steps: the penalty's gradient is 0 on skipped steps; a ragged last batch too."""
    weights = mlp().get_weights()
    x, y = data(30)
    results = []
    for cap in (None, 1e9):
        base = mlp()
        base.set_weights(weights)
        loss = CKASimilarityLoss(weight=0.5, every_n_steps=2, num_samples=4)
        model = attach_cka_loss(base, ["a", "b"], loss, penalty_grad_cap=cap)
        model.compile(keras.optimizers.SGD(0.1), CE, metrics=["accuracy"])
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        results.append((base.get_weights(), history.history))
    for got, want in zip(results[1][0], results[0][0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    for key in ("loss", "accuracy", "cka_sr"):
        np.testing.assert_allclose(results[1][1][key], results[0][1][key], rtol=1e-4)


def test_mixed_precision_with_loss_scaling():
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if BACKEND != "torch" else "mixed_bfloat16"
    )
    model = attach_cka_loss(mlp(), ["a", "b"], CKASimilarityLoss(weight=1.0), penalty_grad_cap=0.1)
    model.compile(keras.optimizers.SGD(0.1), CE)
    x, y = data()
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


class Net(keras_cka_sr.CKASRMixin, keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(8, activation="tanh")
        self.b = keras.layers.Dense(8, activation="tanh")
        self.cka_sr = keras_cka_sr.CKARegularization(CKASimilarityLoss(weight=3.0))
        self.out = keras.layers.Dense(3)

    def call(self, x, training=False):
        f1 = self.a(x)
        f2 = self.cka_sr([f1, self.b(f1)], training=training)
        return self.out(f2)


def test_subclassed_model_with_the_mixin():
    x, y = data()
    model = Net(penalty_grad_cap=0.05)
    model.compile(keras.optimizers.SGD(0.1), CE)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"])) and history.history["cka_sr"][0] > 0


def test_saved_and_loaded(tmp_path):
    model = attach_cka_loss(
        mlp(), ["a", "b"], CKASimilarityLoss(), penalty_grad_cap=np.float32(0.1)
    )
    assert model.penalty_grad_cap == 0.1
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", compile=False)
    assert isinstance(loaded, keras_cka_sr.CKASRModel) and loaded.penalty_grad_cap == 0.1
    plain = attach_cka_loss(mlp(), ["a", "b"])
    assert "penalty_grad_cap" not in plain.get_config() and plain.penalty_grad_cap is None


@pytest.mark.parametrize(
    "cap, error",
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("inf"), ValueError),
        ("0.1", TypeError),
        (True, TypeError),
    ],
)
def test_bad_cap_is_refused_before_tracing(cap, error):
    base = mlp()
    with pytest.raises(error, match="`penalty_grad_cap` must be a finite number > 0"):
        attach_cka_loss(base, ["a", "b"], penalty_grad_cap=cap)
    with pytest.raises(error, match="penalty_grad_cap"):
        Net(penalty_grad_cap=cap)
    assert [layer.name for layer in base.layers][-1] == "out"  # the model is untouched


def xla_cap_fit(num_samples):
    inp = keras.Input((16,))
    a = keras.layers.Dense(8, activation="relu", name="a")(inp)
    b = keras.layers.Dense(8, activation="relu", name="b")(a)
    loss = CKASimilarityLoss(1e-2, num_samples=num_samples)
    base = keras.Model(inp, keras.layers.Dense(3)(b))
    model = attach_cka_loss(base, ["a", "b"], loss, penalty_grad_cap=0.1)
    model.compile("sgd", CE, jit_compile=True)
    x = np.random.default_rng(0).normal(size=(34, 16)).astype("float32")
    return model.fit(x, np.arange(34) % 3, batch_size=16, epochs=1, verbose=0)  # last batch: 2


@pytest.mark.skipif(BACKEND != "tensorflow", reason="a TF/XLA tracing failure")
@pytest.mark.xfail(
    strict=True,
    raises=ValueError,
    reason="known bug: on TF with jit_compile=True, a cap, all samples (num_samples=None) "
    "and an unknown batch size (a ragged last batch below the estimator's minimum) fail "
    "while tracing the cond gradient ('Cannot reshape a tensor with 0 elements'); without "
    "jit the first trace takes ~5x longer instead. Not fixed yet.",
)
def test_cap_under_xla_with_a_ragged_last_batch():
    xla_cap_fit(num_samples=None)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the TF/XLA case above")
def test_cap_under_xla_with_a_ragged_last_batch_and_num_samples_set():
    history = xla_cap_fit(num_samples=8).history
    assert np.isfinite(history["loss"][0]) and history["cka_sr"][0] > 0
