"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019;
rewinding to step k: Frankle et al. 2020).

Round 0 trains the masked-but-dense model and saves its weights at step `rewind_step`;
each later round prunes the trained weights by magnitude to the round's sparsity
`1 - (1 - sparsity)^(r / rounds)` (so the last round hits `sparsity` exactly), sets every
other weight back to the saved ones and trains again. Each finished round is written to
`checkpoint_dir` (masks, weights and the rewind point), and a rerun resumes after it.
"""

import json
import os
from collections.abc import Callable

import keras
import numpy as np

from keras_cka_sr._numpy import to_numpy
from keras_cka_sr._validation import check_bool, check_int, check_sparsity
from keras_cka_sr.sparse import allocation as alloc
from keras_cka_sr.sparse import masking


class RewindPoint(keras.callbacks.Callback):
    """Keeps a copy of the weights (masks and pruning state excluded) of `model` (default:
    the model being fit; pass the inner model when fit trains a model built around it,
    e.g. by `attach_cka_loss`) after `step` train steps (0: before the first)."""

    def __init__(self, step=0, model=None):
        super().__init__()
        self.step = check_int("step", step, 0)
        self.weights = None
        self._target = model
        self._seen = 0

    def _record(self):
        fitted = self.model  # on JAX, reading it syncs the trainer's state into the model
        self.weights = model_weights(self._target or fitted)

    def on_train_begin(self, logs=None):
        self._seen = 0
        if self.step == 0:
            self._record()

    def on_train_batch_end(self, batch, logs=None):
        self._seen += 1
        if self._seen == self.step:
            self._record()

    def on_train_end(self, logs=None):
        if self.weights is None:
            raise ValueError(
                f"Training ran {self._seen} steps, fewer than rewind_step={self.step}."
            )


def model_weights(model) -> list[np.ndarray]:
    """Every variable of `model` in order, except the wrappers' masks, thresholds and steps."""
    return [to_numpy(v) for v in _rewound_variables(model)]


def set_model_weights(model, weights: list[np.ndarray]) -> None:
    """Assigns `weights` (from `model_weights` of this model or one built alike)."""
    variables = _rewound_variables(model)
    if len(weights) != len(variables) or any(
        tuple(v.shape) != np.shape(w) for v, w in zip(variables, weights)
    ):
        raise ValueError(
            f"The saved weights ({len(weights)} arrays) do not fit model {model.name!r} "
            f"({len(variables)} variables); was it built the same way?"
        )
    for variable, value in zip(variables, weights):
        variable.assign(value)


def _rewound_variables(model):
    skip = set()
    for wrapper, i in masking.pruned_slots(model):
        skip.update({id(wrapper.masks[i]), id(wrapper.thresholds[i]), id(wrapper.pruning_step)})
    return [v for v in model.variables if id(v) not in skip]


def lottery_ticket(
    model: keras.Model,
    train: Callable[[keras.Model, int, list], None],
    sparsity: float,
    rounds: int = 3,
    rewind_step: int = 0,
    allocation: str = "global",
    keep_first_last_dense: bool = False,
    checkpoint_dir: str | None = None,
) -> list[dict]:
    """Runs `rounds + 1` trainings of `model` (wrapped with a `StaticMask` schedule); the
    model ends trained at `sparsity`. `train(model, round, callbacks)` compiles (a fresh
    optimizer) and fits, passing `callbacks` to `fit`. Returns one summary per round.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        >>> def train(model, round_index, callbacks):
        ...     model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks)
        >>> _ = sparse.lottery_ticket(model, train, 0.8, rounds=2)
        >>> round(sparse.kernel_stats(model)["sparsity"], 2)
        0.8
    """
    sparsity = check_sparsity("sparsity", sparsity)
    rounds = check_int("rounds", rounds, 1)
    rewind_step = check_int("rewind_step", rewind_step, 0)
    keep_first_last_dense = check_bool("keep_first_last_dense", keep_first_last_dense)
    if allocation not in alloc.ALLOCATIONS:
        raise ValueError(f"`allocation` must be one of {alloc.ALLOCATIONS}; got {allocation!r}.")
    slots = masking.pruned_slots(model)
    dense = masking.edge_indices(slots, keep_first_last_dense)
    summaries, rewind, start = [], None, 0
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
        done = _finished_rounds(checkpoint_dir)
        if done:
            last = done[-1]
            with np.load(os.path.join(checkpoint_dir, f"round_{last}.npz")) as saved:
                set_model_weights(model, _unflatten(saved, "w/"))
                masking.assign_masks(slots, [saved[f"m/{k}"] for k in range(len(slots))])
            with np.load(os.path.join(checkpoint_dir, "rewind.npz")) as saved:
                rewind = _unflatten(saved, "w/")
            with open(os.path.join(checkpoint_dir, "summaries.json")) as f:
                summaries = json.load(f)[: last + 1]
            start = last + 1
    for r in range(start, rounds + 1):
        callbacks = []
        if r > 0:
            target = 1.0 - (1.0 - sparsity) ** (r / rounds)
            trained = masking.effective_weights(slots)
            scores = [np.where(m > 0, np.abs(w), -1.0) for w, m in zip(trained, _masks(slots))]
            masks = alloc.masks_from_scores(scores, target, allocation, dense)
            set_model_weights(model, rewind)
            masking.assign_masks(slots, masks)
        else:
            point = RewindPoint(rewind_step, model)
            callbacks.append(point)
        train(model, r, callbacks)
        if r == 0:
            rewind = point.weights
        kept = sum(int(m.sum()) for m in _masks(slots))
        total = sum(m.size for m in _masks(slots))
        summaries.append({"round": r, "sparsity": 1.0 - kept / total})
        if checkpoint_dir:
            _save_round(checkpoint_dir, r, model, slots, rewind, summaries)
    return summaries


def _masks(slots):
    return masking.current_masks(slots)


def _finished_rounds(directory):
    path = os.path.join(directory, "summaries.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [s["round"] for s in json.load(f)]


def _save_round(directory, r, model, slots, rewind, summaries):
    arrays = {f"w/{k}": v for k, v in enumerate(model_weights(model))}
    arrays.update({f"m/{k}": m for k, m in enumerate(_masks(slots))})
    _atomic_npz(os.path.join(directory, f"round_{r}.npz"), arrays)
    if r == 0:
        _atomic_npz(
            os.path.join(directory, "rewind.npz"), {f"w/{k}": v for k, v in enumerate(rewind)}
        )
    tmp = os.path.join(directory, "summaries.json.tmp")
    with open(tmp, "w") as f:
        json.dump(summaries, f)
    os.replace(tmp, os.path.join(directory, "summaries.json"))


def _atomic_npz(path, arrays):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _unflatten(saved, prefix):
    return [saved[f"{prefix}{k}"] for k in range(sum(f.startswith(prefix) for f in saved.files))]
