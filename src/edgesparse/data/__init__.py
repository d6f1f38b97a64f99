"""Datasets by name: ``fashion_mnist`` (the embedded default), ``cifar10`` (a folder you give) and ``synthetic``."""

from edgesparse._lazy import lazy_exports

_HOMES = {
    "ImageArrays": "edgesparse.data.arrays",
    "iterate_batches": "edgesparse.data.arrays",
    "steps_per_epoch": "edgesparse.data.arrays",
    "read_idx": "edgesparse.data.fashion_mnist",
    "make_synthetic": "edgesparse.data.synthetic",
    "DATASETS": "edgesparse.data.registry",
    "load_dataset": "edgesparse.data.registry",
}
__all__ = sorted(_HOMES)
__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
