"""Two executions of one weighted layer on the array, sharing :mod:`edgesparse.accel.schedule`.

- :func:`run_stepped`: the register-level model, advanced one clock at a time and vectorized over PEs. Weights
  shift in from the top; each row's M-wide activation vector enters at the left, skewed by one cycle per row,
  and moves one PE right per cycle; every PE selects ``act[idx]``, multiplies by its weight and adds the partial
  sum arriving from above. It records the value and the cycle of every partial sum leaving the bottom row.
- :func:`run_fast`: the same layer in one pass per column fold: activation blocks gathered for every row,
  weights scattered to their indices, one exact matrix product (float64 on integers below 2^53); cycles come
  from the schedule's closed form.

Both return int64 accumulators ``[pixels, Cout]`` summed over row folds (the post-processing unit's int32
accumulation) and the cycle each final sum left the array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.mapping import LoweredLayer, activation_blocks
from edgesparse.accel.schedule import LayerSchedule


@dataclass(frozen=True)
class FoldInputs:
    """What one fold puts on the array: its weights and indices (top row first) and every pixel's activation
    vector per row, zero-padded to the full R x C array."""

    fold: int  # index into the schedule's folds
    pixels: slice  # the tile's output pixels
    columns: slice  # the filters in this column fold
    weights: np.ndarray  # int64 [R, C]
    index: np.ndarray  # int64 [R, C]
    acts: np.ndarray  # int64 [pixels, R, M]


def iter_folds(layer: LoweredLayer, x: np.ndarray, plan: LayerSchedule,
               config: AcceleratorConfig) -> Iterator[FoldInputs]:
    """Every fold of ``layer`` on image ``x`` in schedule order (tile, column fold, row fold)."""
    blocks = activation_blocks(x, layer)  # [P, K, B, M]
    positions, block_of_row = layer.row_block()
    row_acts = blocks[:, positions, block_of_row, :]  # [P, rows_needed, M]
    R, C, M = config.rows, config.cols, layer.m
    for tile in range(plan.tiles):
        span = plan.tile_range(tile)
        pixels = slice(span.start, span.stop)
        for col_fold in range(plan.col_folds):
            columns = slice(col_fold * C, min(layer.cout, (col_fold + 1) * C))
            width = columns.stop - columns.start
            for row_fold in range(plan.row_folds):
                rows = slice(row_fold * R, min(layer.rows_needed, (row_fold + 1) * R))
                height = rows.stop - rows.start
                weights = np.zeros((R, C), dtype=np.int64)
                index = np.zeros((R, C), dtype=np.int64)
                weights[:height, :width] = layer.values[rows, columns]
                index[:height, :width] = layer.index[rows, columns]
                acts = np.zeros((len(span), R, M), dtype=np.int64)
                acts[:, :height] = row_acts[pixels, rows]
                yield FoldInputs(plan.fold_index(tile, col_fold, row_fold), pixels, columns, weights, index, acts)


def accumulate_folds(results: Iterable[tuple[FoldInputs, np.ndarray, np.ndarray]],
                     plan: LayerSchedule) -> tuple[np.ndarray, np.ndarray]:
    """The layer's accumulators ``[pixels, Cout]`` from each fold's bottom-row sums and local cycles (the
    post-processing unit's int32 accumulation over row folds), with the absolute cycle of every final sum."""
    acc = np.zeros((plan.shape.pixels, plan.shape.cout), dtype=np.int64)
    cycles = np.full(acc.shape, -1, dtype=np.int64)
    for fold, out, when in results:
        width = fold.columns.stop - fold.columns.start
        acc[fold.pixels, fold.columns] += out[:, :width]
        cycles[fold.pixels, fold.columns] = plan.starts[fold.fold] + when[:, :width]
    return acc, cycles


def run_stepped(layer: LoweredLayer, x: np.ndarray, plan: LayerSchedule,
                config: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """Clock the array through every tile and fold of ``layer`` on one image ``x``."""
    return accumulate_folds(
        ((fold, *clock_fold(fold.weights, fold.index, fold.acts, config, int(plan.fold_lengths[fold.fold])))
         for fold in iter_folds(layer, x, plan, config)), plan)


def clock_fold(fold_w: np.ndarray, fold_i: np.ndarray, acts: np.ndarray, config: AcceleratorConfig,
               length: int) -> tuple[np.ndarray, np.ndarray]:
    """One fold, cycle by cycle: returns bottom-row sums per (pixel, column) and their local cycles (the cycle
    whose clock edge latched the sum into the bottom row's register). With P pixels per cycle every register holds
    P lanes: pixel p travels in group p // P, lane p % P."""
    R, C, M, P = config.rows, config.cols, config.m, config.pixels_per_cycle
    row_index = np.arange(R)
    pixels = acts.shape[0]
    groups = -(-pixels // P)
    lanes = np.zeros((groups * P, R, M), dtype=np.int64)
    lanes[:pixels] = acts
    lanes = lanes.reshape(groups, P, R, M).transpose(0, 2, 1, 3)  # [groups, R, P, M]
    weight_reg = np.zeros((R, C), dtype=np.int64)
    index_reg = np.zeros((R, C), dtype=np.int64)
    act_reg = np.zeros((R, C, P, M), dtype=np.int64)
    psum_reg = np.zeros((R, C, P), dtype=np.int64)
    out = np.zeros((groups, P, C), dtype=np.int64)
    when = np.full((groups, P, C), -1, dtype=np.int64)
    columns = np.arange(C)
    for cycle in range(length):
        if cycle < R:  # weight load: row R-1-cycle enters at the top, everything moves down one row
            weight_reg = np.vstack([fold_w[R - 1 - cycle][None], weight_reg[:-1]])
            index_reg = np.vstack([fold_i[R - 1 - cycle][None], index_reg[:-1]])
            continue
        stream = cycle - R
        act_reg[:, 1:] = act_reg[:, :-1]  # activations move one PE to the right
        group = stream - row_index  # row i receives pixel group (stream - i): the skew
        live = (group >= 0) & (group < groups)
        act_reg[:, 0] = 0
        act_reg[live, 0] = lanes[group[live], row_index[live]]
        chosen = np.take_along_axis(act_reg, index_reg[:, :, None, None], axis=3)[..., 0]  # [R, C, P]
        above = np.concatenate([np.zeros((1, C, P), dtype=np.int64), psum_reg[:-1]])
        psum_reg = above + weight_reg[..., None] * chosen  # partial sums move one PE down
        leaving = stream - (R - 1) - columns  # the group whose sums leave column j now
        valid = (leaving >= 0) & (leaving < groups)
        out[leaving[valid], :, columns[valid]] = psum_reg[R - 1, valid]
        when[leaving[valid], :, columns[valid]] = cycle
    return out.reshape(groups * P, C)[:pixels], when.reshape(groups * P, C)[:pixels]


def run_fast(layer: LoweredLayer, x: np.ndarray, plan: LayerSchedule,
             config: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """The layer's accumulators by gather + exact matrix product; cycles from the schedule."""
    blocks = activation_blocks(x, layer)  # [P, K, B, M]
    pixels = blocks.shape[0]
    kernel_positions = layer.kernel[0] * layer.kernel[1]
    # Scatter each slot's value to its index: the lowered dense matrix [K * B * M, Cout] the slots encode.
    positions, block_of_row = layer.row_block()
    target = (positions * layer.blocks + block_of_row).reshape(-1, 1) * layer.m + layer.index
    lowered = np.zeros((kernel_positions * layer.blocks * layer.m, layer.cout), dtype=np.float64)
    np.add.at(lowered, (target, np.broadcast_to(np.arange(layer.cout), target.shape)), layer.values)
    acts = torch.from_numpy(blocks.reshape(pixels, -1).astype(np.float64))
    acc = (acts @ torch.from_numpy(lowered)).numpy().astype(np.int64)
    return acc, plan.output_cycles(config)
