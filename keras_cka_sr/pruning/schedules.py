"""Pruning schedules: when to update masks and to what sparsity, as in tfmot.

A schedule maps the pruning step `t` (an integer tensor) to `(should_prune, sparsity)`.
The built-in ones reproduce tensorflow-model-optimization 0.8.1 exactly, in float32:

* `should_prune(t) = t >= begin_step and (t <= end_step or end_step < 0)
  and (t - begin_step) % frequency == 0`;
* `ConstantSparsity`: `s(t) = target_sparsity`;
* `PolynomialDecay`: `p = clip((t - b) / (e - b), 0, 1)`,
  `s(t) = s_f + (s_i - s_f) (1 - p)^power`.

`StaticMask` never updates the masks: for masks set otherwise (random static sparse
training, pruning at initialization, lottery tickets, SET/RigL).
"""

import abc

import keras
from keras import ops

from keras_cka_sr._validation import check_float, check_int, check_sparsity


def _check_steps(begin_step, end_step, frequency, allow_forever):
    begin_step = check_int("begin_step", begin_step, 0)
    end_step = check_int("end_step", end_step)
    frequency = check_int("frequency", frequency, 1)
    if end_step == -1 and not allow_forever:
        raise ValueError("`end_step` cannot be -1 for a schedule that needs an end; got -1.")
    if end_step != -1 and end_step < begin_step:
        raise ValueError(f"`end_step` must be -1 or >= begin_step ({begin_step}); got {end_step}.")
    return begin_step, end_step, frequency


class PruningSchedule(abc.ABC):
    """Base class: subclass it and implement `__call__(step) -> (should_prune, sparsity)`.

    `step` is an int32 tensor; return a bool tensor and a float32 tensor, written with
    `keras.ops` (no Python branching on tensor values) so the schedule compiles into the
    train step on every backend. Implement `get_config` and register the class with
    `keras.saving.register_keras_serializable` so pruned models save and load.

    Examples:
        >>> class Halfway(pruning.PruningSchedule):
        ...     # 50% sparsity at step 10, once
        ...     def __call__(self, step):
        ...         return keras.ops.equal(step, 10), keras.ops.convert_to_tensor(0.5)
        ...     def get_config(self):
        ...         return {}
        >>> should_prune, sparsity = Halfway()(keras.ops.convert_to_tensor(10))
        >>> bool(should_prune), float(sparsity)
        (True, 0.5)
    """

    @abc.abstractmethod
    def __call__(self, step):
        """Returns `(should_prune, sparsity)` for the pruning step `step`."""

    @abc.abstractmethod
    def get_config(self):
        """The constructor arguments: `{"class_name": ..., "config": {...}}` as tfmot's
        schedules return them (a flat dict of the arguments loads too)."""

    @classmethod
    def from_config(cls, config):
        """A schedule from `get_config()`'s output, tfmot's nested form or a flat dict."""
        if set(config) == {"class_name", "config"}:
            config = config["config"]
        return cls(**config)

    def end_state(self):
        """`(step, sparsity, target)`: the last step at which the schedule prunes, the
        sparsity it sets then, and the sparsity it aims at; None when unknown (the
        default for custom schedules), which skips `UpdatePruningStep`'s end-of-training
        check that the schedule was reached."""
        return None

    def _nested(self, arguments):
        return {"class_name": type(self).__name__, "config": arguments}

    @staticmethod
    def _should_prune_in_step(step, begin_step, end_step, frequency):
        """tfmot's rule: in [begin_step, end_step] (forever if end_step < 0), every `frequency`."""
        step = ops.cast(step, "int32")
        in_range = ops.greater_equal(step, begin_step)
        if end_step >= 0:
            in_range = ops.logical_and(in_range, ops.less_equal(step, end_step))
        # floormod, as tfmot: (t - b) mod f is >= 0 for t < b too.
        turn = ops.equal(ops.mod(step - begin_step, frequency), 0)
        return ops.logical_and(in_range, turn)

    def __repr__(self):
        config = self.get_config()
        if set(config) == {"class_name", "config"}:
            config = config["config"]
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class ConstantSparsity(PruningSchedule):
    """Prune to `target_sparsity` every `frequency` steps in [begin_step, end_step].

    Examples:
        >>> schedule = pruning.ConstantSparsity(0.8, begin_step=0, frequency=10)
        >>> [bool(schedule(keras.ops.convert_to_tensor(t))[0]) for t in (9, 10, 11, 20)]
        [False, True, False, True]
        >>> float(schedule(keras.ops.convert_to_tensor(10))[1])
        0.800000011920929
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_forever=True
        )
        self.target_sparsity = check_sparsity("target_sparsity", target_sparsity)

    def __call__(self, step):
        return (
            self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
            ops.convert_to_tensor(self.target_sparsity, "float32"),
        )

    def end_state(self):
        return self.begin_step, self.target_sparsity, self.target_sparsity

    def get_config(self):
        return self._nested(
            {
                "target_sparsity": self.target_sparsity,
                "begin_step": self.begin_step,
                "end_step": self.end_step,
                "frequency": self.frequency,
            }
        )


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class PolynomialDecay(PruningSchedule):
    """Sparsity rises from `initial_sparsity` to `final_sparsity` as a polynomial.

    `s(t) = s_f + (s_i - s_f) (1 - p)^power`, `p = clip((t - b)/(e - b), 0, 1)`: fast at
    first, then levelling off (Zhu & Gupta 2017 use power 3). With `end_step ==
    begin_step` the sparsity jumps to `final_sparsity` at that step (tfmot divides by 0).

    Examples:
        >>> schedule = pruning.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=100, frequency=10)
        >>> [round(float(schedule(keras.ops.convert_to_tensor(t))[1]), 3) for t in (0, 50, 100)]
        [0.0, 0.787, 0.9]
    """

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100
    ):
        self.begin_step, self.end_step, self.frequency = _check_steps(
            begin_step, end_step, frequency, allow_forever=False
        )
        self.initial_sparsity = check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = check_sparsity("final_sparsity", final_sparsity)
        self.power = check_float("power", power)

    def __call__(self, step):
        step = ops.cast(step, "int32")
        span = max(self.end_step - self.begin_step, 0)
        offset = ops.cast(step - self.begin_step, "float32")
        if span == 0:
            p = ops.cast(ops.greater_equal(offset, 0.0), "float32")
        else:
            p = ops.minimum(1.0, ops.maximum(0.0, offset / float(span)))
        # Same float32 operations as tfmot, so the mask sizes match exactly.
        sparsity = ops.convert_to_tensor(
            self.initial_sparsity - self.final_sparsity, "float32"
        ) * ops.power(
            1.0 - p, ops.convert_to_tensor(self.power, "float32")
        ) + ops.convert_to_tensor(self.final_sparsity, "float32")
        return (
            self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
            sparsity,
        )

    def end_state(self):
        # The last step in [begin_step, end_step] on the frequency grid: before end_step
        # when the frequency does not divide the span (tfmot's rule, kept).
        last = (
            self.begin_step + (self.end_step - self.begin_step) // self.frequency * self.frequency
        )
        _, sparsity = self(ops.convert_to_tensor(last, "int32"))
        return last, float(ops.convert_to_numpy(sparsity)), self.final_sparsity

    def get_config(self):
        return self._nested(
            {
                "initial_sparsity": self.initial_sparsity,
                "final_sparsity": self.final_sparsity,
                "power": self.power,
                "begin_step": self.begin_step,
                "end_step": self.end_step,
                "frequency": self.frequency,
            }
        )


def default_schedule():
    """tfmot's default for `prune_low_magnitude`: `ConstantSparsity(0.5, 0, frequency=100)`."""
    return ConstantSparsity(0.5, begin_step=0, frequency=100)


def GradualMagnitude(initial_sparsity, final_sparsity, begin_step, end_step, frequency=100):
    """Gradual magnitude pruning of Zhu & Gupta (2017): `PolynomialDecay` with power 3.

    Examples:
        >>> schedule = pruning.GradualMagnitude(0.0, 0.9, begin_step=0, end_step=100, frequency=10)
        >>> type(schedule).__name__, schedule.end_state()[1:]
        ('PolynomialDecay', (0.8999999761581421, 0.9))
    """
    return PolynomialDecay(
        initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=frequency
    )


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class StaticMask(PruningSchedule):
    """Never updates masks: they stay as set (e.g. by `set_random_masks`).

    `sparsity` is the overall sparsity the masks were drawn for (reported, not used).

    Examples:
        >>> schedule = pruning.StaticMask(0.9)  # masks set by you (e.g. sparse.set_random_masks)
        >>> bool(schedule(keras.ops.convert_to_tensor(1))[0])  # never recomputed by magnitude
        False
    """

    def __init__(self, sparsity):
        self.sparsity = check_sparsity("sparsity", sparsity)

    def __call__(self, step):
        return ops.convert_to_tensor(False), ops.convert_to_tensor(self.sparsity, "float32")

    def get_config(self):
        return self._nested({"sparsity": self.sparsity})
