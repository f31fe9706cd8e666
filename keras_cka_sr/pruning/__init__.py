"""Keras 3 magnitude pruning with tensorflow-model-optimization's API (TF, JAX, torch)."""

from keras_cka_sr.pruning.callbacks import (
    PruningSummaries,
    UpdatePruningStep,
    unfinished_schedules,
    warn_emptied_layers,
    warn_unfinished_schedules,
)
from keras_cka_sr.pruning.policy import PruneForLatencyOnXNNPack, PruningPolicy
from keras_cka_sr.pruning.prune import prune_low_magnitude, prune_scope, strip_pruning
from keras_cka_sr.pruning.registry import PrunableLayer
from keras_cka_sr.pruning.schedules import (
    ConstantSparsity,
    GradualMagnitude,
    PolynomialDecay,
    PruningSchedule,
    StaticMask,
)
from keras_cka_sr.pruning.summary import SparsitySummary, WeightSparsity, sparsity_summary
from keras_cka_sr.pruning.transfer import copy_weights
from keras_cka_sr.pruning.wrapper import PruneLowMagnitude, collect_prunable_layers

__all__ = [
    "ConstantSparsity",
    "GradualMagnitude",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruneLowMagnitude",
    "PruningPolicy",
    "PruningSchedule",
    "PruningSummaries",
    "SparsitySummary",
    "StaticMask",
    "UpdatePruningStep",
    "WeightSparsity",
    "collect_prunable_layers",
    "copy_weights",
    "prune_low_magnitude",
    "prune_scope",
    "sparsity_summary",
    "strip_pruning",
    "unfinished_schedules",
    "warn_emptied_layers",
    "warn_unfinished_schedules",
]
