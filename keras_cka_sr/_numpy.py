"""NumPy copies of backend tensors and Keras variables."""

import keras
import numpy as np
from keras import ops


def to_numpy(x) -> np.ndarray:
    """`ops.convert_to_numpy(x)` without NumPy 2's `__array__(copy=...)` DeprecationWarning.

    Keras' variables, TensorFlow's resource variables and torch 2.13's tensors implement
    `__array__` without `copy`, so `np.array(x)` (which `ops.convert_to_numpy` calls) warns;
    their `.numpy()` does not.
    """
    if isinstance(x, keras.Variable):
        x = x.value
    backend = keras.backend.backend()
    if backend == "tensorflow" and hasattr(x, "read_value"):
        return x.read_value().numpy()
    if backend == "torch" and hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            return x.float().numpy().astype(keras.backend.standardize_dtype("bfloat16"))
        return x.numpy().copy()  # `numpy()` shares the tensor's memory; a copy, as np.array
    return ops.convert_to_numpy(x)
