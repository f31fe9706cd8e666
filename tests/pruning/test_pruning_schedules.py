import keras
import numpy as np
import pytest
from keras import ops

from keras_cka_sr import pruning
from tests.support import tfmot_oracle

POLY_SETTINGS = [
    # initial, final, begin, end, power, frequency
    (0.0, 0.9, 0, 100, 3, 10),
    (0.2, 0.8, 10, 60, 2, 7),
    (0.5, 0.99, 3, 40, 1, 1),
    (0.0, 0.95, 0, 1000, 3, 100),
    (0.1, 0.5, 5, 25, 0.5, 3),
]
CONSTANT_SETTINGS = [(0.5, 0, -1, 100), (0.9, 10, 50, 7), (0.75, 4, 4, 1)]


def ours(schedule, steps):
    out = []
    for t in steps:
        should, sparsity = schedule(ops.convert_to_tensor(t, "int32"))
        out.append(
            (bool(ops.convert_to_numpy(should)), float(np.float32(ops.convert_to_numpy(sparsity))))
        )
    return out


@pytest.mark.parametrize("args", POLY_SETTINGS)
def test_polynomial_decay_matches_tfmot_at_every_step(args):
    tfmot = tfmot_oracle.tfmot()
    initial, final, begin, end, power, frequency = args
    steps = range(0, end + 2 * frequency + 5)
    expected = tfmot_oracle.schedule_values(
        tfmot.sparsity.keras.PolynomialDecay(initial, final, begin, end, power, frequency), steps
    )
    got = ours(pruning.PolynomialDecay(initial, final, begin, end, power, frequency), steps)
    assert [g[0] for g in got] == [e[0] for e in expected]
    np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], rtol=0, atol=1e-7)


@pytest.mark.parametrize("args", CONSTANT_SETTINGS)
def test_constant_sparsity_matches_tfmot_at_every_step(args):
    tfmot = tfmot_oracle.tfmot()
    steps = range(0, 160)
    expected = tfmot_oracle.schedule_values(tfmot.sparsity.keras.ConstantSparsity(*args), steps)
    assert ours(pruning.ConstantSparsity(*args), steps) == expected


def test_gradual_magnitude_is_cubic_polynomial_decay():
    schedule = pruning.GradualMagnitude(0.0, 0.9, 0, 100, frequency=10)
    assert isinstance(schedule, pruning.PolynomialDecay) and schedule.power == 3


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: pruning.PolynomialDecay(0.0, 1.0, 0, 10), "final_sparsity"),
        (lambda: pruning.PolynomialDecay(-0.1, 0.5, 0, 10), "initial_sparsity"),
        (lambda: pruning.PolynomialDecay(0.0, 0.5, 0, -1), "end_step"),
        (lambda: pruning.PolynomialDecay(0.0, 0.5, 10, 5), "end_step"),
        (lambda: pruning.ConstantSparsity(0.5, -1), "begin_step"),
        (lambda: pruning.ConstantSparsity(0.5, 0, frequency=0), "frequency"),
        (lambda: pruning.ConstantSparsity(1.0, 0), "target_sparsity"),
        (lambda: pruning.ConstantSparsity(float("nan"), 0), r"`target_sparsity` .* got nan"),
        (lambda: pruning.PolynomialDecay(0.0, 0.5, 0, 10, power=float("inf")), "power"),
    ],
)
def test_bad_schedule_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: pruning.PolynomialDecay(0.0, 0.5, 0, 10.0), "end_step"),
        (lambda: pruning.ConstantSparsity(0.5, True), "begin_step"),
        (lambda: pruning.ConstantSparsity("0.5", 0), "target_sparsity"),
    ],
)
def test_wrong_types_are_type_errors(factory, match):
    with pytest.raises(TypeError, match=match):
        factory()


def test_numpy_scalars_as_in_tfmots_tutorial():
    """tfmot's "Pruning in Keras" computes end_step with NumPy: an np.int32."""
    end_step = np.ceil(1000 / 128).astype(np.int32) * 2
    schedule = pruning.PolynomialDecay(
        initial_sparsity=np.float32(0.5),
        final_sparsity=np.float64(0.8),
        begin_step=np.int64(0),
        end_step=end_step,
        frequency=np.int32(4),
    )
    config = schedule.get_config()
    assert config == {  # tfmot's nested form
        "class_name": "PolynomialDecay",
        "config": {
            "initial_sparsity": 0.5,
            "final_sparsity": 0.8,
            "begin_step": 0,
            "end_step": 16,
            "power": 3.0,
            "frequency": 4,
        },
    }
    assert all(type(v) in (int, float) for v in config["config"].values())
    plain = pruning.PolynomialDecay(0.5, 0.8, 0, 16, frequency=4)
    for step in (0, 4, 9, 16):
        assert [float(ops.convert_to_numpy(v)) for v in schedule(step)] == [
            float(ops.convert_to_numpy(v)) for v in plain(step)
        ]


def test_custom_schedule_subclass_and_serialization():
    @keras.saving.register_keras_serializable(package="tests")
    class EveryStep(pruning.PruningSchedule):
        def __init__(self, sparsity):
            self.sparsity = sparsity

        def __call__(self, step):
            return ops.greater(step, 0), ops.convert_to_tensor(self.sparsity, "float32")

        def get_config(self):
            return {"sparsity": self.sparsity}

    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(EveryStep(0.3))
    )
    assert isinstance(restored, EveryStep) and restored.sparsity == 0.3
    for schedule in (
        pruning.PolynomialDecay(0.1, 0.7, 2, 9, 2, 3),
        pruning.ConstantSparsity(0.4, 1, 8, 2),
    ):
        again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
        assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
        flat = type(schedule).from_config(schedule.get_config()["config"])  # older saves
        assert flat.get_config() == schedule.get_config()


def test_a_schedule_written_for_tfmot_saves_and_loads_in_a_pruned_model(tmp_path):
    """tfmot's schedules return {'class_name', 'config'}; one written that way (and
    relying on the inherited from_config) must survive a .keras round trip."""

    @keras.saving.register_keras_serializable(package="tests")
    class TfmotStyle(pruning.PruningSchedule):
        def __init__(self, target_sparsity, frequency):
            self.target_sparsity, self.frequency = target_sparsity, frequency

        def __call__(self, step):
            due = ops.equal(ops.mod(step, self.frequency), 0)
            return due, ops.convert_to_tensor(self.target_sparsity, "float32")

        def get_config(self):
            return {
                "class_name": self.__class__.__name__,
                "config": {"target_sparsity": self.target_sparsity, "frequency": self.frequency},
            }

    model = keras.Sequential(
        [keras.Input((6,)), pruning.prune_low_magnitude(keras.layers.Dense(4), TfmotStyle(0.5, 2))]
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    schedule = loaded.layers[0].pruning_schedule
    assert isinstance(schedule, TfmotStyle)
    assert (schedule.target_sparsity, schedule.frequency) == (0.5, 2)
