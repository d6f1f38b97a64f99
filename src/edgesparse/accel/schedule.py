"""The one schedule all three views share: tiles, folds, their start cycles, DRAM traffic and stalls.

A layer's output pixels are cut into tiles of at most ``T`` pixels, so that a tile's int32 partial sums for C
columns fit the output buffer (``T * C * 4`` bytes). For each tile (outer), each column fold, each row fold
(inner), the array runs one *fold*: ``folds = tiles * ceil(rows_needed / R) * ceil(Cout / C)``. A fold is the
classic weight-stationary sequence, SCALE-Sim's:

    R cycles      weights shift in from the top, one row per cycle;
    T + R + C - 2 pixel p enters row i at cycle R + p + i, reaches PE (i, j) at R + p + i + j, and its partial
                  sum leaves the bottom of column j at cycle 2R - 1 + p + j (skew, fill and drain);

so a fold takes ``2R + C + T - 2`` cycles. With one tile (buffers large enough) and in dense mode this is
exactly SCALE-Sim v3's weight-stationary count, which it reports as ``folds * (2R + C + T - 2) - 1`` (the
index of the last cycle).

Memory: DRAM -> weight / input / output buffers at ``dram_bytes_per_cycle``, every buffer double-buffered.
Within a tile, fold f+1's weights and indices (and the int8 outputs of a column fold's last row fold) move
while fold f computes: ``start[f+1] = start[f] + max(compute[f], transfer[f+1])``. The next tile's input rows
(halo included) stream in during the whole current tile, which lasts at least as long as the DRAM needs for
everything it moves. The prologue loads the first tile's input and first fold's weights; whatever of it the
DRAM could move while the previous layer's last tile ran (its idle time) does not stall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.errors import AcceleratorError


@dataclass(frozen=True)
class LayerShape:
    """What the schedule needs to know of a weighted layer (no values)."""

    name: str
    rows_needed: int
    cout: int
    out_hw: tuple[int, int]  # output height and width (1, 1 for a linear layer)
    in_chw: tuple[int, int, int]  # input channels, height, width
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dense_macs: int  # Cout * Cin * kh * kw * pixels: the dense model's work

    @property
    def pixels(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    def input_rows_bytes(self, first_pixel: int, count: int) -> int:
        """Bytes of the input rows (halo included) that output pixels [first, first + count) read."""
        cin, height, width = self.in_chw
        out_w = self.out_hw[1]
        first_row, last_row = first_pixel // out_w, (first_pixel + count - 1) // out_w
        rows = (last_row - first_row) * self.stride[0] + self.kernel[0]
        return cin * width * min(height, rows)


@dataclass(frozen=True)
class LayerSchedule:
    """Cycles and traffic of one layer."""

    shape: LayerShape
    tile_pixels: int
    tiles: int
    row_folds: int
    col_folds: int
    fold_lengths: np.ndarray  # int64 [folds]: cycles of each fold (tiles differ in pixels)
    starts: np.ndarray  # int64 [folds]: first cycle of each fold; order tile, column fold, row fold
    transfer_bytes: np.ndarray  # int64 [folds]
    total_cycles: int
    stall_cycles: int
    real_macs: int  # multiplications the PEs perform on stored slots
    tail_idle_bytes: int = 0  # what the DRAM could still move during the last tile (the next layer's prologue)
    buffer_bytes: dict[str, int] | None = None  # on-chip buffer traffic, see :func:`buffer_traffic`

    @property
    def folds(self) -> int:
        return self.tiles * self.row_folds * self.col_folds

    @property
    def dram_bytes(self) -> int:
        return int(self.transfer_bytes.sum())

    @property
    def compute_cycles(self) -> int:
        return int(self.fold_lengths.sum())

    def fold_index(self, tile: int, col_fold: int, row_fold: int) -> int:
        return (tile * self.col_folds + col_fold) * self.row_folds + row_fold

    def tile_range(self, tile: int) -> range:
        return range(tile * self.tile_pixels, min(self.shape.pixels, (tile + 1) * self.tile_pixels))

    def output_cycles(self, config: AcceleratorConfig) -> np.ndarray:
        """``[pixels, Cout]``: the cycle each final partial sum leaves the array (last row fold of its column)."""
        pixels = np.arange(self.shape.pixels)
        tile, local = pixels // self.tile_pixels, pixels % self.tile_pixels
        columns = np.arange(self.shape.cout)
        col_fold, position = columns // config.cols, columns % config.cols
        last = self.starts[(tile.reshape(-1, 1) * self.col_folds + col_fold.reshape(1, -1)) * self.row_folds
                           + self.row_folds - 1]
        group = local // config.pixels_per_cycle
        return last + 2 * config.rows - 1 + group.reshape(-1, 1) + position.reshape(1, -1)


def fold_cycles(config: AcceleratorConfig, pixels: int | np.ndarray) -> int | np.ndarray:
    """SCALE-Sim's weight-stationary fold: R (weight load) + T + R + C - 2 (stream, fill, drain); with two pixels
    per cycle the stream is ceil(T / 2) pixel pairs."""
    groups = -(-pixels // config.pixels_per_cycle)
    return 2 * config.rows + config.cols + groups - 2


def tile_pixels(shape: LayerShape, config: AcceleratorConfig) -> int:
    """The most output pixels whose int32 partial sums for C columns fit the output buffer and whose input rows
    (halo included) fit half the input buffer (the other half is loading the next tile)."""
    most = int(config.output_buffer_kib * 1024 // (4 * config.cols))
    if most < 1:
        raise AcceleratorError(f"the output buffer ({config.output_buffer_kib} KiB) cannot hold one pixel's "
                               f"partial sums for {config.cols} columns")
    cin, _, width = shape.in_chw
    input_half = config.input_buffer_kib * 1024 / 2
    output_rows = int((input_half // (cin * width) - shape.kernel[0]) // shape.stride[0]) + 1
    if output_rows < 1:
        raise AcceleratorError(
            f"layer {shape.name!r}: {shape.kernel[0]} input rows of {cin}x{width} int8 do not fit half the input "
            f"buffer ({config.input_buffer_kib} KiB); the layer does not fit the buffers")
    return max(1, min(shape.pixels, most, output_rows * shape.out_hw[1]))


@dataclass(frozen=True)
class _Traffic:
    """Tiles, folds and the bytes each fold moves (no timing yet)."""

    per_tile: int
    tile_sizes: np.ndarray  # [tiles]
    row_folds: int
    col_folds: int
    rows_in: np.ndarray  # [row_folds] rows holding a slot
    cols_in: np.ndarray  # [col_folds] columns holding a filter
    used: np.ndarray  # [col_folds, row_folds] PEs holding a slot
    per_fold: np.ndarray  # [tiles, folds per tile]: weights and indices, plus int8 outputs on last row folds
    input_bytes: np.ndarray  # [tiles]: input rows, halo included

    @property
    def prologue_input(self) -> int:
        return int(self.input_bytes[0])

    @property
    def prologue_weights(self) -> int:
        return int(self.per_fold[0, 0])


def _traffic(shape: LayerShape, config: AcceleratorConfig) -> _Traffic:
    per_tile = tile_pixels(shape, config)
    tiles = math.ceil(shape.pixels / per_tile)
    row_folds = math.ceil(shape.rows_needed / config.rows)
    col_folds = math.ceil(shape.cout / config.cols)
    rows_in = np.minimum(config.rows, shape.rows_needed - np.arange(row_folds) * config.rows)
    cols_in = np.minimum(config.cols, shape.cout - np.arange(col_folds) * config.cols)
    tile_sizes = np.minimum(per_tile, shape.pixels - np.arange(tiles) * per_tile)
    used = cols_in.reshape(-1, 1) * rows_in.reshape(1, -1)
    weight_bytes = np.ceil(used * (8 + config.index_bits) / 8).astype(np.int64)
    per_fold = np.broadcast_to(weight_bytes, (tiles, col_folds, row_folds)).copy()
    per_fold[:, :, -1] += tile_sizes.reshape(-1, 1) * cols_in.reshape(1, -1)  # int8 outputs
    input_bytes = np.array([shape.input_rows_bytes(t * per_tile, int(n)) for t, n in enumerate(tile_sizes)])
    return _Traffic(per_tile, tile_sizes, row_folds, col_folds, rows_in, cols_in, used, per_fold.reshape(tiles, -1),
                    input_bytes)


def buffer_traffic(traffic: _Traffic, config: AcceleratorConfig) -> dict[str, int]:
    """Bytes read from and written to the on-chip buffers by one layer.

    - weight buffer: each fold's values and indices are read once into the PEs (every tile);
    - input buffer: every used row receives its M-wide int8 activation vector once per pixel;
    - output buffer: int32 partial sums are written by every row fold and read back by every row fold after
      the first (accumulation), and the post-processing unit reads the final sums once.
    """
    tiles = len(traffic.tile_sizes)
    pixels = int(traffic.tile_sizes.sum())
    weight_reads = int(np.ceil(traffic.used * (8 + config.index_bits) / 8).sum()) * tiles
    rows, columns = int(traffic.rows_in.sum()), int(traffic.cols_in.sum())  # slots and filters of the layer
    input_reads = rows * traffic.col_folds * pixels * config.m
    partial_writes = columns * traffic.row_folds * pixels * 4
    partial_reads = columns * traffic.row_folds * pixels * 4  # (row_folds - 1) accumulations + 1 final read
    return {"weight_buffer_reads": weight_reads, "input_buffer_reads": input_reads,
            "output_buffer_writes": partial_writes, "output_buffer_reads": partial_reads}


def prologue_bytes(shape: LayerShape, config: AcceleratorConfig, with_input: bool) -> int:
    """Bytes a layer needs before its first fold: the first fold's weights, and (``with_input``) its first
    input tile; the part the previous layer prefetched does not stall."""
    traffic = _traffic(shape, config)
    return traffic.prologue_weights + (traffic.prologue_input if with_input else 0)


def schedule_layer(shape: LayerShape, config: AcceleratorConfig, prefetched_bytes: int = 0) -> LayerSchedule:
    """Tile and fold starts, stalls and DRAM bytes of one layer (vectorized over folds).

    ``prefetched_bytes`` of the prologue were already moved while the previous layer ran (see
    :func:`edgesparse.accel.simulate.simulate`); they still count as traffic.
    """
    traffic = _traffic(shape, config)
    per_fold, input_bytes, tile_sizes = traffic.per_fold, traffic.input_bytes, traffic.tile_sizes
    tiles, folds_per_tile = per_fold.shape
    bandwidth = config.dram_bytes_per_cycle
    starts = np.zeros((tiles, folds_per_tile), dtype=np.int64)
    lengths = np.repeat(fold_cycles(config, tile_sizes), folds_per_tile).reshape(tiles, -1)
    prologue = max(0, traffic.prologue_input + traffic.prologue_weights - prefetched_bytes)
    clock = int(np.ceil(prologue / bandwidth))  # the first tile's input and the first weights
    tail_idle = 0
    for tile in range(tiles):
        # Within a tile, fold f+1's weights load while fold f computes (double-buffered weights).
        loads = np.ceil(per_fold[tile, 1:] / bandwidth).astype(np.int64)
        steps = np.maximum(lengths[tile, :-1], loads)
        local = np.concatenate([[0], np.cumsum(steps)])
        starts[tile] = clock + local
        busy = int(local[-1] + lengths[tile, -1])
        moved = per_fold[tile, 1:].sum()
        # The next tile's input (and its first weights) stream in during this whole tile (double-buffered input).
        if tile + 1 < tiles:
            moved += input_bytes[tile + 1] + per_fold[tile + 1, 0]
        dram = int(np.ceil(moved / bandwidth))
        tail_idle = max(0, busy - dram)
        clock += max(busy, dram)
    transfer = per_fold.copy()
    transfer[:, 0] += input_bytes
    total = clock
    return LayerSchedule(shape, traffic.per_tile, tiles, traffic.row_folds, traffic.col_folds, lengths.ravel(),
                         starts.ravel(), transfer.ravel().astype(np.int64), total, total - int(lengths.sum()),
                         int(traffic.used.sum()) * shape.pixels, int(tail_idle * bandwidth),
                         buffer_traffic(traffic, config))
