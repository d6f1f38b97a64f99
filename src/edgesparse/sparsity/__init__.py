"""Fine-grained sparsity: importance scores, masks and the dynamic pruner (patterns: :mod:`edgesparse.pattern`)."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "LayerFigures": "edgesparse.sparsity.figures",
    "format_figures": "edgesparse.sparsity.figures",
    "layer_figures": "edgesparse.sparsity.figures",
    "total_figures": "edgesparse.sparsity.figures",
    "verify_pattern": "edgesparse.sparsity.figures",
    "IMPORTANCE": "edgesparse.sparsity.importance",
    "create_importance": "edgesparse.sparsity.importance",
    "SparseMask": "edgesparse.sparsity.masking",
    "attach_mask": "edgesparse.sparsity.masking",
    "dense_weight": "edgesparse.sparsity.masking",
    "prunable_layers": "edgesparse.sparsity.masking",
    "sparse_mask_of": "edgesparse.sparsity.masking",
    "DynamicPruner": "edgesparse.sparsity.pruner",
    "PatternPlan": "edgesparse.sparsity.pruner",
    "PruningSchedule": "edgesparse.sparsity.pruner",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
