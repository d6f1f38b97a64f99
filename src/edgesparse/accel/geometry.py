"""One fold geometry: how a layer is cut into pixel tiles and folds, what each fold holds, and the DMA's transfers.

Every view of the array (the schedule, the stepped and fast value views, the memory image, the RTL co-simulation)
takes tiles, fold order, a fold's rows and columns, its segments and its transfers from :func:`fold_geometry`;
none of them re-derives them. Geometry carries no timing: when a fold runs is the schedule's (or the stepped
simulator's own) business.

A layer's output pixels (``batch`` images, image-major) are cut into tiles of at most ``tile_pixels``. For each
tile (outer), each column fold, each row fold (inner) the array runs one fold: ``folds = tiles * row_folds *
col_folds``. A fold of ``h`` rows on an array of ``segments`` S runs ``s`` segments side by side (the most, a power
of two up to S, whose ``R / s`` rows hold ``h``): segment k takes groups ``[k * L, (k + 1) * L)`` of the tile's
``G = ceil(T / P)`` pixel groups, ``L = ceil(G / s)`` (its stream length).

A feature map, in DRAM and in the engine's buffers, holds each pixel's channels padded with zeros to a multiple of
the array's block M (:func:`padded_channels`), pixel-major (HWC), image-major for a batch. A layer that hosts a max
pool (``pool``, :data:`POOLS`) writes one pooled pixel per window, when the map pixel that completes the window
(:meth:`LayerShape.written_pixels`) has been computed; a 2x2-pooled layer's tiles hold an even number of whole output
rows, so that no window straddles two tiles.

The DMA's descriptor list, in order (each transfer rounds up to whole cycles, ``ceil(bytes / rate)``):

    weights(0), input(0), residual(0)
    for each unit u = (tile t, column fold c), in fold order:
        weights of u's row folds (fold 0 excepted)
        if c is the last column fold:
            input(t + 1), residual(t + 1)    if there is a next tile
            output(t - 1)                    if t >= 1 (a tile behind, so that waiting for it never starves the weights)
    output(last tile)

``weights(f)`` moves the whole fold as the memory image holds it (R row words,
:attr:`~edgesparse.accel.config.AcceleratorConfig.fold_weight_bytes`, unused PEs' zeros included). ``input(t)``
carries the input rows the tile's windows read (padding rows excepted; none when the input map is resident),
``residual(t)`` its share of a residual operand read from DRAM (the tile's output pixels of it, for the add the
layer hosts), ``output(t)`` the tile's share of the int8 map(s) the layer writes (pooled, all column folds'
channels; none when resident). Shares of a map are cut proportionally to pixels (floor of the running total):
residual shares to the tile's output pixels, output shares to the pixels it writes (its pooled pixels when pooled;
exact when tiles hold whole windows). Transfers of no bytes (a resident map's) are left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.errors import AcceleratorError
from edgesparse.quant.graph import Window

WEIGHTS, INPUT, RESIDUAL, OUTPUT = "weights", "input", "residual", "output"

POOLS = {Window((2, 2), (2, 2), (0, 0)): 2, Window((3, 3), (2, 2), (1, 1)): 3}
"""The max-pool windows the output stage hosts, by their code (a layer's ``pool``, the descriptor's field)."""
POOL_WINDOWS = {code: window for window, code in POOLS.items()}


def padded_channels(channels: int, block: int) -> int:
    """Channels of a map as the engine stores them: padded with zeros to a multiple of the array's block M."""
    return -(-channels // block) * block


@dataclass(frozen=True)
class LayerShape:
    """What the schedule needs to know of a weighted layer (no values), and where its maps live."""

    name: str
    rows_needed: int
    cout: int
    out_hw: tuple[int, int]  # output height and width (1, 1 for a linear layer)
    in_chw: tuple[int, int, int]  # input channels, height, width
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dense_macs: int  # Cout * Cin * kh * kw * pixels (all images): the dense model's work
    batch: int = 1
    input_resident: bool = False  # the input map is on chip: no input transfers
    output_bytes: int | None = None  # int8 bytes written to DRAM per frame; None: every output once, unpooled
    residual_bytes: int = 0  # a residual operand read from DRAM per frame
    input_staging_bytes: float | None = None  # input-buffer bytes for one tile's input; None: half the buffer
    channel_block: int = 1  # the array's M: maps hold channels padded to a multiple of it
    padding: tuple[int, int] = (0, 0)  # the window's zero padding (height, width)
    pool: int = 0  # the max pool hosted in the output stream: 0 none, else a code of POOLS
    average: bool = False  # a hosted global average pool: one written pixel per image, after the map's last
    residual_add: bool = False  # a hosted residual add (its operand read from DRAM or, resident, from the buffer)

    @property
    def image_pixels(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    @property
    def pixels(self) -> int:
        return self.batch * self.image_pixels

    @property
    def written_bytes(self) -> int:
        """int8 bytes written to DRAM per frame; by default every output pixel once, unpooled, channels padded."""
        if self.output_bytes is None:
            return self.pixels * padded_channels(self.cout, self.channel_block)
        return self.output_bytes

    def input_rows_bytes(self, first_pixel: int, count: int) -> int:
        """Bytes of the input rows that output pixels [first, first + count) read (halo included, padding rows
        excepted): per image the span touches, rows ``[max(0, first * sh - ph), min(H - 1, last * sh - ph + kh -
        1)]`` of its first and last output rows; 0 when the input map is resident."""
        if self.input_resident:
            return 0
        out_w, per_image = self.out_hw[1], self.image_pixels
        total, pixel, end = 0, first_pixel, first_pixel + count
        while pixel < end:  # one span per image the tile touches
            image_end = min(end, (pixel // per_image + 1) * per_image)
            first, last = self.input_rows((pixel % per_image) // out_w, (image_end - 1) % per_image // out_w)
            total += self.input_row_bytes() * max(0, last - first + 1)
            pixel = image_end
        return total

    def input_rows(self, first_row: int, last_row: int) -> tuple[int, int]:
        """The first and last input rows that output rows ``first_row..last_row`` of one image read (the padding's
        rows excepted)."""
        (kh, _), (sh, _), (ph, _) = self.kernel, self.stride, self.padding
        return max(0, first_row * sh - ph), min(self.in_chw[1] - 1, last_row * sh - ph + kh - 1)

    def input_row_bytes(self) -> int:
        """Bytes of one input row of all channels (padded to the block)."""
        return padded_channels(self.in_chw[0], self.channel_block) * self.in_chw[2]

    @property
    def pool_window(self) -> Window | None:
        """The hosted max pool's window (None: no pool)."""
        return POOL_WINDOWS[self.pool] if self.pool else None

    def written_pixels(self) -> np.ndarray:
        """int64 [written pixels]: for every pixel the layer writes (pooled when pooled; image-major raster), the
        output pixel that completes it: itself unpooled; the window's bottom-right pixel, clipped to the map,
        pooled (2x2: (2py + 1, 2px + 1); 3x3 stride 2 padding 1: (min(2py + 1, H - 1), min(2px + 1, W - 1))); with
        a global average pool, one pixel per image: the one that completes the image's last (pooled) pixel."""
        completing = self._completing_pixels()
        return completing.reshape(self.batch, -1)[:, -1] if self.average else completing

    def _completing_pixels(self) -> np.ndarray:
        if not self.pool:
            return np.arange(self.pixels, dtype=np.int64)
        window, (height, width) = self.pool_window, self.out_hw
        pooled_h, pooled_w = window.output_size(height, width)
        (kh, kw), (sh, sw), (ph, pw) = window.kernel, window.stride, window.padding
        y = np.minimum(np.arange(pooled_h) * sh - ph + kh - 1, height - 1)
        x = np.minimum(np.arange(pooled_w) * sw - pw + kw - 1, width - 1)
        images = np.arange(self.batch).reshape(-1, 1, 1) * self.image_pixels
        return (images + (y * width).reshape(1, -1, 1) + x.reshape(1, 1, -1)).ravel().astype(np.int64)


def tile_pixels(shape: LayerShape, config: AcceleratorConfig) -> int:
    """The most output pixels whose int32 partial sums for C columns fit the output buffer and whose input rows
    (halo included) fit one half of the input staging (the other half is loading the next tile): whole output rows,
    all of them when the whole input map fits. A 2x2-pooled
    layer's tiles, when a tile holds less than the whole map, hold an even number of whole output rows (whole
    windows)."""
    most = int(config.output_buffer_kib * 1024 // (4 * config.cols))
    if most < 1:
        raise AcceleratorError(f"the output buffer ({config.output_buffer_kib} KiB) cannot hold one pixel's "
                               f"partial sums for {config.cols} columns")
    if shape.input_resident:
        pixels = max(1, min(shape.pixels, most))
    else:
        half = config.input_buffer_kib * 1024 / 2 if shape.input_staging_bytes is None else shape.input_staging_bytes
        rows_fit = half // shape.input_row_bytes()
        output_rows = int((rows_fit - shape.kernel[0]) // shape.stride[0]) + 1
        if rows_fit >= shape.in_chw[1]:  # the whole map fits (a padded window reads no more rows than it has)
            output_rows = shape.out_hw[0]
        if output_rows < 1:
            raise AcceleratorError(
                f"layer {shape.name!r}: {shape.kernel[0]} input rows of {shape.input_row_bytes()} bytes (channels "
                f"padded to {shape.channel_block}) do not fit half the input buffer ({config.input_buffer_kib} KiB); "
                f"the layer does not fit the buffers")
        pixels = max(1, min(shape.pixels, most, output_rows * shape.out_hw[1]))
    if shape.pool != 2 or pixels == shape.pixels:
        return pixels
    rows = pixels // shape.out_hw[1] // 2 * 2
    if rows < 2:
        raise AcceleratorError(f"layer {shape.name!r}: its 2x2 max pool needs tiles of two whole output rows of "
                               f"{shape.out_hw[1]} pixels; the buffers hold {pixels} pixels")
    return rows * shape.out_hw[1]


def transfer_cycles(size: int, rate: float) -> int:
    """Whole cycles a transfer of ``size`` bytes takes at ``rate`` bytes per cycle: ``ceil(size / rate)`` (the DMA's
    rounding contract at a fractional rate: a transfer never shares a cycle with the next)."""
    return math.ceil(size / rate)


def proportional_shares(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` bytes cut in proportion to ``sizes``: floor of the running total, so the shares add up exactly."""
    ends = np.cumsum(sizes)
    cut = (total * ends) // max(1, int(ends[-1]))
    return np.diff(np.concatenate([[0], cut])).astype(np.int64)


@dataclass(frozen=True)
class FoldGeometry:
    """Tiles, folds, what each fold holds and the DMA's transfers of one layer on one array."""

    shape: LayerShape
    rows: int  # R
    cols: int  # C
    lanes: int  # pixels per cycle
    classic: bool
    tile_pixels: int
    tile_sizes: np.ndarray  # int64 [tiles]
    rows_in: np.ndarray  # int64 [row_folds]: rows holding a slot
    cols_in: np.ndarray  # int64 [col_folds]: columns holding a filter
    segments: np.ndarray  # int64 [row_folds]: segments each row fold runs side by side
    weight_bytes: np.ndarray  # int64 [col_folds, row_folds]: every fold's whole R row words
    input_bytes: np.ndarray  # int64 [tiles]: input rows (halo included)
    residual_shares: np.ndarray  # int64 [tiles]: bytes of the residual operand each tile reads from DRAM
    output_bytes: np.ndarray  # int64 [tiles]: int8 bytes each tile writes (all column folds)

    @property
    def tiles(self) -> int:
        return len(self.tile_sizes)

    @property
    def tile_in_bytes(self) -> np.ndarray:
        """int64 [tiles]: every byte a tile brings in, its input rows and its residual share."""
        return self.input_bytes + self.residual_shares

    @property
    def row_folds(self) -> int:
        return len(self.rows_in)

    @property
    def col_folds(self) -> int:
        return len(self.cols_in)

    @property
    def folds_per_tile(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def folds(self) -> int:
        return self.tiles * self.folds_per_tile

    def fold_index(self, tile: int, col_fold: int, row_fold: int) -> int:
        return (tile * self.col_folds + col_fold) * self.row_folds + row_fold

    def fold_position(self, fold: int) -> tuple[int, int, int]:
        """(tile, column fold, row fold) of a fold index."""
        tile, rest = divmod(fold, self.folds_per_tile)
        return tile, rest // self.row_folds, rest % self.row_folds

    def tile_range(self, tile: int) -> range:
        return range(tile * self.tile_pixels, min(self.shape.pixels, (tile + 1) * self.tile_pixels))

    def row_slice(self, row_fold: int) -> slice:
        return slice(row_fold * self.rows, row_fold * self.rows + int(self.rows_in[row_fold]))

    def col_slice(self, col_fold: int) -> slice:
        return slice(col_fold * self.cols, col_fold * self.cols + int(self.cols_in[col_fold]))

    def positions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tile, column fold, row fold) of every fold, in fold order: three int64 arrays [folds]."""
        folds = np.arange(self.folds)
        return folds // self.folds_per_tile, (folds // self.row_folds) % self.col_folds, folds % self.row_folds

    def tile_groups(self) -> np.ndarray:
        """Pixel groups (P pixels a cycle) of every tile: int64 [tiles]."""
        return -(-self.tile_sizes // self.lanes)

    def stream_lengths(self) -> np.ndarray:
        """Cycles every fold streams, its tile's groups shared among its segments: int64 [folds]."""
        tile, _, row_fold = self.positions()
        return -(-self.tile_groups()[tile] // self.segments[row_fold])

    def groups(self, tile: int) -> int:
        """Pixel groups of one tile."""
        return int(self.tile_groups()[tile])

    def stream_length(self, tile: int, row_fold: int) -> int:
        """Cycles one fold of ``tile`` and ``row_fold`` streams."""
        return int(self.stream_lengths()[self.fold_index(tile, 0, row_fold)])

    def segment_rows(self, row_fold: int) -> int:
        return self.rows // int(self.segments[row_fold])

    def fold_weights(self, values: np.ndarray, index: np.ndarray, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """A fold's ``[R, C]`` weights and indices from the layer's ``[rows_needed, Cout]`` slots: the fold's rows
        at the top of every segment (each segment holds the same rows), zeros elsewhere."""
        _, col_fold, row_fold = self.fold_position(fold)
        rows, columns = self.row_slice(row_fold), self.col_slice(col_fold)
        height, width, seg = rows.stop - rows.start, columns.stop - columns.start, self.segment_rows(row_fold)
        weights = np.zeros((self.rows, self.cols), dtype=np.int64)
        indices = np.zeros((self.rows, self.cols), dtype=np.int64)
        for top in range(0, self.rows, seg):
            weights[top:top + height, :width] = values[rows, columns]
            indices[top:top + height, :width] = index[rows, columns]
        return weights, indices

    def transfers(self) -> list[tuple[str, int, int]]:
        """The DMA's descriptor list: (kind, fold or tile, bytes) in the order the DMA runs them."""
        order: list[tuple[str, int, int]] = [(WEIGHTS, 0, int(self.weight_bytes.flat[0])),
                                             (INPUT, 0, int(self.input_bytes[0])),
                                             (RESIDUAL, 0, int(self.residual_shares[0]))]
        weight_bytes = self.weight_bytes.tolist()
        for unit in range(self.tiles * self.col_folds):
            tile, col_fold = divmod(unit, self.col_folds)
            first = unit * self.row_folds
            order += [(WEIGHTS, first + k, weight_bytes[col_fold][k]) for k in range(self.row_folds) if first + k > 0]
            if col_fold == self.col_folds - 1:
                if tile + 1 < self.tiles:
                    order += [(INPUT, tile + 1, int(self.input_bytes[tile + 1])),
                              (RESIDUAL, tile + 1, int(self.residual_shares[tile + 1]))]
                if tile >= 1:
                    order.append((OUTPUT, tile - 1, int(self.output_bytes[tile - 1])))
        order.append((OUTPUT, self.tiles - 1, int(self.output_bytes[-1])))
        return [item for item in order if item[2] > 0]

    def written_tiles(self) -> np.ndarray:
        """int64 [written pixels]: the tile that completes each pixel the layer writes
        (:meth:`LayerShape.written_pixels`)."""
        return self.shape.written_pixels() // self.tile_pixels


def fold_geometry(shape: LayerShape, config: AcceleratorConfig) -> FoldGeometry:
    """Cut ``shape`` into tiles and folds on ``config``'s array."""
    if shape.batch != config.batch:
        raise AcceleratorError(f"layer {shape.name!r} was planned for batch {shape.batch}, the array runs batch "
                               f"{config.batch}")
    per_tile = tile_pixels(shape, config)
    tiles = math.ceil(shape.pixels / per_tile)
    row_folds = math.ceil(shape.rows_needed / config.rows)
    col_folds = math.ceil(shape.cout / config.cols)
    rows_in = np.minimum(config.rows, shape.rows_needed - np.arange(row_folds) * config.rows)
    cols_in = np.minimum(config.cols, shape.cout - np.arange(col_folds) * config.cols)
    tile_sizes = np.minimum(per_tile, shape.pixels - np.arange(tiles) * per_tile)
    segments = np.array([config.fold_segments(int(h)) for h in rows_in], dtype=np.int64)
    weight_bytes = np.full((col_folds, row_folds), config.fold_weight_bytes, dtype=np.int64)
    input_rows = np.array([shape.input_rows_bytes(t * per_tile, int(n)) for t, n in enumerate(tile_sizes)])
    residual_shares = proportional_shares(shape.residual_bytes, tile_sizes)
    written = np.bincount(shape.written_pixels() // per_tile, minlength=tiles)
    output_bytes = proportional_shares(shape.written_bytes, written)
    return FoldGeometry(shape, config.rows, config.cols, config.pixels_per_cycle, config.classic, per_tile,
                        tile_sizes, rows_in, cols_in, segments, weight_bytes, input_rows.astype(np.int64),
                        residual_shares, output_bytes)
