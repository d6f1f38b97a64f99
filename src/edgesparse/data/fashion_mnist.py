"""Fashion-MNIST from gzipped IDX files (Debian's ``dataset-fashion-mnist`` installs them), padded to 32x32."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from edgesparse.data.arrays import ImageArrays
from edgesparse.errors import DataError

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MEAN, STD = (0.2190,), (0.3318,)  # of the padded 32x32 training images
_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes into an array of the shape its header states."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    if raw[2] != _UBYTE:
        raise DataError(f"{path}: only unsigned-byte IDX files are supported, type code is {raw[2]:#x}")
    dims = raw[3]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{dims}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} data bytes, its header {shape} promises {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(split: str, data_dir: str | Path | None = None) -> ImageArrays:
    """Load ``train`` or ``test``; images are zero-padded from 28x28 to 32x32 (the small models' input)."""
    if split not in FILES:
        raise DataError(f"unknown split {split!r}: use 'train' or 'test'")
    root = Path(data_dir) if data_dir is not None else DEFAULT_DIR
    paths = [root / name for name in FILES[split]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        hint = " (install it: apt-get install dataset-fashion-mnist)" if data_dir is None else ""
        raise DataError(f"Fashion-MNIST files missing in {root}: {', '.join(missing)}{hint}")
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"Fashion-MNIST {split}: images {images.shape} and labels {labels.shape} do not match")
    tensor = torch.from_numpy(images.copy()).unsqueeze(1)
    pad = (32 - tensor.shape[-1]) // 2
    tensor = torch.nn.functional.pad(tensor, (pad, pad, pad, pad)) if pad > 0 else tensor
    return ImageArrays(tensor.contiguous(), torch.from_numpy(labels.astype(np.int64)), 10, MEAN, STD)
