"""CIFAR-10 from the standard "python version" batches (``data_batch_1..5``, ``test_batch``) in a user's folder.

The batches are pickles; they are read with an unpickler that admits only the builtins and numpy array types
those files contain, so a hostile file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from edgesparse.data.arrays import ImageArrays
from edgesparse.errors import DataError

FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("builtins", "bytes"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _ArraysOnly(handle, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DataError(f"cannot read CIFAR-10 batch {path}: {error}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (no b'data'/b'labels' entries)")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(labels):
        raise DataError(f"{path}: expected uint8 data [N, 3072] and N labels, got {data.dtype} {data.shape} "
                        f"and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(split: str, data_dir: str | Path | None) -> ImageArrays:
    """Load ``train`` or ``test`` from ``data_dir`` (the folder ``cifar-10-batches-py``)."""
    if data_dir is None:
        raise DataError("CIFAR-10 is not installed with the project: pass --data-dir pointing at cifar-10-batches-py")
    if split not in FILES:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    root = Path(data_dir)
    missing = [name for name in FILES[split] if not (root / name).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 files missing in {root}: {', '.join(missing)}")
    parts = [_read_batch(root / name) for name in FILES[split]]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts])).contiguous()
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ImageArrays(images, labels, 10, MEAN, STD)
