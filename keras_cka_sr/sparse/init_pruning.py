"""Pruning at initialization: score the weights once (or, for SynFlow, over rounds), fix
the masks, then train with them fixed (wrap with `pruning.StaticMask`). `set_random_masks`
is random static sparse training (RST) with ERK or uniform layer densities."""

import keras
import numpy as np

from keras_cka_sr._validation import check_bool, check_int, check_sparsity
from keras_cka_sr.sparse import allocation as alloc
from keras_cka_sr.sparse import masking, scores

INIT_METHODS = ("random", "magnitude", "snip", "grasp", "synflow")
_NEEDS_DATA = ("snip", "grasp")


def random_masks(shapes, sparsity, seed=0, distribution="erk", keep_dense=()) -> list[np.ndarray]:
    """Random 0/1 masks with exactly `kept_counts` ones per layer (`uniform`/`erk`)."""
    sizes = [int(np.prod(shape)) for shape in shapes]
    densities = alloc.layer_densities(shapes, sparsity, distribution, keep_dense)
    rng = np.random.default_rng(seed)
    masks = []
    for shape, size, keep in zip(shapes, sizes, alloc.kept_counts(sizes, densities)):
        mask = np.zeros(size, dtype="float32")
        mask[rng.permutation(size)[:keep]] = 1.0
        masks.append(mask.reshape(shape))
    return masks


def prune_at_initialization(
    model: keras.Model,
    method: str,
    sparsity: float,
    x=None,
    y=None,
    *,
    allocation: str | None = None,
    keep_first_last_dense: bool = False,
    rounds: int = 100,
    batch_size: int = 256,
    temperature: float = 200.0,
    loss=None,
    rescale: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Sets the masks of `model`'s wrappers by `method`; returns the densities by path.

    Args:
        model: a model whose layers are wrapped in `PruneLowMagnitude` (built).
        method: one of `INIT_METHODS`. `snip` and `grasp` score on (x, y); `synflow` and
            `random` need no data; `magnitude` keeps the largest |w|.
        sparsity: the share of the pruned weights set to zero, over all of them.
        allocation: `global` (one ranking over all layers: the default of the scoring
            methods, as their papers) or `uniform`/`erk` per-layer budgets (`erk` is the
            default of `random`, as the paper's reference code).
        keep_first_last_dense: keep the first and last pruned weight dense.
        rounds: SynFlow's pruning rounds (sparsity 1 - density^(r / rounds) at round r).
        rescale: sparsity-aware initialization (see `masking.assign_masks`): kept weights
            x 1/sqrt(layer density) for `random` masks, x ||w|| / ||w * mask|| for the
            scoring methods (which keep large weights), so each layer keeps its output scale.

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
        >>> y = np.arange(32) % 3
        >>> densities = sparse.prune_at_initialization(model, "snip", 0.8, x, y)
        >>> round(sparse.kernel_stats(model)["sparsity"], 2)
        0.8
    """
    if method not in INIT_METHODS:
        raise ValueError(f"`method` must be one of {INIT_METHODS}; got {method!r}.")
    sparsity = check_sparsity("sparsity", sparsity)
    rounds = check_int("rounds", rounds, 1)
    keep_first_last_dense = check_bool("keep_first_last_dense", keep_first_last_dense)
    rescale = check_bool("rescale", rescale)
    seed = check_int("seed", seed, 0)
    if allocation is None:
        allocation = "erk" if method == "random" else "global"
    if allocation not in alloc.ALLOCATIONS:
        raise ValueError(f"`allocation` must be one of {alloc.ALLOCATIONS}; got {allocation!r}.")
    if method in _NEEDS_DATA and (x is None or y is None):
        raise ValueError(f"method={method!r} scores weights on data: pass x and y.")
    slots = masking.pruned_slots(model)
    dense = masking.edge_indices(slots, keep_first_last_dense)
    norms = [float(np.linalg.norm(w.astype(np.float64))) for w in masking.effective_weights(slots)]

    def masks_for(values, at_sparsity):
        return alloc.masks_from_scores(values, at_sparsity, allocation, dense)

    if method == "random" and allocation != "global":
        shapes = [tuple(w.pruned_weights[i].shape) for w, i in slots]
        masks = random_masks(shapes, sparsity, seed, allocation, dense)
    elif method == "random":
        rng = np.random.default_rng(seed)
        masks = masks_for([rng.random(w.pruned_weights[i].shape) for w, i in slots], sparsity)
    elif method == "magnitude":
        masks = masks_for(scores.magnitude_scores(model), sparsity)
    elif method == "snip":
        masks = masks_for(scores.snip_scores(model, x, y, loss, batch_size), sparsity)
    elif method == "grasp":
        masks = masks_for(scores.grasp_scores(model, x, y, loss, batch_size, temperature), sparsity)
    else:
        density = 1.0 - sparsity
        for r in range(1, rounds + 1):
            values = scores.synflow_scores(model)
            current = masking.current_masks(slots)
            # Pruned weights rank last, so a mask only ever loses weights.
            values = [np.where(m > 0, v, -1.0) for v, m in zip(values, current)]
            masks = masks_for(values, 1.0 - density ** (r / rounds))
            masking.assign_masks(slots, masks)
    how = "none" if not rescale else ("density" if method == "random" else "norm")
    return masking.assign_masks(slots, masks, rescale=how, dense_norms=norms)


def set_random_masks(
    model: keras.Model,
    sparsity: float,
    seed: int = 0,
    distribution: str = "erk",
    rescale: bool = False,
    keep_first_last_dense: bool = False,
) -> dict[str, float]:
    """Draws a random fixed mask for every pruned weight of `model`'s wrappers.

    Layer densities are ERK or uniform for overall sparsity `sparsity`, with integer
    counts that keep exactly `round((1 - sparsity) * N)` of the N pruned weights; the
    stored weights are masked too. Returns the densities, by weight path.

    `rescale=True` multiplies each weight's kept entries by `1 / sqrt(kept / size)`
    (sparsity-aware initialization, as Evci et al. and Liu et al.): a layer's output then
    has the variance it had dense. Without it, a net without normalization masked to 98%
    shrinks its activations layer by layer (LeNet-5: 2e-2 at conv1 to 5e-5 at fc2), and
    CKA-SR's gradient can then dominate the task's (docs: "Safety").

    Examples:
        >>> inp = keras.Input((8,))
        >>> a = keras.layers.Dense(16, activation="relu", name="a")(inp)
        >>> b = keras.layers.Dense(16, activation="relu", name="b")(a)
        >>> model = keras.Model(inp, keras.layers.Dense(3, name="head")(b))
        >>> model = pruning.prune_low_magnitude(model, pruning.StaticMask(0.8))
        >>> densities = sparse.set_random_masks(model, 0.8, seed=0, distribution="uniform")
        >>> round(sparse.kernel_stats(model)["sparsity"], 2)
        0.8
    """
    if distribution not in alloc.DISTRIBUTIONS:
        raise ValueError(
            f"`distribution` must be one of {alloc.DISTRIBUTIONS}; got {distribution!r}."
        )
    return prune_at_initialization(
        model,
        "random",
        sparsity,
        allocation=distribution,
        keep_first_last_dense=keep_first_last_dense,
        rescale=rescale,
        seed=seed,
    )
