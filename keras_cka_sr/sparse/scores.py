"""Saliency scores of pruning at initialization, for every pruned weight of a model.

Each function scores the *effective* weights `weight * mask` (pruned entries are 0) as
the methods' papers define the score, with gradients taken on the backend Keras runs:

* `snip_scores`: |g * w|, g = d loss / d w (Lee et al. 2019, SNIP);
* `grasp_scores`: w * (H g), H the Hessian of the loss (Wang et al. 2020, GraSP), with the
  logits divided by `temperature`; GraSP removes the weights whose `-w * (H g)` is largest,
  so here the *highest* `w * (H g)` is the most important (keep the top, as for the others);
* `synflow_scores`: w * dR/dw with R the sum of the outputs of the network with every
  parameter replaced by its absolute value, on an all-ones input (Tanaka et al. 2020,
  SynFlow; data-free, normalization layers in inference mode).

Every function returns one float64 NumPy array per pruned weight, in `pruned_slots` order.
"""

import keras
import numpy as np
from keras import ops

from keras_cka_sr._autodiff import compiled, gradients, hessian_vector_product
from keras_cka_sr._validation import check_float, check_int
from keras_cka_sr.sparse.masking import effective_weights, pruned_slots, scoring


def magnitude_scores(model: keras.Model) -> list[np.ndarray]:
    """|w * mask|.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> scores = sparse.magnitude_scores(model)  # |weight * mask|
        >>> [s.shape for s in scores], bool(all((s >= 0).all() for s in scores))
        ([(8, 16), (16, 16), (16, 3)], True)
    """
    return [np.abs(w).astype(np.float64) for w in effective_weights(pruned_slots(model))]


def snip_scores(model, x, y, loss=None, batch_size: int = 256) -> list[np.ndarray]:
    """|g * w| with g the loss gradient summed over the batches of (x, y) (SNIP).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> scores = sparse.snip_scores(model, x, y)  # |gradient x weight|
        >>> [s.shape for s in scores]
        [(8, 16), (16, 16), (16, 3)]
    """
    batch_size = check_int("batch_size", batch_size, 1)
    closure = LossGradients(model, loss)
    grads = closure.summed(x, y, batch_size)
    return [np.abs(g * w) for g, w in zip(grads, effective_weights(closure.slots))]


def grasp_scores(
    model, x, y, loss=None, batch_size: int = 256, temperature: float = 200.0
) -> list[np.ndarray]:
    """w * (H g) (GraSP), g and H g summed over the batches of (x, y); keep the highest.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> scores = sparse.grasp_scores(model, x, y)  # -weight x (Hessian x gradient)
        >>> [s.shape for s in scores]
        [(8, 16), (16, 16), (16, 3)]
    """
    batch_size = check_int("batch_size", batch_size, 1)
    temperature = check_float("temperature", temperature, 0.0, min_inclusive=False)
    closure = LossGradients(model, loss, temperature)
    grads = closure.summed(x, y, batch_size)
    hg = closure.summed(x, y, batch_size, vectors=grads)
    return [w * h for w, h in zip(effective_weights(closure.slots), hg)]


def dense_gradients(model, x, y, loss=None) -> list[np.ndarray]:
    """d loss / d (weight * mask) on (x, y) at every entry, pruned ones included (RigL).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> grads = sparse.dense_gradients(model, x, y)  # of the loss wrt weight * mask
        >>> [g.shape for g in grads]
        [(8, 16), (16, 16), (16, 3)]
    """
    return LossGradients(model, loss).summed(x, y, len(x))


def synflow_scores(model: keras.Model) -> list[np.ndarray]:
    """w * dR/dw on |parameters| and an all-ones input (one SynFlow round).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> scores = sparse.synflow_scores(model)  # data-free: |weight| x synaptic flow
        >>> bool(all((s >= 0).all() for s in scores))
        True
    """
    slots = pruned_slots(model)
    weights = [np.abs(w) for w in effective_weights(slots)]
    t_index, m_index = _slot_indices(model, slots)
    trainable = [ops.abs(ops.convert_to_tensor(v)) for v in model.trainable_variables]
    non_trainable = [_abs_if_float(v) for v in model.non_trainable_variables]
    for k in m_index:
        non_trainable[k] = ops.ones_like(non_trainable[k])
    if len(model.inputs) != 1:
        raise ValueError("synflow_scores needs a model with one input.")
    shape = tuple(model.inputs[0].shape[1:])
    if any(d is None for d in shape):
        raise ValueError(f"synflow_scores needs a static input shape; got {shape}.")

    def total_output(values):
        full = list(trainable)
        for j, k in enumerate(t_index):
            full[k] = values[j]
        outputs, _ = model.stateless_call(
            full, non_trainable, ops.ones((1,) + shape), training=False
        )
        return ops.sum(ops.cast(outputs, "float32"))

    tensors = [ops.convert_to_tensor(w.astype(np.float32)) for w in weights]
    grads = gradients(total_output, tensors)
    return [ops.convert_to_numpy(g).astype(np.float64) * w for g, w in zip(grads, weights)]


class LossGradients:
    """Gradients of the task loss with respect to the effective pruned weights
    `weight * mask`, with every mask set to ones (pruned entries get their dense gradient)
    and every other variable at its current value. Compiled once (jax.jit, tf.function);
    each call reads the model's current variables, so one instance serves a whole run.

    Training-mode forward passes (batch statistics, as the methods' reference code), whose
    state updates are discarded.
    """

    def __init__(self, model, loss=None, temperature: float = 1.0):
        self.model = model
        self.loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.temperature = temperature
        self.slots = pruned_slots(model)
        self.t_index, self.m_index = _slot_indices(model, self.slots)
        self._gradient = compiled(self._gradient_fn)
        self._hvp = compiled(self._hvp_fn)

    def summed(self, x, y, batch_size, vectors=None) -> list[np.ndarray]:
        """Gradients (or, given `vectors`, Hessian-vector products) summed over batches."""
        weights = [
            ops.convert_to_tensor(w.astype(np.float32)) for w in effective_weights(self.slots)
        ]
        trainable = [ops.convert_to_tensor(v) for v in self.model.trainable_variables]
        non_trainable = [ops.convert_to_tensor(v) for v in self.model.non_trainable_variables]
        for k in self.m_index:
            non_trainable[k] = ops.ones_like(non_trainable[k])
        if vectors is not None:
            vectors = [ops.convert_to_tensor(np.asarray(v, np.float32)) for v in vectors]
        total = [np.zeros(tuple(w.shape), np.float64) for w in weights]
        with scoring(self.slots):
            for xb, yb in _batches(x, y, batch_size):
                if vectors is None:
                    parts = self._gradient(weights, trainable, non_trainable, xb, yb)
                else:
                    parts = self._hvp(weights, vectors, trainable, non_trainable, xb, yb)
                for acc, part in zip(total, parts):
                    acc += ops.convert_to_numpy(part).astype(np.float64)
        return total

    def _loss(self, weights, trainable, non_trainable, x, y):
        full = list(trainable)
        for j, k in enumerate(self.t_index):
            full[k] = weights[j]
        outputs, _ = self.model.stateless_call(full, non_trainable, x, training=True)
        return self.loss(y, ops.cast(outputs, "float32") / self.temperature)

    def _gradient_fn(self, weights, trainable, non_trainable, x, y):
        return gradients(lambda ws: self._loss(ws, trainable, non_trainable, x, y), weights)

    def _hvp_fn(self, weights, vectors, trainable, non_trainable, x, y):
        return hessian_vector_product(
            lambda ws: self._loss(ws, trainable, non_trainable, x, y), weights, vectors
        )


def _slot_indices(model, slots):
    """Indices of the slots' weights in `model.trainable_variables` and of their masks in
    `model.non_trainable_variables`."""
    trainable = {id(v): k for k, v in enumerate(model.trainable_variables)}
    non_trainable = {id(v): k for k, v in enumerate(model.non_trainable_variables)}
    t_index, m_index = [], []
    for wrapper, i in slots:
        weight = wrapper.pruned_weights[i]
        if id(weight) not in trainable:
            raise ValueError(
                f"Pruned weight {weight.path!r} is not trainable; it cannot be scored."
            )
        t_index.append(trainable[id(weight)])
        m_index.append(non_trainable[id(wrapper.masks[i])])
    return t_index, m_index


def _abs_if_float(variable):
    value = ops.convert_to_tensor(variable)
    return ops.abs(value) if keras.backend.is_float_dtype(variable.dtype) else value


def _batches(x, y, batch_size):
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and equally long; got {len(x)} and {len(y)}.")
    for start in range(0, len(x), batch_size):
        yield (
            ops.convert_to_tensor(x[start : start + batch_size]),
            ops.convert_to_tensor(y[start : start + batch_size]),
        )
