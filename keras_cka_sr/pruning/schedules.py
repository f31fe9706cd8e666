"""Pruning schedules: when to update masks and to what sparsity, as in tfmot.

A schedule maps the pruning step `t` (an integer tensor) to `(should_prune, sparsity)`.
The built-in ones reproduce tensorflow-model-optimization 0.8.1 exactly, in float32:

* `should_prune(t) = t >= begin_step and (t <= end_step or end_step < 0)
  and (t - begin_step) % frequency == 0`;
* `ConstantSparsity`: `s(t) = target_sparsity`;
* `PolynomialDecay`: `p = clip((t - b) / (e - b), 0, 1)`,
  `s(t) = s_f + (s_i - s_f) (1 - p)^power`.
"""

import abc

import keras
from keras import ops


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _check_steps(begin_step, end_step, frequency, allow_forever):
    for name, value in (("begin_step", begin_step), ("end_step", end_step), ("frequency", frequency)):
        if not _is_int(value):
            raise TypeError(f"`{name}` must be an int; got {value!r}.")
    if begin_step < 0:
        raise ValueError(f"`begin_step` must be >= 0; got {begin_step}.")
    if end_step == -1 and not allow_forever:
        raise ValueError("`end_step` cannot be -1 for a schedule that needs an end; got -1.")
    if end_step != -1 and end_step < begin_step:
        raise ValueError(
            f"`end_step` must be -1 or >= begin_step ({begin_step}); got {end_step}."
        )
    if frequency <= 0:
        raise ValueError(f"`frequency` must be > 0; got {frequency}.")


def _check_sparsity(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a float in [0, 1); got {value!r}.")
    return float(value)


class PruningSchedule(abc.ABC):
    """Base class: subclass it and implement `__call__(step) -> (should_prune, sparsity)`.

    `step` is an int32 tensor; return a bool tensor and a float32 tensor, written with
    `keras.ops` (no Python branching on tensor values) so the schedule compiles into the
    train step on every backend. Implement `get_config` and register the class with
    `keras.saving.register_keras_serializable` so pruned models save and load.
    """

    @abc.abstractmethod
    def __call__(self, step):
        """Returns `(should_prune, sparsity)` for the pruning step `step`."""

    @abc.abstractmethod
    def get_config(self):
        """The constructor arguments, as a dict."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)

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
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class ConstantSparsity(PruningSchedule):
    """Prune to `target_sparsity` every `frequency` steps in [begin_step, end_step]."""

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        _check_steps(begin_step, end_step, frequency, allow_forever=True)
        self.target_sparsity = _check_sparsity(target_sparsity, "target_sparsity")
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency

    def __call__(self, step):
        return (
            self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
            ops.convert_to_tensor(self.target_sparsity, "float32"),
        )

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="keras_cka_sr")
class PolynomialDecay(PruningSchedule):
    """Sparsity rises from `initial_sparsity` to `final_sparsity` as a polynomial.

    `s(t) = s_f + (s_i - s_f) (1 - p)^power`, `p = clip((t - b)/(e - b), 0, 1)`: fast at
    first, then levelling off (Zhu & Gupta 2017 use power 3). With `end_step ==
    begin_step` the sparsity jumps to `final_sparsity` at that step (tfmot divides by 0).
    """

    def __init__(
        self, initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=100
    ):
        _check_steps(begin_step, end_step, frequency, allow_forever=False)
        self.initial_sparsity = _check_sparsity(initial_sparsity, "initial_sparsity")
        self.final_sparsity = _check_sparsity(final_sparsity, "final_sparsity")
        if isinstance(power, bool) or not isinstance(power, (int, float)):
            raise TypeError(f"`power` must be a number; got {power!r}.")
        self.power = power
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency

    def __call__(self, step):
        step = ops.cast(step, "int32")
        span = max(self.end_step - self.begin_step, 0)
        offset = ops.cast(step - self.begin_step, "float32")
        if span == 0:
            p = ops.cast(ops.greater_equal(offset, 0.0), "float32")
        else:
            p = ops.minimum(1.0, ops.maximum(0.0, offset / float(span)))
        # Same float32 operations as tfmot, so the mask sizes match exactly.
        sparsity = (
            ops.convert_to_tensor(self.initial_sparsity - self.final_sparsity, "float32")
            * ops.power(1.0 - p, ops.convert_to_tensor(self.power, "float32"))
            + ops.convert_to_tensor(self.final_sparsity, "float32")
        )
        return (
            self._should_prune_in_step(step, self.begin_step, self.end_step, self.frequency),
            sparsity,
        )

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


def GradualMagnitude(initial_sparsity, final_sparsity, begin_step, end_step, frequency=100):
    """Gradual magnitude pruning of Zhu & Gupta (2017): `PolynomialDecay` with power 3."""
    return PolynomialDecay(
        initial_sparsity, final_sparsity, begin_step, end_step, power=3, frequency=frequency
    )
