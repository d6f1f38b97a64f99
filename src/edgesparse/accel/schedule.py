"""The one schedule all three views share: folds, their start cycles, DRAM traffic and stalls.

A layer needing ``rows_needed`` array rows and ``Cout`` columns runs in
``folds = ceil(rows_needed / R) * ceil(Cout / C)`` folds, column folds outer, row folds inner. A fold is the
classic weight-stationary sequence, SCALE-Sim's:

    R cycles      weights shift in from the top, one row per cycle;
    T + R + C - 2 pixel p enters row i at cycle R + p + i, reaches PE (i, j) at R + p + i + j, and its partial
                  sum leaves the bottom of column j at cycle 2R - 1 + p + j (skew, fill and drain);

so a fold takes ``2R + C + T - 2`` cycles, T = output pixels. In dense mode this is exactly SCALE-Sim v3's
weight-stationary count, which it reports as ``folds * (2R + C + T - 2) - 1`` (the index of the last cycle).

Memory: DRAM -> weight / input / output buffers at ``dram_bytes_per_cycle``. Fold f's transfer (its weights and
indices; the input feature map with the first fold, or again with every column fold if it does not fit the input
buffer; partial sums spilled to DRAM between row folds if a column fold's int32 partial sums do not fit the
output buffer; the int8 outputs with each column fold's last row fold) overlaps the previous fold's compute
(double buffering): ``start[0] = transfer[0]``, ``start[f+1] = start[f] + max(compute, transfer[f+1])``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgesparse.accel.config import AcceleratorConfig


@dataclass(frozen=True)
class LayerShape:
    """What the schedule needs to know of a weighted layer (no values)."""

    name: str
    rows_needed: int
    cout: int
    pixels: int  # output pixels per image (1 for a linear layer)
    input_bytes: int  # int8 input feature map
    dense_macs: int  # Cout * Cin * kh * kw * pixels: the dense model's work


@dataclass(frozen=True)
class LayerSchedule:
    """Cycles and traffic of one layer."""

    shape: LayerShape
    row_folds: int
    col_folds: int
    fold_cycles: int
    starts: np.ndarray  # int64 [folds]: first cycle of each fold, column folds outer
    transfer_bytes: np.ndarray  # int64 [folds]
    total_cycles: int
    stall_cycles: int
    real_macs: int  # multiplications the PEs actually perform on stored slots

    @property
    def folds(self) -> int:
        return self.row_folds * self.col_folds

    @property
    def dram_bytes(self) -> int:
        return int(self.transfer_bytes.sum())

    @property
    def compute_cycles(self) -> int:
        return self.folds * self.fold_cycles

    def fold_start(self, col_fold: int, row_fold: int) -> int:
        return int(self.starts[col_fold * self.row_folds + row_fold])

    def output_cycles(self, config: AcceleratorConfig) -> np.ndarray:
        """``[pixels, Cout]``: the cycle each final partial sum leaves the array (last row fold of its column)."""
        pixels = np.arange(self.shape.pixels).reshape(-1, 1)
        columns = np.arange(self.shape.cout)
        col_fold, position = columns // config.cols, columns % config.cols
        last = self.starts[col_fold * self.row_folds + self.row_folds - 1]
        return last.reshape(1, -1) + 2 * config.rows - 1 + pixels + position.reshape(1, -1)


def fold_cycles(config: AcceleratorConfig, pixels: int) -> int:
    """SCALE-Sim's weight-stationary fold: R (weight load) + T + R + C - 2 (stream, fill, drain)."""
    return 2 * config.rows + config.cols + pixels - 2


def schedule_layer(shape: LayerShape, config: AcceleratorConfig) -> LayerSchedule:
    """Fold starts, stalls and DRAM bytes of one layer (vectorized over folds)."""
    row_folds = math.ceil(shape.rows_needed / config.rows)
    col_folds = math.ceil(shape.cout / config.cols)
    rows_in = np.minimum(config.rows, shape.rows_needed - np.arange(row_folds) * config.rows)
    cols_in = np.minimum(config.cols, shape.cout - np.arange(col_folds) * config.cols)
    used = cols_in.reshape(-1, 1) * rows_in.reshape(1, -1)  # [col_folds, row_folds] PEs holding a slot
    weight_bytes = np.ceil(used * (8 + config.index_bits) / 8).astype(np.int64)

    transfer = weight_bytes.copy()
    input_fits = shape.input_bytes <= config.input_buffer_kib * 1024
    if input_fits:
        transfer[0, 0] += shape.input_bytes
    else:
        transfer[:, 0] += shape.input_bytes
    partial_bytes = shape.pixels * cols_in * 4
    spills = partial_bytes > config.output_buffer_kib * 1024
    if row_folds > 1:
        transfer[:, 1:] += np.where(spills, 2 * partial_bytes, 0).reshape(-1, 1)  # write, then read back
    transfer[:, -1] += shape.pixels * cols_in  # int8 outputs

    flat = transfer.ravel()
    transfer_cycles = np.ceil(flat / config.dram_bytes_per_cycle).astype(np.int64)
    compute = fold_cycles(config, shape.pixels)
    steps = np.maximum(compute, transfer_cycles[1:])
    starts = np.concatenate([[transfer_cycles[0]], transfer_cycles[0] + np.cumsum(steps)]).astype(np.int64)
    total = int(starts[-1]) + compute
    folds = row_folds * col_folds
    return LayerSchedule(shape, row_folds, col_folds, compute, starts, flat.astype(np.int64), total,
                         total - folds * compute, int(used.sum()) * shape.pixels)
