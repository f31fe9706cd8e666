import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import (
    CKARegularization,
    CKASimilarityLoss,
    CKASRMixin,
    CKASRModel,
    attach_cka_loss,
)
from tests.support.models import TAPS, RecordPenalty, compile_, data, penalty_on, small_cnn


def test_attached_model_shares_layers_and_outputs():
    base = small_cnn()
    attached = attach_cka_loss(base, TAPS, CKASimilarityLoss())
    assert isinstance(attached, CKASRModel)
    assert attached.get_layer("c2") is base.get_layer("c2")
    x, _ = data()
    np.testing.assert_allclose(
        attached.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-6
    )


def test_fit_logs_cka_sr_and_total_loss_is_task_plus_penalty():
    base = small_cnn()
    loss = CKASimilarityLoss(weight=0.05)
    attached = compile_(attach_cka_loss(base, TAPS, loss))
    x, y = data()
    history = attached.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    task = compile_(base).evaluate(x, y, batch_size=32, verbose=0)
    penalty = penalty_on(base, TAPS, loss, x)
    assert penalty > 0.01
    assert history["cka_sr"][0] == pytest.approx(penalty, rel=1e-4)
    assert history["loss"][0] == pytest.approx(task + penalty, rel=1e-4)


def test_every_n_steps_in_compiled_train_step():
    attached = compile_(attach_cka_loss(small_cnn(), TAPS, CKASimilarityLoss(every_n_steps=3)))
    record = RecordPenalty()
    x, y = data(n=56)
    attached.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    computed = [v > 0 for v in record.values]
    assert computed == [True, False, False, True, False, False, True]


def test_num_samples_computes_on_the_first_samples():
    base = small_cnn()
    loss = CKASimilarityLoss(weight=0.05, num_samples=8)
    attached = compile_(attach_cka_loss(base, TAPS, loss))
    x, y = data()
    history = attached.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0).history
    expected = penalty_on(base, TAPS, CKASimilarityLoss(weight=0.05), x[:8])
    assert history["cka_sr"][0] == pytest.approx(expected, rel=1e-4)


def test_predict_and_evaluate_do_not_compute_the_penalty():
    attached = compile_(attach_cka_loss(small_cnn(), TAPS, CKASimilarityLoss()))
    x, y = data()
    attached.evaluate(x, y, verbose=0)
    attached.predict(x, verbose=0)
    layer = attached.get_layer("cka_regularization")
    assert int(ops.convert_to_numpy(layer.step)) == 0


def test_save_load_round_trip_and_train_again(tmp_path):
    attached = compile_(
        attach_cka_loss(small_cnn(), TAPS, CKASimilarityLoss(every_n_steps=2)), 0.01
    )
    x, y = data()
    attached.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "attached.keras")
    attached.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored, CKASRModel)
    np.testing.assert_allclose(
        restored.predict(x, verbose=0), attached.predict(x, verbose=0), atol=1e-6
    )
    layer = restored.get_layer("cka_regularization")
    assert layer.loss.get_config() == attached.get_layer("cka_regularization").loss.get_config()
    assert int(ops.convert_to_numpy(layer.step)) == 4
    history = restored.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert history["cka_sr"][0] > 0 and np.isfinite(history["loss"][0])


def test_layer_groups_set_the_loss_groups():
    attached = attach_cka_loss(small_cnn(), [["c1", "c2"], ["c2", "c3"]], CKASimilarityLoss())
    assert attached.get_layer("cka_regularization").loss.groups == [[0, 1], [1, 2]]


def test_layers_inside_nested_models_can_be_tapped():
    inner_in = keras.Input((8, 8, 4))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="inner_a")(inner_in)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="inner_b")(h)
    inner = keras.Model(inner_in, h, name="block")
    seq = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.Conv2D(4, 1, name="seq_c")], name="seq"
    )
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inp)
    x = seq(inner(x))
    out = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    base = keras.Model(inp, out)
    attached = compile_(attach_cka_loss(base, ["stem", "inner_a", "inner_b", "block", "seq_c"]))
    x_, y_ = data()
    np.testing.assert_allclose(
        attached.predict(x_, verbose=0), base.predict(x_, verbose=0), atol=1e-5
    )
    history = attached.fit(x_, y_ % 2, batch_size=16, epochs=1, verbose=0).history
    assert history["cka_sr"][0] > 0


class Passthrough(keras.layers.Wrapper):
    """A minimal wrapper, like a pruning wrapper that renames the layer it wraps."""

    def call(self, inputs):
        return self.layer(inputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


def test_wrapped_layers_are_found_by_either_name():
    inp = keras.Input((6,))
    a = Passthrough(keras.layers.Dense(5, name="dense_a"), name="wrapped_a")(inp)
    b = Passthrough(keras.layers.Dense(5, name="dense_b"), name="wrapped_b")(a)
    base = keras.Model(inp, keras.layers.Dense(1)(b))
    for names in (["dense_a", "dense_b"], ["wrapped_a", "dense_b"]):
        attached = attach_cka_loss(base, names)
        x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
        attached.compile("sgd", "mse")
        assert attached.fit(x, x[:, :1], verbose=0).history["cka_sr"][0] > 0


def test_sequential_model():
    base = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, name="d1"),
            keras.layers.Dense(5, name="d2"),
            keras.layers.Dense(1),
        ]
    )
    attached = attach_cka_loss(base, ["d1", "d2"])
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    np.testing.assert_allclose(
        attached.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-6
    )


def test_unknown_layer_name_lists_available_layers():
    with pytest.raises(ValueError, match=r"\['c9'\].*Available layers"):
        attach_cka_loss(small_cnn(), ["c1", "c9"])


def test_fewer_than_two_layers():
    with pytest.raises(ValueError, match="at least 2"):
        attach_cka_loss(small_cnn(), ["c1"])


def test_layer_names_must_be_a_list():
    with pytest.raises(TypeError, match="layer_names"):
        attach_cka_loss(small_cnn(), "c1")


def test_shared_layer_is_ambiguous():
    inp = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    out = keras.layers.Dense(1, name="out")(shared(shared(inp)))
    with pytest.raises(ValueError, match="more than once"):
        attach_cka_loss(keras.Model(inp, out), ["shared", "out"])


class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(4)
        self.b = keras.layers.Dense(1)

    def call(self, x):
        return self.b(self.a(x))


def test_subclassed_model_error_says_what_to_do():
    with pytest.raises(TypeError, match="add_loss"):
        attach_cka_loss(Subclassed(), ["a", "b"])


class SubclassedWithCKA(CKASRMixin, keras.Model):
    """The documented pattern for subclassed models (see examples/subclassed_model.py)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = [keras.layers.Dense(8, activation="tanh") for _ in range(3)]
        self.cka_sr = CKARegularization(CKASimilarityLoss(weight=0.1, every_n_steps=2))
        self.head = keras.layers.Dense(1)

    def call(self, x, training=False):
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        x = self.cka_sr(feats, passthrough=x, training=training)
        return self.head(x)


def test_subclassed_model_with_cka_regularization_in_call():
    model = SubclassedWithCKA()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(32, 5)).astype("float32")
    history = model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0).history
    assert all(v > 0 for v in history["cka_sr"])
    assert int(ops.convert_to_numpy(model.cka_sr.step)) == 8


def test_subclassed_model_with_plain_add_loss():
    class WithAddLoss(Subclassed):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.penalty = CKASimilarityLoss(weight=1.0)

        def call(self, x, training=False):
            h = self.a(x)
            out = self.b(h)
            if training:
                self.add_loss(self.penalty([x, h, out]))
            return out

    model = WithAddLoss()
    model.compile(keras.optimizers.SGD(0.0), "mse")
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    with_penalty = model.fit(x, x[:, :1], batch_size=16, verbose=0).history["loss"][0]
    without = model.evaluate(x, x[:, :1], verbose=0)
    assert with_penalty > without + 0.5


def test_regularization_layer_config_round_trip():
    layer = CKARegularization(CKASimilarityLoss(weight=2e-4, num_samples=8), name="reg")
    restored = CKARegularization.from_config(layer.get_config())
    assert restored.loss.get_config() == layer.loss.get_config()
    assert restored.name == "reg"


def test_regularization_layer_rejects_non_callable_loss():
    with pytest.raises(TypeError, match="loss"):
        CKARegularization(loss=3)


def test_loss_configs_saved_by_0_1_0_still_load():
    """0.1.0 saved an unused `name`; the argument is gone, old configs load."""
    config = dict(CKASimilarityLoss(weight=2e-4).get_config(), name="cka_sr")
    assert CKASimilarityLoss.from_config(config).weight == 2e-4
    with pytest.raises(TypeError, match="name"):
        CKASimilarityLoss(name="penalty")


def test_start_step_warm_up_in_compiled_train_step():
    loss = CKASimilarityLoss(start_step=4, every_n_steps=2)
    attached = compile_(attach_cka_loss(small_cnn(), TAPS, loss))
    record = RecordPenalty()
    x, y = data(n=56)
    attached.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    assert [v > 0 for v in record.values] == [False] * 4 + [True, False, True]


def test_validation_and_evaluate_do_not_report_the_training_only_penalty():
    attached = compile_(attach_cka_loss(small_cnn(), TAPS, CKASimilarityLoss(weight=0.05)))
    x, y = data()
    history = attached.fit(x, y, batch_size=32, validation_data=(x, y), verbose=0).history
    assert history["cka_sr"][0] > 0 and "val_cka_sr" not in history
    assert "val_loss" in history
    logs = attached.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert "cka_sr" not in logs and "loss" in logs
