"""edgesparse: fine-grained sparse int8 CNNs and the sparse systolic-array accelerator that runs them."""

from edgesparse.errors import ConfigError, DataError, EdgesparseError, PatternError

__version__ = "0.1.0"

__all__ = ["ConfigError", "DataError", "EdgesparseError", "PatternError", "__version__"]
