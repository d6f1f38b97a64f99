"""The project's error types: every bad input is reported through one of these, with a message naming it."""


class EdgesparseError(Exception):
    """Base class of every error edgesparse raises on purpose (the CLI prints these without a traceback)."""


class ConfigError(EdgesparseError, ValueError):
    """A configuration file, flag or name is malformed or unknown."""


class PatternError(EdgesparseError, ValueError):
    """A sparsity pattern is impossible, or a model does not follow the pattern it claims."""


class DataError(EdgesparseError, ValueError):
    """A dataset is missing, incomplete or damaged."""


class CheckpointError(EdgesparseError, ValueError):
    """A checkpoint cannot be read or does not match the run that wants to resume it."""


class QuantError(EdgesparseError, ValueError):
    """A model cannot be quantized, or an integer graph is inconsistent."""


class PackError(EdgesparseError, ValueError):
    """A packed model file is damaged, inconsistent or of an unknown version."""


class AcceleratorError(EdgesparseError, ValueError):
    """An accelerator configuration is invalid, or a layer cannot run on it."""


class MissingExtraError(EdgesparseError, ImportError):
    """A command needs an optional extra (``pip install 'edgesparse[NAME]'``) that is not installed."""
