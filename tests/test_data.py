"""Dataset loaders on small files written in the real formats, and their errors."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from edgesparse.data import iterate_batches, load_dataset, make_synthetic, read_idx, steps_per_epoch
from edgesparse.errors import ConfigError, DataError


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def _fashion_folder(tmp_path, count=20):
    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("t10k", count // 2)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    return tmp_path


def test_fashion_mnist_reads_idx_and_pads_to_32(tmp_path):
    folder = _fashion_folder(tmp_path)
    train = load_dataset("fashion_mnist", "train", folder)
    assert train.images.shape == (20, 1, 32, 32) and train.classes == 10
    raw = read_idx(folder / "train-images-idx3-ubyte.gz")
    assert torch.equal(train.images[:, 0, 2:30, 2:30], torch.from_numpy(raw.copy()))
    assert int(train.images[:, :, :2].sum()) == 0
    assert len(load_dataset("fashion_mnist", "test", folder)) == 10


def test_damaged_idx_files_are_named(tmp_path):
    folder = _fashion_folder(tmp_path)
    path = folder / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data[:-7]))
    with pytest.raises(DataError, match="train-images.*data bytes"):
        load_dataset("fashion_mnist", "train", folder)
    path.write_bytes(gzip.compress(b"\x01\x02" + data[2:]))
    with pytest.raises(DataError, match="bad magic"):
        load_dataset("fashion_mnist", "train", folder)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("fashion_mnist", "train", folder)


def test_missing_files_are_listed(tmp_path):
    with pytest.raises(DataError, match="Fashion-MNIST files missing.*train-images"):
        load_dataset("fashion_mnist", "train", tmp_path)
    with pytest.raises(DataError, match="CIFAR-10 files missing.*data_batch_1"):
        load_dataset("cifar10", "train", tmp_path)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("cifar10", "train", None)
    with pytest.raises(ConfigError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet", "train")


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        with open(tmp_path / name, "wb") as handle:
            pickle.dump(batch, handle)
    train = load_dataset("cifar10", "train", tmp_path)
    assert train.images.shape == (20, 3, 32, 32)
    first = pickle.load(open(tmp_path / "data_batch_1", "rb"))
    assert torch.equal(train.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))


def test_cifar10_refuses_code_in_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    for name in ["test_batch"]:
        with open(tmp_path / name, "wb") as handle:
            pickle.dump({b"data": Evil(), b"labels": []}, handle)
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_dataset("cifar10", "test", tmp_path)


def test_batches_are_deterministic_resumable_and_sharded():
    data = make_synthetic("train", count=100)
    full = list(iterate_batches(data, 10, shuffle=True, seed=3, epoch=2))
    resumed = list(iterate_batches(data, 10, shuffle=True, seed=3, epoch=2, skip=4))
    assert len(full) == steps_per_epoch(100, 10) == 10
    assert all(torch.equal(a[0], b[0]) for a, b in zip(full[4:], resumed))
    other_epoch = next(iterate_batches(data, 10, shuffle=True, seed=3, epoch=3))
    assert not torch.equal(full[0][1], other_epoch[1])
    ranks = [list(iterate_batches(data, 10, shuffle=True, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 5
    seen = torch.cat([b[1] for r in ranks for b in r])
    assert seen.numel() == 100
