"""Shapes and conditions real training produces: ragged last batches, dynamic lengths,
non-finite activations, unbuilt models, and errors inside `fit`."""

import math
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import CKARegularization, CKASimilarityLoss, CKASRMixin, attach_cka_loss, pruning
from tests.support.models import TAPS, RecordPenalty, data, penalty_on, small_cnn

BACKEND = keras.backend.backend()
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def weights_of(model):
    return [ops.convert_to_numpy(w) for w in model.weights]


@pytest.mark.parametrize("eager", [False, True], ids=["compiled", "eager"])
@pytest.mark.parametrize("n", [66, 67], ids=["last_batch_2", "last_batch_3"])
def test_ragged_last_batch_below_the_minimum_adds_zero_and_training_stays_finite(n, eager):
    x, y = data(n)
    base = small_cnn()
    loss = CKASimilarityLoss(weight=1e-2, num_samples=8)
    first_batch_penalty = penalty_on(base, TAPS, loss, x[:8])
    model = attach_cka_loss(base, TAPS, loss)
    model.compile(keras.optimizers.SGD(0.05), CE, run_eagerly=eager)
    record = RecordPenalty()
    history = model.fit(
        x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[record]
    ).history
    steps = math.ceil(n / 16)
    assert len(record.values) == 2 * steps
    assert record.values[steps - 1] == 0.0 and record.values[-1] == 0.0  # the ragged batches
    full = [v for i, v in enumerate(record.values) if (i + 1) % steps]
    assert all(v > 0 for v in full)
    assert record.values[0] == pytest.approx(first_batch_penalty, rel=1e-4)
    assert all(np.all(np.isfinite(w)) for w in weights_of(model))
    assert all(np.isfinite(history["loss"])) and all(np.isfinite(history["cka_sr"]))


@pytest.mark.filterwarnings("ignore:CKA-SR added no penalty")
@pytest.mark.parametrize("eager", [False, True], ids=["compiled", "eager"])
def test_too_small_batch_has_zero_penalty_gradient(eager):
    """A step on a batch of 2 moves the weights exactly as the task loss alone does."""
    x, y = data(2)
    base = small_cnn()
    initial = base.get_weights()
    attached = attach_cka_loss(base, TAPS, CKASimilarityLoss(weight=1.0))
    attached.compile(keras.optimizers.SGD(0.1), CE, run_eagerly=eager)
    attached.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    with_penalty = base.get_weights()
    base.set_weights(initial)
    base.compile(keras.optimizers.SGD(0.1), CE, run_eagerly=eager)
    base.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert any(np.any(a != b) for a, b in zip(initial, with_penalty))  # it trained
    for a, b in zip(with_penalty, base.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_non_finite_activation_shows_in_the_loss_and_terminate_on_nan_stops():
    inp = keras.Input((4,))
    a = keras.layers.Dense(6, activation="tanh", name="a")(inp)
    b = keras.layers.Dense(6, name="b")(a)
    # log of a negative number: NaN activations in the tapped layer `c`; the head zeroes
    # them, so only the penalty sees them (task loss and its gradient stay finite).
    c = keras.layers.Lambda(lambda t: ops.log(t), name="c")(b)
    clean = keras.layers.Lambda(lambda t: ops.where(ops.isfinite(t), t, 0.0))(c)
    base = keras.Model(inp, keras.layers.Dense(1)(clean))
    model = attach_cka_loss(base, ["a", "c"])
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    history = model.fit(
        x,
        x[:, :1],
        batch_size=8,
        epochs=3,
        verbose=0,
        callbacks=[keras.callbacks.TerminateOnNaN()],
    ).history
    assert len(history["loss"]) == 1 and not np.isfinite(history["cka_sr"][0])
    base.compile(keras.optimizers.SGD(0.01), "mse")
    assert np.isfinite(base.evaluate(x, x[:, :1], verbose=0))


class SequenceData(keras.utils.PyDataset):
    """Batches of sequences whose length changes from batch to batch."""

    def __init__(self, lengths, batch=8):
        super().__init__()
        self.lengths, self.batch = lengths, batch

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, index):
        rng = np.random.default_rng(index)
        x = rng.normal(size=(self.batch, self.lengths[index], 4)).astype("float32")
        return x, (x.mean(axis=(1, 2)) > 0).astype("int32")


def sequence_model():
    inp = keras.Input((None, 4))
    x = keras.layers.Conv1D(6, 3, padding="same", activation="relu", name="s1")(inp)
    x = keras.layers.Conv1D(6, 3, padding="same", activation="relu", name="s2")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, keras.layers.Dense(2)(x))


@pytest.mark.parametrize("num_samples", [None, 6])
def test_sequence_lengths_that_change_between_batches(num_samples):
    base = sequence_model()
    model = attach_cka_loss(base, ["s1", "s2"], CKASimilarityLoss(1e-2, num_samples=num_samples))
    model.compile("adam", CE)
    record = RecordPenalty()
    lengths = [5, 9, 7, 12]
    history = model.fit(SequenceData(lengths), epochs=2, verbose=0, callbacks=[record]).history
    # (unbiased CKA of few samples may be slightly negative: computed means not 0)
    assert all(np.isfinite(history["cka_sr"])) and all(v != 0 for v in record.values)
    x, _ = SequenceData(lengths)[1]
    expected = penalty_on(base, ["s1", "s2"], CKASimilarityLoss(1e-2), x[: num_samples or 8])
    model(x, training=True)
    got = float(ops.convert_to_numpy(model.get_layer("cka_regularization").last_penalty))
    assert got == pytest.approx(expected, rel=1e-4)


def test_sequential_without_input_gets_our_error():
    model = keras.Sequential([keras.layers.Dense(4, name="d1"), keras.layers.Dense(4, name="d2")])
    with pytest.raises(ValueError, match="no input shape yet.*keras.Input"):
        attach_cka_loss(model, ["d1", "d2"])
    model.build((None, 3))
    assert attach_cka_loss(model, ["d1", "d2"]) is not None


def assert_usable(model, x, y):
    """predict, re-compile and fit again after an error raised inside `fit`."""
    assert np.all(np.isfinite(model.predict(x, verbose=0)))
    model.compile(keras.optimizers.SGD(0.01), CE)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


class BadGroups(CKASRMixin, keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(6, activation="tanh")
        self.b = keras.layers.Dense(6, activation="tanh")
        self.cka = CKARegularization(CKASimilarityLoss(groups=[[0, 5]]))
        self.head = keras.layers.Dense(3)

    def call(self, x, training=False):
        h1 = self.a(x)
        h2 = self.b(h1)
        return self.head(self.cka([h1, h2], passthrough=h2, training=training))


def test_bad_groups_raise_before_training_and_the_model_stays_usable():
    model = BadGroups()
    model.compile(keras.optimizers.SGD(0.01), CE)
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    y = np.arange(16) % 3
    with pytest.raises(ValueError, match="feature 5"):
        model.fit(x, y, batch_size=8, verbose=0)
    model.cka.loss = CKASimilarityLoss()
    assert_usable(model, x, y)


class DirectPenalty(keras.Model):
    """`add_loss(loss(features))` without the layer: a too-small batch raises."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(6, activation="tanh")
        self.b = keras.layers.Dense(6, activation="tanh")
        self.head = keras.layers.Dense(3)
        self.penalty = CKASimilarityLoss(weight=1e-2)

    def call(self, x, training=False):
        h1 = self.a(x)
        h2 = self.b(h1)
        if training:
            self.add_loss(self.penalty([h1, h2]))
        return self.head(h2)


@pytest.mark.skipif(
    BACKEND == "tensorflow", reason="TF traces an unknown batch size: the batch gives 0, no error"
)
def test_error_on_a_ragged_batch_inside_fit_leaves_the_model_usable():
    model = DirectPenalty()
    model.compile(keras.optimizers.SGD(0.01), CE)
    x = np.random.default_rng(0).normal(size=(18, 5)).astype("float32")
    y = np.arange(18) % 3
    with pytest.raises(ValueError, match="skip_small_batch=True"):
        model.fit(x, y, batch_size=8, shuffle=False, verbose=0)
    assert_usable(model, x[:16], y[:16])


def test_pruning_without_the_callback_warns_and_prunes_as_with_it():
    x, y = data(64)
    schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 6, frequency=2)
    fitted = []
    for callbacks in ([pruning.UpdatePruningStep()], []):
        keras.utils.set_random_seed(3)
        model = pruning.prune_low_magnitude(small_cnn(), schedule)
        model.compile(keras.optimizers.SGD(0.05), CE)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=callbacks)
        fitted.append((model, [str(w.message) for w in caught]))
    (with_cb, warned_with), (without_cb, warned_without) = fitted
    assert not any("UpdatePruningStep" in m for m in warned_with)
    assert any("without the UpdatePruningStep callback" in m for m in warned_without)
    for a, b in zip(
        pruning.collect_prunable_layers(with_cb), pruning.collect_prunable_layers(without_cb)
    ):
        assert (
            int(ops.convert_to_numpy(a.pruning_step))
            == int(ops.convert_to_numpy(b.pruning_step))
            == 8
        )
        for ma, mb in zip(a.masks, b.masks):
            np.testing.assert_array_equal(ops.convert_to_numpy(ma), ops.convert_to_numpy(mb))
    np.testing.assert_allclose(
        with_cb.predict(x, verbose=0), without_cb.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


class Interrupt(keras.callbacks.Callback):
    """Raises once, in the middle of epoch `epoch`, as a crash or preemption would."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


@pytest.mark.skipif(BACKEND == "torch", reason="the issue asks TF and JAX; torch is eager")
def test_backup_and_restore_after_an_interruption_matches_an_uninterrupted_run(tmp_path):
    x, y = data(96)
    schedule = pruning.PolynomialDecay(0.0, 0.8, 0, 12, frequency=2)

    def build():
        keras.utils.set_random_seed(7)
        pruned = pruning.prune_low_magnitude(small_cnn(), schedule)
        model = attach_cka_loss(
            pruned, TAPS, CKASimilarityLoss(1e-2, num_samples=8, every_n_steps=3)
        )
        model.compile(keras.optimizers.SGD(0.05, momentum=0.9), CE)
        return model

    fit = dict(batch_size=16, epochs=3, shuffle=False, verbose=0)
    reference = build()
    reference.fit(x, y, callbacks=[pruning.UpdatePruningStep()], **fit)

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    interrupted = build()
    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted.fit(
            x, y, callbacks=[pruning.UpdatePruningStep(), backup, Interrupt(1, 2)], **fit
        )
    resumed = build()  # a new process would build the model again
    resumed.fit(x, y, callbacks=[pruning.UpdatePruningStep(), backup], **fit)
    for a, b in zip(reference.weights, resumed.weights):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), rtol=1e-5, atol=1e-6, err_msg=a.path
        )
    for wrapper in pruning.collect_prunable_layers(resumed):
        assert int(ops.convert_to_numpy(wrapper.pruning_step)) == 18
