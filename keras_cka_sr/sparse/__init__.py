"""Sparse training methods on the pruning wrapper's masks: layer-wise density allocation,
random static sparse training (`set_random_masks`), pruning at initialization (SNIP,
GraSP, SynFlow, random, magnitude), lottery tickets
(iterative magnitude pruning with rewinding), dynamic sparse training (SET, RigL) and
`kernel_stats`."""

from keras_cka_sr.sparse import dynamic, lottery
from keras_cka_sr.sparse.allocation import (
    ALLOCATIONS,
    erk_densities,
    kept_counts,
    layer_densities,
    masks_from_scores,
    total_kept,
)
from keras_cka_sr.sparse.dynamic import DYNAMIC_METHODS, DynamicSparsity
from keras_cka_sr.sparse.init_pruning import (
    INIT_METHODS,
    prune_at_initialization,
    set_random_masks,
)
from keras_cka_sr.sparse.lottery import lottery_ticket
from keras_cka_sr.sparse.scores import (
    dense_gradients,
    grasp_scores,
    magnitude_scores,
    snip_scores,
    synflow_scores,
)
from keras_cka_sr.sparse.stats import kernel_stats

__all__ = [
    "ALLOCATIONS",
    "DYNAMIC_METHODS",
    "DynamicSparsity",
    "dense_gradients",
    "dynamic",
    "lottery",
    "lottery_ticket",
    "INIT_METHODS",
    "erk_densities",
    "grasp_scores",
    "kept_counts",
    "layer_densities",
    "magnitude_scores",
    "masks_from_scores",
    "kernel_stats",
    "prune_at_initialization",
    "set_random_masks",
    "snip_scores",
    "synflow_scores",
    "total_kept",
]
