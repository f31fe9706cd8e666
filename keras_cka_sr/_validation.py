"""Argument checks shared by every public constructor: one rule for what a number is.

Python and NumPy scalars are numbers (`np.int32(5)`, `np.float32(1e-3)`); bools are not;
NaN and infinities are rejected. Checked values come back as plain Python `int`/`float`,
so configs stay JSON-serializable. Messages name the argument, the value and the range.
"""

import math
import numbers

import numpy as np


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as a Python int, or a `TypeError`/`ValueError` naming `name`."""
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int{_range(minimum, maximum)}; got {value!r}.")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"`{name}` must be an int{_range(minimum, maximum)}; got {value!r}.")
    return value


def check_float(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """`value` (a finite real number) as a Python float in the given range."""
    expected = f"a finite number{_range(minimum, maximum, min_inclusive, max_inclusive)}"
    if not isinstance(value, numbers.Real) or _is_bool(value):
        raise TypeError(f"`{name}` must be {expected}; got {value!r}.")
    # float32 1e-3 is 0.0010000000474974513 as a float64: keep the number the user wrote.
    value = float(str(value)) if isinstance(value, np.floating) else float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be {expected}; got {value!r}.")
    low_ok = minimum is None or (value >= minimum if min_inclusive else value > minimum)
    high_ok = maximum is None or (value <= maximum if max_inclusive else value < maximum)
    if not (low_ok and high_ok):
        raise ValueError(f"`{name}` must be {expected}; got {value!r}.")
    return value


def check_sparsity(name: str, value) -> float:
    """A sparsity in [0, 1), as tfmot allows."""
    return check_float(name, value, 0.0, 1.0, max_inclusive=False)


def check_bool(name: str, value) -> bool:
    """A Python or NumPy bool."""
    if not _is_bool(value):
        raise TypeError(f"`{name}` must be a bool; got {value!r}.")
    return bool(value)


def _is_bool(value):
    return isinstance(value, (bool, np.bool_))


def _range(minimum, maximum, min_inclusive=True, max_inclusive=True):
    if minimum is not None and maximum is not None:
        left = "[" if min_inclusive else "("
        right = "]" if max_inclusive else ")"
        return f" in {left}{minimum}, {maximum}{right}"
    if minimum is not None:
        return f" {'>=' if min_inclusive else '>'} {minimum}"
    if maximum is not None:
        return f" {'<=' if max_inclusive else '<'} {maximum}"
    return ""


TORCH_COMPILE_MESSAGE = (
    "{what} does not support `jit_compile=True` on the torch backend (torch.compile): "
    "CKA-SR's penalty gradient comes out NaN and the pruning mask update fails on "
    "torch.compile's dynamic-shape guards. Compile the model with `jit_compile=False` "
    "(Keras' default on torch); the TensorFlow and JAX backends compile it with XLA."
)


def check_not_torch_compiled(model, what: str) -> None:
    """A `ValueError` if `model` trains through torch.compile (torch, `jit_compile=True`)."""
    import keras

    if keras.backend.backend() == "torch" and getattr(model, "jit_compile", False) is True:
        raise ValueError(TORCH_COMPILE_MESSAGE.format(what=what))
