"""edgesparse: fine-grained sparse int8 CNNs and the sparse systolic-array accelerator that runs them.

The Python API (see the README's "Use it from Python"): :func:`prepare` a model, step the pruner in your loop,
:func:`verify_pattern`, :func:`export` and :func:`save_packed`, :func:`simulate` on the array and read
:func:`hardware_figures` and :func:`layer_figures`. Names load on first use, so ``import edgesparse`` loads no torch.
"""

from edgesparse._lazy import lazy_exports
from edgesparse.errors import ConfigError, DataError, EdgesparseError, PatternError, QuantError

__version__ = "0.1.0"

_HOMES = {
    "prepare": "edgesparse.api",
    "export": "edgesparse.api",
    "array_for": "edgesparse.api",
    "simulate": "edgesparse.api",
    "hardware_figures": "edgesparse.api",
    "verify_pattern": "edgesparse.sparsity.figures",
    "layer_figures": "edgesparse.sparsity.figures",
    "DynamicPruner": "edgesparse.sparsity.pruner",
    "PruningSchedule": "edgesparse.sparsity.pruner",
    "parse_pattern": "edgesparse.pattern",
    "save_packed": "edgesparse.pack.packed",
    "load_packed": "edgesparse.pack.packed",
    "AcceleratorConfig": "edgesparse.accel.config",
}
__all__ = sorted([*_HOMES, "ConfigError", "DataError", "EdgesparseError", "PatternError", "QuantError",
                  "__version__"])
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
