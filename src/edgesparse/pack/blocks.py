"""Block-sparse weight packing: kept int8 values plus log2(M)-bit indices, and the exact inverse.

An N:M/gG weight ``[Cout, Cin, *k]`` is laid out as ``[Cout, K, B, M]`` (K kernel positions, B = ceil(Cin/M)
blocks, Cin zero-padded). Each block stores N values (``[Cout, K, B, N]`` int8) and, per group of G filters, N
indices into the block (``[ceil(Cout/G), K, B, N]``), ascending, bit-packed little-endian at ``ceil(log2 M)``
bits each. Positions are chosen from the int8 weight itself (every non-zero, then the lowest free positions), so
any weight that follows the pattern packs exactly, even where a kept weight rounded to zero.
"""

from __future__ import annotations

import math

import numpy as np

from edgesparse.errors import PackError
from edgesparse.pattern import BlockPattern


def _blocked(weight: np.ndarray, pattern: BlockPattern) -> np.ndarray:
    """``[Cout, Cin, *k]`` -> ``[Cout_padded_to_G, K, B, M]`` with zero padding."""
    cout, cin = weight.shape[:2]
    rows = weight.reshape(cout, cin, -1).transpose(0, 2, 1)
    blocks, groups = math.ceil(cin / pattern.m), math.ceil(cout / pattern.g)
    padded = np.zeros((groups * pattern.g, rows.shape[1], blocks * pattern.m), dtype=weight.dtype)
    padded[:cout, :, :cin] = rows
    return padded.reshape(groups * pattern.g, rows.shape[1], blocks, pattern.m)


def pack_block_weight(weight: np.ndarray, pattern: BlockPattern) -> tuple[np.ndarray, np.ndarray]:
    """``(values [Cout, K, B, N] int8, index bytes uint8)``; raises if ``weight`` breaks the pattern."""
    cout = weight.shape[0]
    blocked = _blocked(weight, pattern)
    groups = blocked.shape[0] // pattern.g
    grouped = blocked.reshape(groups, pattern.g, *blocked.shape[1:])
    occupied = (grouped != 0).any(axis=1)  # [groups, K, B, M]
    overfull = occupied.sum(-1) > pattern.n
    if overfull.any():
        group, pos, block = (int(i) for i in np.argwhere(overfull)[0])
        raise PackError(f"weight does not follow {pattern}: filter group {group}, kernel position {pos}, block "
                        f"{block} has {int(occupied[group, pos, block].sum())} non-zeros")
    # Rank positions: occupied first, then by position; the first N (sorted ascending) are stored.
    order = np.argsort(~occupied, axis=-1, kind="stable")[..., :pattern.n]
    index = np.sort(order, axis=-1)  # [groups, K, B, N]
    per_filter = np.repeat(index, pattern.g, axis=0)[:blocked.shape[0]]
    values = np.take_along_axis(blocked, per_filter, axis=-1)[:cout].astype(np.int8)
    return values, pack_bits(index.ravel(), pattern.index_width)


def unpack_block_weight(values: np.ndarray, index_bytes: np.ndarray, shape: tuple[int, ...],
                        pattern: BlockPattern) -> np.ndarray:
    """The int8 weight of ``shape`` from packed values and indices; validates every index."""
    cout, cin = shape[:2]
    kernel = math.prod(shape[2:])
    blocks, groups = math.ceil(cin / pattern.m), math.ceil(cout / pattern.g)
    if values.dtype != np.int8 or values.shape != (cout, kernel, blocks, pattern.n):
        raise PackError(f"values are {values.dtype} {values.shape}, expected int8 {(cout, kernel, blocks, pattern.n)}")
    count = groups * kernel * blocks * pattern.n
    index = unpack_bits(index_bytes, pattern.index_width, count).reshape(groups, kernel, blocks, pattern.n)
    if (index >= pattern.m).any():
        raise PackError(f"an index is out of range for M={pattern.m} (max {int(index.max())})")
    if pattern.n > 1 and (np.diff(index, axis=-1) <= 0).any():
        raise PackError("indices within a block are not strictly ascending (duplicate or unordered)")
    per_filter = np.repeat(index, pattern.g, axis=0)[:cout]
    channel = np.arange(blocks).reshape(1, 1, blocks, 1) * pattern.m + per_filter
    if ((channel >= cin) & (values != 0)).any():
        raise PackError("a non-zero value is stored at a padded channel")
    dense = np.zeros((cout, kernel, blocks * pattern.m), dtype=np.int8)
    np.put_along_axis(dense.reshape(cout, kernel, blocks, pattern.m), per_filter, values, axis=-1)
    return dense[:, :, :cin].transpose(0, 2, 1).reshape(shape).copy()


def pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Little-endian bit-packing of non-negative integers below ``2^width``."""
    if width == 0:
        return np.zeros(0, dtype=np.uint8)
    bits = (values.astype(np.int64)[:, None] >> np.arange(width)) & 1
    return np.packbits(bits.astype(np.uint8).ravel(), bitorder="little")


def unpack_bits(packed: np.ndarray, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` for ``count`` values."""
    if width == 0:
        return np.zeros(count, dtype=np.int64)
    needed = math.ceil(count * width / 8)
    if packed.dtype != np.uint8 or packed.shape != (needed,):
        raise PackError(f"index holds {packed.shape} {packed.dtype}, expected ({needed},) uint8")
    bits = np.unpackbits(packed, bitorder="little")[:count * width].reshape(count, width).astype(np.int64)
    return bits @ (1 << np.arange(width, dtype=np.int64))
