"""Dynamic sparse training: SET and RigL as a callback on the wrappers' masks.

Every `update_frequency` train steps until `end_step`, each pruned weight drops the
`fraction(t) * active` active entries of smallest |w| and grows as many among its inactive
entries (those just dropped included): at random (SET, Mocanu et al. 2018) or by largest
|dense gradient| of the loss (RigL, Evci et al. 2020). `fraction(t) = drop_fraction / 2 *
(1 + cos(pi t / end_step))` (RigL's cosine decay). Every layer keeps its count of active
weights; grown weights start at 0 with zero optimizer state (momentum, Adam's moments), as
RigL's code resets them. The update runs between compiled train steps, in NumPy
(the forward pass stays compiled on every backend); the stored weights are masked at once.
"""

import math
from collections.abc import Callable

import keras
import numpy as np
from numpy.typing import ArrayLike

from keras_cka_sr import _compat
from keras_cka_sr._numpy import to_numpy
from keras_cka_sr._validation import check_float, check_int
from keras_cka_sr.sparse import masking
from keras_cka_sr.sparse.scores import LossGradients

DYNAMIC_METHODS = ("set", "rigl")


def drop_and_grow(weight, mask, count, grow_scores):
    """The mask after dropping the `count` smallest |weight| among active entries and
    growing the `count` highest `grow_scores` among the then-inactive ones (NumPy)."""
    flat_mask = mask.ravel() > 0
    active = np.flatnonzero(flat_mask)
    count = min(int(count), active.size)
    if count == 0:
        return mask.copy()
    dropped = active[_smallest(np.abs(weight.ravel()[active]), count)]
    new = flat_mask.copy()
    new[dropped] = False
    candidates = np.flatnonzero(~new)
    chosen = candidates[_smallest(-grow_scores.ravel()[candidates], count)]
    new[chosen] = True
    return new.reshape(mask.shape).astype(mask.dtype)


def _smallest(values, count):
    """Indices of the `count` smallest values (linear time; which of equal values is
    taken at the boundary is arbitrary but deterministic)."""
    if count >= values.size:
        return np.arange(values.size)
    return np.argpartition(values, count - 1)[:count]


class DynamicSparsity(keras.callbacks.Callback):
    """SET or RigL mask updates during `fit`, on masks set by another method (random ERK
    masks with a `StaticMask` schedule, as Evci et al.).

    Args:
        method: "set" (random growth) or "rigl" (gradient growth; needs `x`, `y`).
        update_frequency: steps between updates (RigL: 100).
        drop_fraction: the fraction of active weights updated at step 0 (RigL: 0.3).
        end_step: last step with updates; default 75% of the run's steps (RigL's).
        x: inputs the RigL gradient is taken on (`batch_size` random samples per update).
        y: their targets.
        batch_size: samples per RigL gradient.
        loss: the task loss (default: sparse categorical cross-entropy on logits).
        seed: seeds the growth (SET) and the batches (RigL).

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> _ = sparse.set_random_masks(model, 0.8, seed=0)
        >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> rigl = sparse.DynamicSparsity("rigl", update_frequency=2, x=x, y=y, seed=0)
        >>> _ = model.fit(x, y, batch_size=8, epochs=1, verbose=0,
        ...               callbacks=[pruning.UpdatePruningStep(), rigl])
        >>> [step for step, _ in rigl.updates], round(sparse.kernel_stats(model)["sparsity"], 2)
        ([2], 0.8)
    """

    def __init__(
        self,
        method: str = "rigl",
        update_frequency: int = 100,
        drop_fraction: float = 0.3,
        end_step: int | None = None,
        x: ArrayLike | None = None,
        y: ArrayLike | None = None,
        batch_size: int = 64,
        loss: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if method not in DYNAMIC_METHODS:
            raise ValueError(f"`method` must be one of {DYNAMIC_METHODS}; got {method!r}.")
        if method == "rigl" and (x is None or y is None):
            raise ValueError("method='rigl' grows by the loss gradient: pass x and y.")
        self.method = method
        self.update_frequency = check_int("update_frequency", update_frequency, 1)
        self.drop_fraction = check_float(
            "drop_fraction", drop_fraction, 0.0, 1.0, min_inclusive=False
        )
        self.end_step = None if end_step is None else check_int("end_step", end_step, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_int("seed", seed, 0)
        self.x, self.y, self.loss = x, y, loss
        self.updates = []  # per update: (step, dropped-and-grown count per weight)

    def fraction(self, step):
        """The share of active weights updated at `step` (cosine decay to 0 at end_step)."""
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * step / self._end))

    def on_train_begin(self, logs=None):
        model = self.model
        self._slots = masking.pruned_slots(model)
        self._step = int(to_numpy(model.optimizer.iterations))
        total = (self.params or {}).get("steps") or 0
        total *= (self.params or {}).get("epochs") or 0
        self._end = self.end_step or max(int(0.75 * total), 1)
        # A stream of its own: with default_rng(seed), the stream that drew random masks
        # with the same seed, SET would regrow exactly the weights it dropped.
        self._rng = np.random.default_rng([self.seed, self._step, 0x5E7])
        self._gradients = LossGradients(model, self.loss) if self.method == "rigl" else None

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.update_frequency or self._step >= self._end:
            return
        self.update(self._step)

    def update(self, step):
        """One drop-and-grow update of every pruned weight (reads and writes the model)."""
        self.model  # noqa: B018 (on JAX, reading it syncs the trainer's state into the model)
        weights = masking.effective_weights(self._slots)
        current = masking.current_masks(self._slots)
        if self.method == "rigl":
            index = self._rng.choice(len(self.x), min(self.batch_size, len(self.x)), False)
            grads = self._gradients.summed(self.x[index], self.y[index], len(index))
            grow = [np.abs(g) for g in grads]
        else:
            grow = [self._rng.random(w.shape) for w in weights]
        counts, new_masks = [], []
        fraction = self.fraction(step)
        for weight, mask, score in zip(weights, current, grow):
            count = int(round(fraction * mask.sum()))
            new_masks.append(drop_and_grow(weight, mask, count, score))
            counts.append(count)
        optimizer = self.model.optimizer
        for (wrapper, i), old, new in zip(self._slots, current, new_masks):
            grown = (new > 0) & (old == 0)
            if grown.any():
                variable = wrapper.pruned_weights[i]
                # Grown weights start at 0 with no optimizer history (Evci et al. 2020).
                for state in [variable, *_compat.optimizer_slots(optimizer, variable)]:
                    value = to_numpy(state)
                    value[grown] = 0.0
                    state.assign(value)
        masking.assign_masks(self._slots, new_masks)
        self.updates.append((step, counts))
