"""Lowering a conv or linear op onto the array: weight slots (rows), filters (columns), pixels (the stream).

A weight ``[Cout, Cin, kh, kw]`` is cut into blocks of the array's M input channels (Cin zero-padded). Each
(kernel position k, block b) needs S *slots*, one array row each, and every slot holds, for every filter, an
int8 value and the index of its channel inside the block: ``rows_needed = kh * kw * ceil(Cin / M) * S``.

- A layer of the array's own pattern N:M uses S = N.
- N':M' with M' dividing M uses S = N' * M / M' (each M-block holds M/M' of its blocks).
- Any other layer (the dense first conv, unstructured or channel baselines) is stored with S = the largest
  number of non-zeros any block holds (a dense block: min(M, Cin)), so its cost is counted honestly.
- On the dense array (M = 1) every weight takes a row, pruned ones included.

A linear layer is the 1x1 case on a 1x1 image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.errors import AcceleratorError
from edgesparse.pack.blocks import pack_block_weight, unpack_bits
from edgesparse.quant.graph import IntOp, Window
from edgesparse.pattern import BlockPattern, parse_pattern


@dataclass(frozen=True)
class LoweredLayer:
    """A weighted op laid out for the array."""

    name: str
    kind: str
    cin: int
    cout: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    slots: int  # S: array rows per (kernel position, block)
    blocks: int  # B = ceil(Cin / M)
    m: int
    values: np.ndarray  # int8 [rows_needed, Cout]
    index: np.ndarray  # int64 [rows_needed, Cout], in [0, M)

    @property
    def rows_needed(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.blocks * self.slots

    def row_block(self) -> tuple[np.ndarray, np.ndarray]:
        """Kernel position and block of every row (rows are ordered kernel position, block, slot)."""
        rows = np.arange(self.rows_needed)
        per_position = self.blocks * self.slots
        return rows // per_position, (rows % per_position) // self.slots

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return Window(self.kernel, self.stride, self.padding).output_size(height, width)


def slots_for(op: IntOp, spec: str | None, config: AcceleratorConfig) -> int:
    """S for this layer on this array (see the module docstring)."""
    weight = op.arrays["weight"]
    if config.m == 1:  # the dense array stores every weight, pruned ones included
        return 1
    if spec is not None:
        pattern = parse_pattern(spec)
        if isinstance(pattern, BlockPattern):
            if pattern.m == config.m:
                return pattern.n
            if config.m % pattern.m == 0:
                return pattern.n * (config.m // pattern.m)
            raise AcceleratorError(f"layer {op.name!r} follows {pattern}, which an array built for M={config.m} "
                                   f"cannot select from (M' must divide M)")
    return max(1, _largest_block_occupancy(weight, config.m))


def _largest_block_occupancy(weight: np.ndarray, m: int) -> int:
    cout, cin = weight.shape[:2]
    rows = (weight.reshape(cout, cin, -1) != 0).transpose(0, 2, 1)
    blocks = math.ceil(cin / m)
    padded = np.zeros(rows.shape[:2] + (blocks * m,), dtype=bool)
    padded[..., :cin] = rows
    return int(padded.reshape(cout, rows.shape[1], blocks, m).sum(-1).max(initial=0))


def lower(op: IntOp, spec: str | None, config: AcceleratorConfig) -> LoweredLayer:
    """Lay a conv or linear op out as array rows of (value, index) per filter."""
    if not op.weighted:
        raise AcceleratorError(f"op {op.name!r} ({op.kind}) does not run on the array")
    weight = op.arrays["weight"]
    if op.kind == "linear":
        weight = weight.reshape(*weight.shape, 1, 1)
    cout, cin, kh, kw = weight.shape
    slots = slots_for(op, spec, config)
    pattern = BlockPattern(min(slots, config.m), config.m)
    values, packed = pack_block_weight(weight, pattern)  # values [Cout, K, B, S]
    index = unpack_bits(packed, pattern.index_width, values.size).reshape(values.shape)
    blocks = values.shape[2]
    rows = kh * kw * blocks * slots
    return LoweredLayer(
        name=op.name, kind=op.kind, cin=cin, cout=cout, kernel=(kh, kw), stride=op.window.stride,
        padding=op.window.padding,
        slots=slots, blocks=blocks, m=config.m,
        values=values.reshape(cout, rows).T.copy(), index=index.reshape(cout, rows).T.copy())


def activation_blocks(x: np.ndarray, layer: LoweredLayer) -> np.ndarray:
    """im2col of one image ``[Cin, H, W]`` (or ``[F]`` for linear) into ``[P, K, B, M]`` activation blocks."""
    if layer.kind == "linear":
        x = x.reshape(-1, 1, 1)
    cin, height, width = x.shape
    if cin != layer.cin:
        raise AcceleratorError(f"layer {layer.name!r} takes {layer.cin} channels, got {cin}")
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    out_h, out_w = layer.output_size(height, width)
    padded = np.zeros((layer.blocks * layer.m, height + 2 * ph, width + 2 * pw), dtype=np.int8)
    padded[:cin, ph:ph + height, pw:pw + width] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw][:, :out_h, :out_w]
    # windows: [Cpad, out_h, out_w, kh, kw] -> [P, K, B, M]
    blocks = windows.reshape(layer.blocks, layer.m, out_h * out_w, kh * kw)
    return np.ascontiguousarray(blocks.transpose(2, 3, 0, 1))
