"""Fine-grained sparsity: patterns, importance scores, masks and the dynamic pruner."""

from edgesparse.sparsity.figures import LayerFigures, format_figures, layer_figures, total_figures, verify_pattern
from edgesparse.sparsity.importance import IMPORTANCE, create_importance
from edgesparse.sparsity.masking import SparseMask, attach_mask, dense_weight, prunable_layers, sparse_mask_of
from edgesparse.sparsity.pattern import (
    BlockPattern,
    ChannelPattern,
    DensePattern,
    Pattern,
    UnstructuredPattern,
    parse_pattern,
    scheduled_density,
)
from edgesparse.sparsity.pruner import DynamicPruner, PatternPlan, PruningSchedule

__all__ = [
    "BlockPattern", "ChannelPattern", "DensePattern", "DynamicPruner", "IMPORTANCE", "LayerFigures", "Pattern",
    "PatternPlan", "PruningSchedule", "SparseMask", "UnstructuredPattern", "attach_mask", "create_importance",
    "dense_weight", "format_figures", "layer_figures", "parse_pattern", "prunable_layers", "scheduled_density",
    "sparse_mask_of", "total_figures", "verify_pattern",
]
