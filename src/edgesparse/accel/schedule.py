"""The analytic schedule: when every fold streams, when every transfer moves, and a layer's cycles and traffic.

Tiles, folds and transfers come from :mod:`edgesparse.accel.geometry`; this module only times them.

**Pipelined array (the default).** Each PE holds an active weight, a shadow weight and a staging register of the
weight chain (all with their index). Fold f's weights leave the weight buffer and shift down the staging chain
from cycle ``a_f`` on, bottom row first, column j skewed by j cycles, and latch into the shadows of column j at
``a_f + R - 1 + j``. Fold f's stream starts at ``s_f``: pixel group g of segment k enters row i at ``s_f + g + i``
and reaches PE (i, j) at ``s_f + g + i + j``; the first group of a fold switches each PE from active to shadow
as it arrives (the wavefront), and the sum of segment k's group g leaves its bottom row ``(k + 1) R / s - 1``
at column j at cycle ``s_f + g + (k + 1) R / s - 1 + j + d``, d the PE's product stages
(:attr:`~edgesparse.accel.config.AcceleratorConfig.product_stages`). Hence::

    a_f = max(w_f, s_{f-1})                          (weights in the buffer; the shadows free once f-1 streams)
    s_f = max(a_f + R, s_{f-1} + L_{f-1}, i_t)       (shadows loaded; previous stream done; tile t's input in:
                                                      its rows and, for a residual add, its residual share)

with ``w_f`` and ``i_t`` the end cycles of the DMA's transfers. These are *controller cycles*: the array's physical
events happen :data:`~edgesparse.accel.pipeline.FEED_LATENCY` cycles later (the weight buffer's and the feeders'
registered reads), equally for every event, so the model leaves them out of the stream and adds them to the writes.

The output stage accumulates a pixel's sums over row folds, requantizes them and writes the pixel's bytes of a
column fold to the output buffer in cycle ``leave(p, 0) + (C - 1) + FEED_LATENCY + SUM_REGISTER +
OUTPUT_LATENCY``, with ``leave(p, 0)`` the cycle the pixel's final sum (last row fold) leaves column 0 of the column
fold (product stages included; the output stage sees it a register later), deskewed to the last column (C - 1 even
when the fold holds fewer filters). A pooled layer writes one pooled pixel per window in ``leave(p_q, 0) + (C - 1) +
FEED_LATENCY + SUM_REGISTER + POOLED_LATENCY``, p_q the pixel that completes window q
(:meth:`~edgesparse.accel.geometry.LayerShape.written_pixels`); a residual add puts
:data:`~edgesparse.accel.pipeline.RESIDUAL_LATENCY` more before every write, and a layer that hosts a global average
pool writes one pixel per image, :data:`~edgesparse.accel.pipeline.AVGPOOL_LATENCY` after its map's last pixel would
have been written; see :meth:`LayerSchedule.write_cycles`.

The DMA runs the geometry's descriptor list in order: a transfer starts once the previous one ended and its space
is free, and lasts ``ceil(bytes / rate)`` whole cycles (the rounding contract for a fractional rate). Space:
``weights(f)`` needs a weight-buffer slot (the buffer holds ``weight_buffer_folds`` folds; fold f - slots frees its
slot at ``a + R``, when the loader has read its last row word), ``input(t)`` the half that tile t - 2 frees once its
last row read its last vector (``s + L + R - 1`` of t - 2's last fold), ``residual(t)`` nothing (its words of a
buffer that holds the layer's whole operand), and ``output(t)`` waits for tile t's last write (it may start in the
cycle after). The layer ends after its last write, its last transfer and its last stream; the next
layer's first weights may move and shift into the shadows while this one drains.

**Classic array** (``classic``; SCALE-Sim's weight-stationary count). Every fold loads its weights (R cycles),
then streams, fills and drains: ``2R + C + ceil(T / P) - 2`` cycles; within a tile fold f+1's weights (and the
int8 outputs of a column fold's last row fold) move while fold f computes, the next tile's input during the whole
current tile, and the prologue (first input tile and first weights) moves while the previous layer's last tile
left the DRAM idle. With one tile and in dense mode this is exactly SCALE-Sim v3's count, which it reports as
``folds * (2R + C + T - 2) - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import (INPUT, RESIDUAL, WEIGHTS, FoldGeometry, LayerShape, fold_geometry,
                                       transfer_cycles)
from edgesparse.accel.pipeline import (AVGPOOL_LATENCY, FEED_LATENCY, OUTPUT_LATENCY, POOLED_LATENCY, RESIDUAL_LATENCY,
                                       SUM_REGISTER)
from edgesparse.errors import AcceleratorError

NEVER = -(1 << 60)  # "free since forever": a resource no earlier layer holds


@dataclass(frozen=True)
class Boundary:
    """What a layer inherits from the one before it, in cycles relative to its own start (pipelined array). The
    DMA is free from the layer's start: the previous layer ends after its last transfer (and its last write), and
    the controller starts a layer's transfers only from its first cycle on, a resident map's writer's included."""

    shadow_free: int = NEVER  # the previous layer's last fold started streaming (its shadows were taken)


@dataclass(frozen=True)
class LayerSchedule:
    """Cycles and traffic of one layer (cycles relative to the layer's start)."""

    shape: LayerShape
    geometry: FoldGeometry
    starts: np.ndarray  # int64 [folds]: pipelined: the stream start s_f; classic: the fold's first cycle
    fold_lengths: np.ndarray  # int64 [folds]: pipelined: stream cycles L_f; classic: the whole fold
    total_cycles: int
    dram_bytes: int
    real_macs: int  # multiplications the PEs perform on stored slots
    load_starts: np.ndarray | None = None  # int64 [folds]: pipelined: a_f, the fold's first weight shift
    boundary: Boundary = field(default_factory=Boundary)  # pipelined: what the layer started from
    next_boundary: Boundary = field(default_factory=Boundary)  # pipelined: what it leaves the next layer
    tail_idle_bytes: int = 0  # classic: what the DRAM could still move during the last tile
    buffer_bytes: dict[str, int] | None = None  # on-chip buffer traffic, see :func:`buffer_traffic`

    @property
    def tiles(self) -> int:
        return self.geometry.tiles

    @property
    def row_folds(self) -> int:
        return self.geometry.row_folds

    @property
    def col_folds(self) -> int:
        return self.geometry.col_folds

    @property
    def tile_pixels(self) -> int:
        return self.geometry.tile_pixels

    @property
    def folds(self) -> int:
        return self.geometry.folds

    @property
    def compute_cycles(self) -> int:
        return int(self.fold_lengths.sum())

    @property
    def stall_cycles(self) -> int:
        """Cycles the array does not spend on fold lengths (classic) or streams (pipelined)."""
        return self.total_cycles - self.compute_cycles

    def fold_index(self, tile: int, col_fold: int, row_fold: int) -> int:
        return self.geometry.fold_index(tile, col_fold, row_fold)

    def tile_range(self, tile: int) -> range:
        return self.geometry.tile_range(tile)

    def output_cycles(self, config: AcceleratorConfig) -> np.ndarray:
        """``[pixels, Cout]``: the cycle each final partial sum leaves the array (last row fold of its column)."""
        geometry = self.geometry
        pixels = np.arange(self.shape.pixels)
        tile = pixels // geometry.tile_pixels
        columns = np.arange(self.shape.cout)
        col_fold, position = columns // config.cols, columns % config.cols
        last = (tile.reshape(-1, 1) * geometry.col_folds + col_fold.reshape(1, -1)) * geometry.row_folds \
            + geometry.row_folds - 1
        if config.classic:
            group = (pixels % geometry.tile_pixels // config.pixels_per_cycle).reshape(-1, 1)
            return self.starts[last] + 2 * config.rows - 1 + group + position.reshape(1, -1)
        return self.starts[last] + exit_offsets(geometry, config, pixels).reshape(-1, 1) + position.reshape(1, -1)

    def write_cycles(self, config: AcceleratorConfig) -> np.ndarray:
        """int64 ``[written pixels, col_folds]`` (pooled pixels when pooled, image-major raster): the cycle the
        output stage writes each pixel's bytes of each column fold to the output buffer (see the module docstring).
        Pipelined array only: the classic array has no output stage."""
        if config.classic:
            raise AcceleratorError("write cycles are the pipelined engine's; the classic array has no output stage")
        leave = self.output_cycles(config)[:, ::config.cols]  # column 0 of every column fold
        return leave[self.shape.written_pixels()] + write_latency(self.shape, config)


def fold_cycles(config: AcceleratorConfig, pixels: int | np.ndarray) -> int | np.ndarray:
    """SCALE-Sim's weight-stationary fold (the classic array): R (weight load) + T + R + C - 2 (stream, fill,
    drain); with two pixels per cycle the stream is ceil(T / 2) pixel pairs."""
    groups = -(-pixels // config.pixels_per_cycle)
    return 2 * config.rows + config.cols + groups - 2


def exit_offsets(geometry: FoldGeometry, config: AcceleratorConfig, pixels: np.ndarray) -> np.ndarray:
    """Pipelined array: int64 [pixels]: cycles from the stream start of a pixel's last row fold to its final sum
    leaving column 0 (its segment's bottom row ``(k + 1) R / s - 1``, then the product stages)."""
    local = pixels % geometry.tile_pixels
    group = local // config.pixels_per_cycle
    chunk = geometry.stream_lengths()[geometry.fold_index(0, 0, geometry.row_folds - 1)
                                      + (pixels // geometry.tile_pixels) * geometry.folds_per_tile]
    segment = group // chunk
    bottom = (segment + 1) * geometry.segment_rows(geometry.row_folds - 1) - 1
    return group - segment * chunk + bottom + config.product_stages


def write_latency(shape: LayerShape, config: AcceleratorConfig) -> int:
    """Cycles from a pixel's final sum leaving column 0 to the output stage writing its bytes: the deskew to the
    last column, the feed latency of controller cycles, the sum's register, the output stage (pooled or not), the
    global average pool's (when the layer hosts one)."""
    return config.cols - 1 + FEED_LATENCY + SUM_REGISTER + (POOLED_LATENCY if shape.pool else OUTPUT_LATENCY) \
        + (RESIDUAL_LATENCY if shape.residual_add else 0) + (AVGPOOL_LATENCY if shape.average else 0)


def buffer_traffic(geometry: FoldGeometry, config: AcceleratorConfig) -> dict[str, int]:
    """Bytes read from and written to the on-chip buffers by one layer.

    - weight buffer: each fold's R whole row words (values and indices) are read once into the PEs (every tile);
    - input buffer: every used row receives its M-wide int8 activation vector once per pixel;
    - output buffer: int32 partial sums are written by every row fold and read back by every row fold after
      the first (accumulation), and the post-processing unit reads the final sums once.
    """
    pixels = int(geometry.tile_sizes.sum())
    weight_reads = int(geometry.weight_bytes.sum()) * geometry.tiles
    rows, columns = int(geometry.rows_in.sum()), int(geometry.cols_in.sum())  # slots and filters of the layer
    input_reads = rows * geometry.col_folds * pixels * config.m
    partial_writes = columns * geometry.row_folds * pixels * 4
    partial_reads = columns * geometry.row_folds * pixels * 4  # (row_folds - 1) accumulations + 1 final read
    return {"weight_buffer_reads": weight_reads, "input_buffer_reads": input_reads,
            "output_buffer_writes": partial_writes, "output_buffer_reads": partial_reads}


def _classic_fold_bytes(geometry: FoldGeometry) -> np.ndarray:
    """[tiles, folds per tile]: each fold's weights, plus the int8 outputs of a column fold's last row fold."""
    per_fold = np.broadcast_to(geometry.weight_bytes, (geometry.tiles,) + geometry.weight_bytes.shape).copy()
    per_fold[:, :, -1] += geometry.tile_sizes.reshape(-1, 1) * geometry.cols_in.reshape(1, -1)
    return per_fold.reshape(geometry.tiles, -1)


def prologue_bytes(shape: LayerShape, config: AcceleratorConfig, with_input: bool) -> int:
    """Classic array: bytes a layer needs before its first fold: the first fold's weights, and (``with_input``)
    its first input tile; the part the previous layer prefetched does not stall."""
    geometry = fold_geometry(shape, config)
    return int(_classic_fold_bytes(geometry)[0, 0]) + (int(geometry.tile_in_bytes[0]) if with_input else 0)


def _schedule_classic(shape: LayerShape, config: AcceleratorConfig, prefetched_bytes: int) -> LayerSchedule:
    geometry = fold_geometry(shape, config)
    per_fold, input_bytes = _classic_fold_bytes(geometry), geometry.tile_in_bytes  # input and residual as one
    tiles, folds_per_tile = per_fold.shape
    bandwidth = config.dram_bytes_per_cycle
    starts = np.zeros((tiles, folds_per_tile), dtype=np.int64)
    lengths = np.repeat(fold_cycles(config, geometry.tile_sizes), folds_per_tile).reshape(tiles, -1)
    prologue = max(0, int(input_bytes[0]) + int(per_fold[0, 0]) - prefetched_bytes)
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
    used = int((geometry.cols_in.reshape(-1, 1) * geometry.rows_in.reshape(1, -1)).sum())
    return LayerSchedule(shape, geometry, starts.ravel(), lengths.ravel(), clock,
                         int(per_fold.sum() + input_bytes.sum()), used * shape.pixels,
                         tail_idle_bytes=int(tail_idle * bandwidth), buffer_bytes=buffer_traffic(geometry, config))


def _schedule_pipelined(shape: LayerShape, config: AcceleratorConfig, boundary: Boundary) -> LayerSchedule:
    geometry = fold_geometry(shape, config)
    R, rate, slots = config.rows, config.dram_bytes_per_cycle, config.weight_buffer_folds
    folds, row_folds = geometry.folds, geometry.row_folds
    tile_of = geometry.positions()[0].tolist()
    lengths = geometry.stream_lengths().tolist()
    weights_end = [None] * folds  # None: not moved yet
    # A tile's input is in when its input rows and its residual share are (0 bytes: on chip already).
    input_end = [None if size > 0 else 0 for size in geometry.tile_in_bytes.tolist()]
    has_residual = (geometry.residual_shares > 0).tolist()
    load, stream = [0] * folds, [0] * folds
    # Per tile: cycles from its last fold's stream start to its last write (-1: a tile that completes no write).
    after = np.full(geometry.tiles, -1, dtype=np.int64)
    np.maximum.at(after, geometry.written_tiles(), exit_offsets(geometry, config, shape.written_pixels()))
    write_after = np.where(after >= 0, after + write_latency(shape, config), -1).tolist()
    timed = 0  # folds whose a_f and s_f are known

    def time_folds() -> None:
        nonlocal timed
        while timed < folds and weights_end[timed] is not None and input_end[tile_of[timed]] is not None:
            f = timed
            load[f] = max(weights_end[f], stream[f - 1] if f else boundary.shadow_free)
            stream[f] = max(load[f] + R, stream[f - 1] + lengths[f - 1] if f else 0, input_end[tile_of[f]])
            timed += 1

    def last_write(tile: int) -> int:
        """The cycle the output stage writes tile ``tile``'s last bytes (its last column fold's last pixel)."""
        f = (tile + 1) * geometry.folds_per_tile - 1
        if f >= timed:
            raise AssertionError(f"layer {shape.name!r}: tile {tile}'s output queued before its folds could run")
        return stream[f] + write_after[tile]

    def free_at(kind: str, index: int) -> int:
        if kind == WEIGHTS:
            return load[index - slots] + R if index >= slots else NEVER
        if kind == INPUT:
            if index < 2:
                return 0
            last = geometry.fold_index(index - 2, geometry.col_folds - 1, row_folds - 1)
            return stream[last] + lengths[last] + R - 1
        if kind == RESIDUAL:  # its own words of a buffer that holds the layer's whole operand
            return 0
        return last_write(index) + 1

    dma = 0
    for kind, index, size in geometry.transfers():
        dma = max(dma, free_at(kind, index)) + transfer_cycles(size, rate)
        if kind == WEIGHTS:
            weights_end[index] = dma
        elif kind == RESIDUAL or kind == INPUT and not has_residual[index]:
            input_end[index] = dma
        time_folds()
    # The layer ends after its last transfer, its last write and its last stream (a pooled layer's trailing rows,
    # which no window keeps, may stream after its last write).
    end = max(dma, max(last_write(tile) for tile in range(geometry.tiles) if write_after[tile] >= 0) + 1,
              stream[-1] + lengths[-1])
    used = int((geometry.cols_in.reshape(-1, 1) * geometry.rows_in.reshape(1, -1)).sum())
    return LayerSchedule(shape, geometry, np.array(stream, dtype=np.int64), np.array(lengths, dtype=np.int64), end,
                         int(geometry.weight_bytes.sum()) * geometry.tiles + int(geometry.tile_in_bytes.sum())
                         + int(geometry.output_bytes.sum()), used * shape.pixels, np.array(load, dtype=np.int64),
                         boundary, Boundary(stream[-1] - end), buffer_bytes=buffer_traffic(geometry, config))


def schedule_layer(shape: LayerShape, config: AcceleratorConfig, prefetched_bytes: int = 0,
                   boundary: Boundary = Boundary()) -> LayerSchedule:
    """Fold starts, traffic and cycles of one layer. Classic array: ``prefetched_bytes`` of the prologue were
    moved while the previous layer ran; pipelined array: ``boundary`` is what the previous layer left."""
    if config.classic:
        return _schedule_classic(shape, config, prefetched_bytes)
    return _schedule_pipelined(shape, config, boundary)
