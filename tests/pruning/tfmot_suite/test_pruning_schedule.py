"""tfmot 0.8.1 `sparsity/keras/pruning_schedule_test.py`, ported (see README.md here)."""

import keras
import numpy as np
import pytest

from keras_cka_sr import pruning as pruning_schedule

SCHEDULES = ["constant_sparsity", "polynomial_decay"]


def evaluate(value):
    return keras.ops.convert_to_numpy(value)


def Variable(step):  # noqa: N802  (tfmot's tests step with tf.Variable)
    return keras.Variable(step, dtype="int32", trainable=False)


def _construct_pruning_schedule(schedule_type, begin_step, end_step, frequency=10):
    if schedule_type == "constant_sparsity":
        return pruning_schedule.ConstantSparsity(0.5, begin_step, end_step, frequency)
    elif schedule_type == "polynomial_decay":
        return pruning_schedule.PolynomialDecay(0.2, 0.8, begin_step, end_step, 3, frequency)


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testBeginStepGreaterThanEqualsZero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -1, 1000)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, -5, 1000)
    _construct_pruning_schedule(schedule_type, 0, 1000)
    _construct_pruning_schedule(schedule_type, 1, 1000)
    _construct_pruning_schedule(schedule_type, 100, 1000)


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testEndStepGreaterThanEqualsZero(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, -5)
    _construct_pruning_schedule(schedule_type, 0, 0)
    _construct_pruning_schedule(schedule_type, 0, 1)
    _construct_pruning_schedule(schedule_type, 0, 100)


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testEndStepGreaterThanEqualsBeginStep(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 5)
    _construct_pruning_schedule(schedule_type, 10, 10)
    _construct_pruning_schedule(schedule_type, 10, 20)


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testFrequencyIsPositive(schedule_type):
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, 0)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, -1)
    with pytest.raises(ValueError):
        _construct_pruning_schedule(schedule_type, 10, 1000, -5)
    _construct_pruning_schedule(schedule_type, 10, 1000, 1)
    _construct_pruning_schedule(schedule_type, 10, 1000, 10)


def _validate_sparsity(schedule_construct_fn):
    # Should not be < 0.0
    for value in (-0.001, -1.0, -10.0):
        with pytest.raises(ValueError):
            schedule_construct_fn(value)
    # Should not be >= 1.0
    for value in (1.0, 10.0):
        with pytest.raises(ValueError):
            schedule_construct_fn(value)
    schedule_construct_fn(0.0)
    schedule_construct_fn(0.001)
    schedule_construct_fn(0.5)
    schedule_construct_fn(0.99)


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testSparsityValueIsValid(schedule_type):
    if schedule_type == "constant_sparsity":
        _validate_sparsity(lambda s: pruning_schedule.ConstantSparsity(s, 0))
    elif schedule_type == "polynomial_decay":
        _validate_sparsity(lambda s: pruning_schedule.PolynomialDecay(s, 0.8, 0, 10))
        _validate_sparsity(lambda s: pruning_schedule.PolynomialDecay(0.2, s, 0, 10))


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testPrunesOnlyInBeginEndStepRange(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 1)
    assert not evaluate(sparsity(Variable(90))[0])
    assert not evaluate(sparsity(Variable(99))[0])
    assert evaluate(sparsity(Variable(100))[0])
    assert evaluate(sparsity(Variable(110))[0])
    assert evaluate(sparsity(Variable(200))[0])
    assert not evaluate(sparsity(Variable(201))[0])
    assert not evaluate(sparsity(Variable(210))[0])


@pytest.mark.parametrize("schedule_type", SCHEDULES)
def testOnlyPrunesAtValidFrequencySteps(schedule_type):
    sparsity = _construct_pruning_schedule(schedule_type, 100, 200, 10)
    assert not evaluate(sparsity(Variable(109))[0])
    assert not evaluate(sparsity(Variable(111))[0])
    assert evaluate(sparsity(Variable(100))[0])
    assert evaluate(sparsity(Variable(110))[0])


def testPrunesForeverIfEndStepIsNegativeOne():
    sparsity = pruning_schedule.ConstantSparsity(0.5, 0, -1, 10)
    step_10000, step_100000000 = Variable(10000), Variable(100000000)
    assert evaluate(sparsity(step_10000)[0])
    assert evaluate(sparsity(step_100000000)[0])
    np.testing.assert_allclose(0.5, evaluate(sparsity(step_10000)[1]))
    np.testing.assert_allclose(0.5, evaluate(sparsity(step_100000000)[1]))


def testPrunesWithConstantSparsity():
    sparsity = pruning_schedule.ConstantSparsity(0.5, 100, 200, 10)
    for step in (100, 110, 200):
        np.testing.assert_allclose(0.5, evaluate(sparsity(Variable(step))[1]))


def _deserialize(config):
    # tfmot: quantize_utils.deserialize_keras_object(config, custom_objects=...)
    return keras.saving.deserialize_keras_object(
        config,
        custom_objects={
            "ConstantSparsity": pruning_schedule.ConstantSparsity,
            "PolynomialDecay": pruning_schedule.PolynomialDecay,
        },
    )


def testConstantSparsitySerializeDeserialize():
    sparsity = pruning_schedule.ConstantSparsity(0.7, 10, 20, 10)
    sparsity_deserialized = _deserialize(sparsity.get_config())
    assert sparsity.__dict__ == sparsity_deserialized.__dict__


def testRaisesErrorIfEndStepIsNegative():
    with pytest.raises(ValueError):
        pruning_schedule.PolynomialDecay(0.4, 0.8, 10, -1)


def testPolynomialDecay_PrunesCorrectly():
    sparsity = pruning_schedule.PolynomialDecay(0.2, 0.8, 100, 110, 3, 2)
    # These values were generated using tf.polynomial_decay with the same params.
    np.testing.assert_allclose(0.2, evaluate(sparsity(Variable(100))[1]), rtol=1e-6)
    np.testing.assert_allclose(0.4928, evaluate(sparsity(Variable(102))[1]), rtol=1e-6)
    np.testing.assert_allclose(0.725, evaluate(sparsity(Variable(105))[1]), rtol=1e-6)
    np.testing.assert_allclose(0.8, evaluate(sparsity(Variable(110))[1]), rtol=1e-6)


def testPolynomialDecaySerializeDeserialize():
    sparsity = pruning_schedule.PolynomialDecay(0.2, 0.6, 10, 20, 5, 10)
    sparsity_deserialized = _deserialize(sparsity.get_config())
    assert sparsity.__dict__ == sparsity_deserialized.__dict__
