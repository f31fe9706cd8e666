"""Structured pruning: whole channels removed, for a physically smaller, faster model.

`DependencyGraph` finds the channels that must go together (across residual additions,
multiplications and concatenations); `prune_channels` removes the least important ones and
returns a smaller model of the same layer classes; `count_macs` counts its multiply-
accumulates. `residual_blocks`, `block_scores` and `remove_blocks` find identity-shortcut
residual blocks, score how close each is to the identity (CKA between its input and output,
as the paper's theme suggests), and remove them.
"""

from keras_cka_sr.structured.blocks import (
    ResidualBlock,
    block_scores,
    remove_blocks,
    residual_blocks,
)
from keras_cka_sr.structured.graph import DependencyGraph
from keras_cka_sr.structured.prune import ChannelPruningReport, count_macs, prune_channels

__all__ = [
    "ChannelPruningReport",
    "DependencyGraph",
    "ResidualBlock",
    "block_scores",
    "count_macs",
    "prune_channels",
    "remove_blocks",
    "residual_blocks",
]
