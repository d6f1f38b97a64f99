"""Datasets by name: ``fashion_mnist`` (the embedded default), ``cifar10`` (a folder you give) and ``synthetic``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from edgesparse.data.arrays import ImageArrays
from edgesparse.data.cifar10 import load_cifar10
from edgesparse.data.fashion_mnist import load_fashion_mnist
from edgesparse.data.synthetic import make_synthetic
from edgesparse.errors import ConfigError

DATASETS: dict[str, Callable[[str, str | Path | None], ImageArrays]] = {
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "synthetic": lambda split, data_dir=None: make_synthetic(split),
}


def load_dataset(name: str, split: str, data_dir: str | Path | None = None) -> ImageArrays:
    """Load one split of a dataset by name."""
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    return DATASETS[name](split, data_dir)
