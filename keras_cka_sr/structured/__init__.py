"""Structured pruning: whole channels removed, for a physically smaller, faster model.

`DependencyGraph` finds the channels that must go together (across residual additions,
multiplications and concatenations); `prune_channels` removes the least important ones and
returns a smaller model of the same layer classes; `count_macs` counts its multiply-
accumulates.
"""

from keras_cka_sr.structured.graph import DependencyGraph
from keras_cka_sr.structured.prune import ChannelPruningReport, count_macs, prune_channels

__all__ = ["ChannelPruningReport", "DependencyGraph", "count_macs", "prune_channels"]
