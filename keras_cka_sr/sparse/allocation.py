"""How many weights each layer keeps: exact integer budgets and masks from scores.

Pure NumPy: the methods in this package score weights with the backend, then call these
to turn scores into masks. Every function keeps exactly `round((1 - sparsity) * N)`
weights over all `N` (so "sparsity 0.98" means the same count whatever the method).
"""

from collections.abc import Sequence

import numpy as np

from keras_cka_sr._validation import check_float, check_sparsity

DISTRIBUTIONS = ("uniform", "erk")
ALLOCATIONS = ("global",) + DISTRIBUTIONS


def total_kept(sizes: Sequence[int], sparsity: float) -> int:
    """The number of weights kept over all layers: `round((1 - sparsity) * sum(sizes))`, >= 1.

    Examples:
        >>> sparse.total_kept([100, 50], sparsity=0.9)
        15
    """
    sparsity = check_sparsity("sparsity", sparsity)
    return max(int(round((1.0 - sparsity) * sum(sizes))), 1)


def erk_densities(
    shapes: Sequence[Sequence[int]],
    sparsity: float,
    power_scale: float = 1.0,
    keep_dense: Sequence[int] = (),
) -> list[float]:
    """Per-layer densities with ERK scaling and overall density `1 - sparsity`.

    A layer's density is proportional to `sum(shape) / prod(shape)`; layers whose
    density would exceed 1 are kept dense and the others rescaled (RigL's algorithm).
    Layers whose indices are in `keep_dense` are dense from the start.

    Examples:
        >>> densities = sparse.erk_densities([(8, 16), (16, 16), (16, 3)], sparsity=0.8)
        >>> [round(float(d), 3) for d in densities]  # the layer of fewest inputs+outputs keeps most
        [0.216, 0.144, 0.456]
    """
    sparsity = check_sparsity("sparsity", sparsity)
    power_scale = check_float("power_scale", power_scale)
    sizes = [int(np.prod(s)) for s in shapes]
    raw = [(sum(s) / np.prod(s)) ** power_scale for s in shapes]
    dense = set(keep_dense)
    if sum(sizes[i] for i in dense) > (1.0 - sparsity) * sum(sizes):
        raise ValueError(
            f"Keeping layers {sorted(dense)} dense already exceeds the density "
            f"{1.0 - sparsity:g} of sparsity={sparsity:g}; lower the sparsity or prune them."
        )
    probabilities = {}
    while True:
        divisor, rhs = 0.0, 0.0
        for i, size in enumerate(sizes):
            if i in dense:
                rhs -= size * sparsity
            else:
                rhs += size * (1.0 - sparsity)
                divisor += raw[i] * size
        if divisor == 0:  # every layer dense
            break
        epsilon = rhs / divisor
        probabilities = {i: epsilon * raw[i] for i in range(len(sizes)) if i not in dense}
        worst = max(probabilities.values(), default=0.0)
        if worst <= 1.0:
            break
        dense.update(i for i, p in probabilities.items() if p == worst)
    return [1.0 if i in dense else probabilities.get(i, 1.0) for i in range(len(sizes))]


def layer_densities(
    shapes: Sequence[Sequence[int]],
    sparsity: float,
    distribution: str = "erk",
    keep_dense: Sequence[int] = (),
) -> list[float]:
    """Per-layer densities for overall sparsity `sparsity`: `uniform` (the same density in
    every pruned layer) or `erk`; layers in `keep_dense` (indices) stay dense.

    Examples:
        >>> sparse.layer_densities([(10, 10), (10, 10)], 0.5, "uniform")
        [0.5, 0.5]
        >>> sparse.layer_densities([(10, 10), (10, 10)], 0.5, "uniform", keep_dense=[0])
        [1.0, 0.0]
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"`distribution` must be one of {DISTRIBUTIONS}; got {distribution!r}.")
    if distribution == "erk":
        return erk_densities(shapes, sparsity, keep_dense=keep_dense)
    sizes = [int(np.prod(s)) for s in shapes]
    dense_size = sum(sizes[i] for i in keep_dense)
    rest = sum(sizes) - dense_size
    budget = total_kept(sizes, sparsity) - dense_size
    if budget < 0 or (rest == 0 and budget > 0):
        raise ValueError(
            f"Keeping layers {sorted(keep_dense)} dense does not fit sparsity={sparsity:g}: "
            f"they hold {dense_size} of {sum(sizes)} weights."
        )
    density = budget / rest if rest else 1.0
    return [1.0 if i in keep_dense else density for i in range(len(sizes))]


def kept_counts(sizes: Sequence[int], densities: Sequence[float]) -> list[int]:
    """Integer counts near `density * size` per layer, each >= 1, that sum exactly to
    `round(sum(density * size))` (largest remainders round up, the most rounded-up
    layers give back what the at-least-one rule took).

    Examples:
        >>> sparse.kept_counts([10, 10, 10], [0.25, 0.25, 0.25])  # 7.5 in all: 8, rounded up once
        [3, 3, 2]
    """
    sizes = np.array([int(s) for s in sizes], dtype=np.int64)
    exact = np.array([d * s for d, s in zip(densities, sizes)], dtype=np.float64)
    target = max(int(round(exact.sum())), len(sizes))
    counts = np.clip(np.floor(exact + 1e-9).astype(np.int64), 1, sizes)
    while counts.sum() < target:
        room = np.where(counts < sizes, exact - counts, -np.inf)
        counts[int(np.argmax(room))] += 1
    while counts.sum() > target:
        spare = np.where(counts > 1, exact - counts, np.inf)
        counts[int(np.argmin(spare))] -= 1
    return [int(c) for c in counts]


def masks_from_scores(
    scores: Sequence[np.ndarray],
    sparsity: float,
    allocation: str = "global",
    keep_dense: Sequence[int] = (),
) -> list[np.ndarray]:
    """0/1 masks keeping the highest-scoring weights.

    `global`: one ranking over every layer not in `keep_dense` (the papers' SNIP, GraSP and
    SynFlow); `uniform`/`erk`: each layer keeps its budget by its own ranking. Ties are
    broken by position, so exactly `total_kept` weights are kept.

    Examples:
        >>> scores = [np.array([[1.0, 5.0], [3.0, 0.5]]), np.array([[4.0, 2.0]])]
        >>> [m.astype(int).tolist() for m in sparse.masks_from_scores(scores, 0.5)]
        [[[0, 1], [1, 0]], [[1, 0]]]
    """
    if allocation not in ALLOCATIONS:
        raise ValueError(f"`allocation` must be one of {ALLOCATIONS}; got {allocation!r}.")
    scores = [np.asarray(s, dtype=np.float64) for s in scores]
    if any(not np.all(np.isfinite(s)) for s in scores):
        raise ValueError(
            "Scores contain NaN or inf (overflow in the scoring pass?); masks cannot be ranked."
        )
    sizes = [s.size for s in scores]
    keep_dense = sorted({int(i) for i in keep_dense})
    if allocation != "global":
        densities = layer_densities([s.shape for s in scores], sparsity, allocation, keep_dense)
        counts = kept_counts(sizes, densities)
        return [_top(s.ravel(), k).reshape(s.shape) for s, k in zip(scores, counts)]
    budget = total_kept(sizes, sparsity) - sum(sizes[i] for i in keep_dense)
    if budget < 0:
        raise ValueError(
            f"Keeping layers {keep_dense} dense already exceeds the {total_kept(sizes, sparsity)} "
            f"weights that sparsity={sparsity:g} keeps."
        )
    pruned = [i for i in range(len(scores)) if i not in keep_dense]
    flat = np.concatenate([scores[i].ravel() for i in pruned]) if pruned else np.zeros(0)
    keep = _top(flat, budget)
    masks, offset = [], 0
    for i, s in enumerate(scores):
        if i in keep_dense:
            masks.append(np.ones(s.shape, np.float32))
        else:
            masks.append(keep[offset : offset + s.size].reshape(s.shape))
            offset += s.size
    return masks


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """A float32 0/1 vector marking the k largest values (ties by position)."""
    keep = np.zeros(values.size, np.float32)
    if k > 0:
        keep[np.argsort(-values, kind="stable")[:k]] = 1.0
    return keep
