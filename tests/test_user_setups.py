"""The set-ups real users have: mixed precision, torch.compile, gradient accumulation,
unknown batch sizes, odd taps, pruning edge cases, input pipelines, save/resume, export."""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import CKASimilarityLoss, attach_cka_loss, cka, pruning
from keras_cka_sr._numpy import to_numpy
from tests.support.pruned import pruning_steps, stored_sparsities

BACKEND = keras.backend.backend()
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(width=16):
    inp = keras.Input((8,), name="x")
    a = keras.layers.Dense(width, activation="relu", name="a")(inp)
    b = keras.layers.Dense(width, activation="relu", name="b")(a)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(b), name="mlp")


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 8)).astype("float32"), (np.arange(n) % 3).astype("int32")


# --------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_pruning_under_mixed_precision_prunes_the_stored_kernels(policy):
    """torch kept every mask at ones (masks written into an autocast copy): a dense model."""
    keras.mixed_precision.set_global_policy(policy)
    model = pruning.prune_low_magnitude(
        mlp(), pruning_schedule=pruning.ConstantSparsity(0.75, 0, frequency=1)
    )
    model.compile("sgd", CE)
    x, y = data()
    model.fit(x, y, batch_size=16, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert stored_sparsities(pruning.strip_pruning(model)) == [0.75, 0.75, 0.75]


# ------------------------------------------------------------------------ torch.compile


@pytest.mark.skipif(BACKEND != "torch", reason="jit_compile=True is torch.compile on torch only")
@pytest.mark.parametrize("what", ["cka", "pruning"])
def test_torch_compile_is_refused_when_fit_starts_and_the_model_stays_usable(what):
    x, y = data()
    if what == "cka":
        model = attach_cka_loss(mlp(), ["a", "b"], CKASimilarityLoss(weight=1e-2))
        callbacks, match = [], "CKA-SR does not support `jit_compile=True`"
    else:
        model = pruning.prune_low_magnitude(mlp(), pruning.ConstantSparsity(0.5, 0, frequency=1))
        callbacks, match = [pruning.UpdatePruningStep()], "Pruning .* does not support"
    model.compile("sgd", CE, jit_compile=True)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, batch_size=16, verbose=0, callbacks=callbacks)
    model.compile("sgd", CE, jit_compile=False)
    history = model.fit(x, y, batch_size=16, verbose=0, callbacks=callbacks).history
    assert np.isfinite(history["loss"][-1])


# ---------------------------------------------------------------- gradient accumulation


def test_gradient_accumulation_steps_count_batches_for_pruning_and_cka():
    """The documented clock: one pruning step and one CKA step per batch (as tfmot), while
    the optimizer updates once per `gradient_accumulation_steps` batches."""
    wrapped = pruning.prune_low_magnitude(mlp(), pruning.PolynomialDecay(0.0, 0.5, 0, 16, 1, 4))
    model = attach_cka_loss(wrapped, ["a", "b"], CKASimilarityLoss(every_n_steps=5))
    model.compile(keras.optimizers.Adam(1e-3, gradient_accumulation_steps=2), CE)
    x, y = data(64)
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    assert int(to_numpy(model.optimizer.iterations)) == 8
    assert pruning_steps(model) == {16}
    assert int(to_numpy(model.get_layer("cka_regularization").step)) == 16
    assert pruning.unfinished_schedules(model) == []


# --------------------------------------------------------------- unknown batch size (TF)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="only TF traces with an unknown batch size")
@pytest.mark.parametrize("n", [6, 300], ids=["gram_regime", "feature_regime"])
def test_unknown_batch_size_picks_the_form_at_run_time_and_matches_static(n):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    features = [rng.normal(size=(n, 8)).astype("float32") for _ in range(3)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    spec = tf.TensorSpec((None, 8), tf.float32)

    @tf.function(input_signature=[spec, spec, spec])
    def traced(a, b, c):
        return cka.pairwise_cka([a, b, c], pairs, unbiased=True)

    expected = cka.pairwise_cka(features, pairs, unbiased=True)
    np.testing.assert_allclose(to_numpy(traced(*features)), to_numpy(expected), atol=1e-5)


def test_break_even_batch_size_agrees_with_choose_method():
    dims, pairs = [8, 8, 8], [(0, 1), (0, 2), (1, 2)]
    limit = cka._feature_break_even(dims, pairs)
    assert cka.choose_method(dims, int(limit), pairs) == "gram"
    assert cka.choose_method(dims, int(limit) + 1, pairs) == "feature"


MEMORY_SCRIPT = """
import resource, numpy as np, keras, tensorflow as tf
from keras_cka_sr import CKASimilarityLoss, attach_cka_loss
inp = keras.Input((8,))
a = keras.layers.Dense(8, activation="relu", name="a")(inp)
b = keras.layers.Dense(8, activation="relu", name="b")(a)
model = attach_cka_loss(keras.Model(inp, keras.layers.Dense(1)(b)), ["a", "b"],
                        CKASimilarityLoss(weight=1e-3))
model.compile("adam", "mse")
x = np.random.rand(16384, 8).astype("float32")
ds = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8192)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model.fit(ds, epochs=1, verbose=0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="only TF traces with an unknown batch size")
def test_tf_data_input_keeps_memory_linear_in_the_batch():
    """tf.data batches of 8192 x 8 features: the n x n Gram form grew the peak RSS by
    4.3 GB; the feature form by ~0.1 GB (tracing included)."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth_mb = float(done.stdout.strip().splitlines()[-1])
    assert growth_mb < 1000, growth_mb


# ------------------------------------------------------------------------------ taps


class DictOutput(keras.layers.Layer):
    def call(self, x):
        return {"double": 2.0 * x, "same": x}

    def compute_output_spec(self, x):
        return {"double": keras.KerasTensor(x.shape), "same": keras.KerasTensor(x.shape)}


def dict_model():
    inp = keras.Input((8,), name="x")
    parts = DictOutput(name="split")(inp)
    a = keras.layers.Dense(8, name="a")(parts["double"])
    b = keras.layers.Dense(8, name="b")(a)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(b))


@pytest.mark.parametrize(
    "names,message",
    [
        (["split", "a"], "Layer 'split' returns a dict, not one tensor"),
        ([["a", "b"], ["b", "b"]], "names a layer more than once: \\['b', 'b'\\]"),
        (["x", "a"], "names the Input layer\\(s\\) \\['x'\\]"),
    ],
)
def test_odd_taps_are_refused_at_attach_time_and_the_model_stays_usable(names, message):
    model = dict_model()
    with pytest.raises(ValueError, match=message):
        attach_cka_loss(model, names)
    x, y = data()
    model.compile("sgd", CE)
    model.fit(x, y, batch_size=16, verbose=0)
    assert model.predict(x[:4], verbose=0).shape == (4, 3)


# ------------------------------------------------------------------ pruning edge cases


def test_a_block_size_covering_the_whole_weight_is_refused_when_wrapping():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"block_size=\(8, 8\) covers all of .*\(6, 5\)"):
        pruning.prune_low_magnitude(model, block_size=(8, 8))


def test_block_pruning_of_a_weight_that_is_not_rank_2_is_refused_when_wrapping():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="rank 2 once squeezed"):
        pruning.prune_low_magnitude(model, block_size=(2, 2))


def test_wrapping_an_already_wrapped_layer_is_refused():
    wrapper = pruning.prune_low_magnitude(keras.layers.Dense(3, name="d"))
    with pytest.raises(ValueError, match="'d' is already wrapped"):
        pruning.prune_low_magnitude(wrapper)
    with pytest.raises(ValueError, match="already wrapped"):
        pruning.PruneLowMagnitude(wrapper)


def fit_with_warnings(schedule, n=1130, batch_size=10):
    model = pruning.prune_low_magnitude(mlp(32), pruning_schedule=schedule)
    model.compile("adam", CE)
    x, y = data(n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=batch_size, verbose=0, callbacks=[pruning.UpdatePruningStep()])
    return model, [str(w.message) for w in caught if "did not reach" in str(w.message)]


def test_a_schedule_longer_than_training_warns_once_with_the_figures():
    """The pruning guide's trap (end_step 2000) on one epoch of 113 steps."""
    model, messages = fit_with_warnings(pruning.PolynomialDecay(0.5, 0.9, 0, 2000, frequency=100))
    assert len(messages) == 1
    assert (
        "stopped at pruning step 113, before the schedule's last pruning step 2000" in (messages[0])
    )
    assert "target 90.0%" in messages[0] and "steps_per_epoch * epochs" in messages[0]
    [first] = [u for u in pruning.unfinished_schedules(model) if u["layer"].endswith("_a")]
    assert first["step"] == 113 and first["target"] == 0.9 and first["sparsity"] < 0.9


def test_a_frequency_larger_than_the_span_warns_that_the_schedule_never_gets_there():
    _, messages = fit_with_warnings(pruning.PolynomialDecay(0.0, 0.9, 0, 50, frequency=100))
    assert len(messages) == 1 and "never gets there" in messages[0]


def test_a_finished_schedule_does_not_warn():
    model, messages = fit_with_warnings(pruning.PolynomialDecay(0.0, 0.9, 0, 100, frequency=10))
    assert messages == [] and pruning.unfinished_schedules(model) == []


def test_the_custom_loop_check_reads_the_step():
    model = pruning.prune_low_magnitude(mlp(), pruning.ConstantSparsity(0.5, begin_step=10))
    model.build((None, 8))
    assert [u["step"] for u in pruning.unfinished_schedules(model)] == [0, 0, 0]
    with pytest.warns(UserWarning, match="stopped at pruning step 0"):
        pruning.warn_unfinished_schedules(model)


@pytest.mark.skipif(
    BACKEND == "torch", reason="torch 2.13's own Tensor.__array__ warns inside Keras' fit"
)
def test_pruning_fit_strip_and_reports_raise_no_numpy_copy_warning():
    model = pruning.prune_low_magnitude(mlp(), pruning.ConstantSparsity(0.5, 0, frequency=1))
    model.compile("sgd", CE)
    x, y = data()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*copy keyword.*")
        model.fit(x, y, batch_size=16, verbose=0, callbacks=[pruning.UpdatePruningStep()])
        pruning.strip_pruning(model)
        pruning.unfinished_schedules(model)


# -------------------------------------------------------- held set-ups, kept under test


@pytest.mark.skipif(BACKEND == "torch", reason="Keras refuses steps_per_execution > 1 on torch")
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "jit"])
def test_steps_per_execution_counts_every_batch(jit):
    histories, steps = [], []
    for spe in (1, 4):
        keras.utils.set_random_seed(0)
        wrapped = pruning.prune_low_magnitude(mlp(), pruning.ConstantSparsity(0.5, 0, frequency=3))
        model = attach_cka_loss(wrapped, ["a", "b"], CKASimilarityLoss(every_n_steps=5))
        model.compile("sgd", CE, steps_per_execution=spe, jit_compile=jit)
        x, y = data(48)
        history = model.fit(
            x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
            callbacks=[pruning.UpdatePruningStep()],
        )  # fmt: skip
        histories.append(history.history)
        steps.append((pruning_steps(model), int(to_numpy(model.optimizer.iterations))))
    # 6 batches per epoch: one execution of 4 steps, then a partial one of 2.
    assert steps == [({12}, 12), ({12}, 12)]
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-5)


def batches(x, y, size):
    while True:
        for start in range(0, len(x), size):
            yield x[start : start + size], y[start : start + size]


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, size):
        super().__init__()
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return int(np.ceil(len(self.x) / self.size))

    def __getitem__(self, index):
        part = slice(index * self.size, (index + 1) * self.size)
        return self.x[part], self.y[part]


@pytest.mark.filterwarnings("ignore:`shuffle=True` was passed")
@pytest.mark.parametrize("source", ["generator", "py_dataset", "tf_data"])
def test_input_pipelines_give_the_numpy_history(source):
    x, y = data(64)
    if source == "tf_data":
        if BACKEND != "tensorflow":
            pytest.skip("tf.data is fed to fit on the TF backend here")
        import tensorflow as tf

        feed = dict(x=tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    elif source == "generator":
        feed = dict(x=batches(x, y, 16), steps_per_epoch=4)
    else:
        feed = dict(x=Batches(x, y, 16))
    histories = []
    for kwargs in (dict(x=x, y=y, batch_size=16, shuffle=False), feed):
        keras.utils.set_random_seed(0)
        model = attach_cka_loss(mlp(), ["a", "b"], CKASimilarityLoss(weight=1e-2))
        model.compile("sgd", CE)
        histories.append(model.fit(epochs=2, verbose=0, **kwargs).history)
    # Same batches in the same order; float32 rounding differs between the adapters'
    # pipelines, which the unbiased CKA of 16 samples amplifies (up to ~5e-4 seen).
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-3)
    np.testing.assert_allclose(histories[0]["cka_sr"], histories[1]["cka_sr"], rtol=2e-3)


def two_input_model():
    left, right = keras.Input((8,), name="left"), keras.Input((4,), name="right")
    a = keras.layers.Dense(8, activation="relu", name="a")(left)
    b = keras.layers.Dense(8, activation="relu", name="b")(right)
    c = keras.layers.Dense(8, activation="relu", name="c")(keras.layers.Concatenate()([a, b]))
    outputs = {"cls": keras.layers.Dense(3, name="cls")(c), "reg": keras.layers.Dense(1)(c)}
    return keras.Model({"left": left, "right": right}, outputs)


def test_multi_input_dict_output_model_trains_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    x = {"left": rng.normal(size=(32, 8)), "right": rng.normal(size=(32, 4))}
    y = {"cls": np.arange(32) % 3, "reg": rng.normal(size=(32, 1))}
    model = attach_cka_loss(two_input_model(), ["a", "c"], CKASimilarityLoss(weight=1e-2))
    model.compile("adam", {"cls": CE, "reg": "mse"})
    history = model.fit(x, y, batch_size=8, verbose=0).history
    assert history["cka_sr"][0] > 0
    path = str(tmp_path / "two.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for key in ("cls", "reg"):
        np.testing.assert_allclose(
            model.predict(x, verbose=0)[key], loaded.predict(x, verbose=0)[key], atol=1e-6
        )
    loaded.fit(x, y, batch_size=8, verbose=0)


RESUME_SCRIPT = """
import json, sys, numpy as np, keras
from keras_cka_sr import pruning
model = keras.saving.load_model(sys.argv[1])
rng = np.random.default_rng(0)
x, y = rng.normal(size=(64, 8)).astype("float32"), (np.arange(64) % 3).astype("int32")
model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=[pruning.UpdatePruningStep()])
print(json.dumps([np.asarray(w).tolist() for w in model.get_weights()]))
"""


@pytest.mark.filterwarnings("ignore:Pruning did not reach its target")
def test_save_mid_training_and_resume_in_a_fresh_process(tmp_path):
    wrapped = pruning.prune_low_magnitude(mlp(), pruning.PolynomialDecay(0.0, 0.8, 0, 8, 1, 2))
    model = attach_cka_loss(wrapped, ["a", "b"], CKASimilarityLoss(weight=1e-2))
    model.compile("adam", CE)
    x, y = data()
    callbacks = [pruning.UpdatePruningStep()]
    model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
    path = str(tmp_path / "mid.keras")
    model.save(path)
    model.fit(x, y, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, path],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads(done.stdout.strip().splitlines()[-1])
    for here, there in zip(model.get_weights(), resumed):
        np.testing.assert_allclose(here, np.asarray(there), atol=1e-6)


@pytest.mark.skipif(BACKEND == "torch", reason="tf_saved_model export needs TF or JAX")
def test_attached_model_exports_as_saved_model_and_serves_the_same(tmp_path):
    import tensorflow as tf

    model = attach_cka_loss(mlp(), ["a", "b"], CKASimilarityLoss(weight=1e-2))
    x, _ = data(8)
    path = str(tmp_path / "exported")
    model.export(path, format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(path)
    served = loaded.serve(x)
    np.testing.assert_allclose(np.asarray(served), model.predict(x, verbose=0), atol=1e-5)
    assert ops.shape(served)[0] == 8


def test_to_numpy_copies_a_variable_instead_of_sharing_its_memory():
    variable = keras.Variable(np.ones((3,), "float32"))
    copy = to_numpy(variable)
    variable.assign(np.zeros((3,), "float32"))
    np.testing.assert_array_equal(copy, np.ones((3,)))
