"""Two executions of one weighted layer on the array.

- :func:`run_stepped`: the register-level model, advanced one clock at a time and vectorized over PEs. Each row's
  M-wide activation vector enters at the left, skewed by one cycle per row, and moves one PE right per cycle;
  every PE selects ``act[idx]``, multiplies by its weight and adds the partial sum arriving from above. It records
  the value and the cycle of every partial sum leaving a bottom row. On the pipelined array
  (:func:`clock_layer`) it clocks the whole layer as one machine: its own DMA runs the geometry's descriptor list
  against its own buffer flags, its own loader shifts weights into the shadow registers, and its own controller
  starts each fold's stream; nothing is taken from the schedule, which must come out equal. On the classic array
  (:func:`clock_fold`) it clocks fold by fold at the schedule's fold starts (SCALE-Sim's contract).
- :func:`run_fast`: the same layer by gather and one exact matrix product (float64 on integers below 2^53);
  cycles come from the schedule.

Both return int64 accumulators ``[pixels, Cout]`` summed over row folds (the post-processing unit's int32
accumulation) and the cycle each final sum left the array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import INPUT, RESIDUAL, WEIGHTS, LayerShape, fold_geometry, transfer_cycles
from edgesparse.accel.mapping import LoweredLayer, activation_blocks
from edgesparse.accel.packing import pack_two
from edgesparse.accel.schedule import Boundary, LayerSchedule, write_latency
from edgesparse.errors import AcceleratorError


def lane_products(weights: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Every PE's products ``[R, C, P]`` of its weight ``[R, C]`` and its selected activations ``[R, C, P]``: one
    product per lane, or with two lanes both from one packed multiply, as the PE computes them."""
    if chosen.shape[-1] == 1:
        return weights[..., None] * chosen
    low, high = pack_two(weights, chosen[..., 0], chosen[..., 1])
    return np.stack([low, high], axis=-1)


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


def image_blocks(layer: LoweredLayer, x: np.ndarray) -> np.ndarray:
    """Activation blocks ``[pixels, K, B, M]`` of one image or a batch (image-major pixels)."""
    single = 1 if layer.kind == "linear" else 3
    images = x[None] if x.ndim == single else x
    return np.concatenate([activation_blocks(image, layer) for image in images])


def row_activations(layer: LoweredLayer, x: np.ndarray) -> np.ndarray:
    """Every pixel's M-wide activation vector for every slot row: ``[pixels, rows_needed, M]``."""
    positions, block_of_row = layer.row_block()
    return image_blocks(layer, x)[:, positions, block_of_row, :]


def iter_folds(layer: LoweredLayer, x: np.ndarray, plan: LayerSchedule,
               config: AcceleratorConfig) -> Iterator[FoldInputs]:
    """Every fold of ``layer`` on ``x`` (an image or a batch) in schedule order (tile, column fold, row fold)."""
    row_acts = row_activations(layer, x)  # [P, rows_needed, M]
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
    """Clock the array through every tile and fold of ``layer`` on ``x``. The pipelined array takes only the
    plan's shape and boundary (what the previous layer left), never its timing."""
    if not config.classic:
        acc, cycles, _ = clock_layer(layer, x, plan.shape, config, plan.boundary)
        return acc, cycles
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
        psum_reg = above + lane_products(weight_reg, chosen)  # partial sums move one PE down
        leaving = stream - (R - 1) - columns  # the group whose sums leave column j now
        valid = (leaving >= 0) & (leaving < groups)
        out[leaving[valid], :, columns[valid]] = psum_reg[R - 1, valid]
        when[leaving[valid], :, columns[valid]] = cycle
    return out.reshape(groups * P, C)[:pixels], when.reshape(groups * P, C)[:pixels]


def run_fast(layer: LoweredLayer, x: np.ndarray, plan: LayerSchedule,
             config: AcceleratorConfig) -> tuple[np.ndarray, np.ndarray]:
    """The layer's accumulators by gather + exact matrix product; cycles from the schedule."""
    blocks = image_blocks(layer, x)  # [P, K, B, M]
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


NOT_YET = np.iinfo(np.int64).max  # an event that has not happened (cycles may be negative: before the layer starts)


def _next_cycle(cycle: int, quiet: bool, thresholds: tuple) -> int:
    """The next cycle worth clocking. While the array is empty and no weights shift, nothing changes until the DMA
    ends a transfer or a time the DMA, loader or controller waits for comes: skip straight to it."""
    if not quiet:
        return cycle + 1
    times = [np.asarray(t).ravel() for t in thresholds if t is not None]
    later = np.concatenate(times)
    later = later[later > cycle]
    return int(later.min()) if len(later) else cycle + 1


@dataclass(frozen=True)
class LayerClock:
    """What the stepped pipelined array measured of a layer, relative to the layer's start."""

    total_cycles: int  # the layer's last write happened and its last transfer ended
    stream_starts: np.ndarray  # int64 [folds]: the cycle each fold's first group entered row 0
    load_starts: np.ndarray  # int64 [folds]: the cycle each fold's first weight word left the weight buffer
    next_boundary: Boundary
    write_cycles: np.ndarray  # int64 [written pixels, col_folds]: the cycle the output stage wrote each pixel's bytes


def clock_layer(layer: LoweredLayer, x: np.ndarray, shape: LayerShape, config: AcceleratorConfig,
                boundary: Boundary = Boundary()) -> tuple[np.ndarray, np.ndarray, LayerClock]:
    """Clock the pipelined array through a whole layer: its DMA, buffers, weight loader, controller and PEs.

    Per cycle, in this order: the DMA completes a transfer whose last cycle has passed and starts the next one of
    the descriptor list when its space is free (a weight slot freed by the loader, an input half freed when the
    bottom row read its tile's last vector, a tile's output once the output stage has written its last bytes); the
    controller starts the next fold's stream once the previous stream ended, the fold's shadows are loaded and its
    tile's input is in; the loader starts shifting the next fold's weights once they are in the buffer and the
    previous fold has begun streaming (its shadows taken); then every register of the array latches. The PEs'
    product stages d (``config.product_stages``) delay every sum equally: a partial sum is computed here in the
    cycle its activation reaches the PE and leaves the array (is recorded) d cycles later. Once the final sums at
    column 0 of every pixel a tile writes (the pixels completing its pooling windows when pooled) have left, in
    every column fold, the output stage's writes of the tile are known: each such sum's recorded cycle plus
    :func:`~edgesparse.accel.schedule.write_latency`. Returns the accumulators ``[pixels, Cout]``, the cycle each
    final sum left the array, and the layer's measured timing (with every write's cycle)."""
    geometry = fold_geometry(shape, config)
    R, C, M, P = config.rows, config.cols, layer.m, config.pixels_per_cycle
    row_acts = row_activations(layer, x).astype(np.int64)  # [pixels, rows_needed, M]
    folds = geometry.folds
    tile_of, col_fold_of, row_fold_of = geometry.positions()
    seg_rows = R // geometry.segments[row_fold_of]
    groups, lengths = geometry.tile_groups(), geometry.stream_lengths()
    last_row_fold = row_fold_of == geometry.row_folds - 1
    rows, lanes, columns = np.arange(R), np.arange(P), np.arange(C)

    acc = np.zeros((shape.pixels, shape.cout), dtype=np.int64)
    cycles = np.full(acc.shape, -1, dtype=np.int64)
    released = np.full(geometry.tiles, -1, dtype=np.int64)  # the cycle a tile's input half was freed
    # The output stage: a tile's writes are known once the column-0 final sums of the pixels it writes have left.
    written, written_tile = shape.written_pixels(), geometry.written_tiles()
    writes = np.zeros(shape.pixels, dtype=bool)
    writes[written] = True
    awaited = np.bincount(written_tile, minlength=geometry.tiles) * geometry.col_folds  # sums still to leave
    writing = awaited > 0  # tiles that write something
    last_write = np.full(geometry.tiles, NOT_YET, dtype=np.int64)  # the cycle a tile's last bytes were written
    latency = write_latency(shape, config)
    finals = 0  # final sums (last row fold) that have left, written or not

    # DMA: the descriptor list, run in order.
    queue, next_item, in_flight, flight_end, dma_last = geometry.transfers(), 0, None, 0, 0
    weights_in = np.zeros(folds, dtype=bool)
    input_in = geometry.tile_in_bytes == 0  # nothing to move: on chip from the start
    has_residual = geometry.residual_shares > 0  # a tile's input is in once its residual share is
    slot_freed = np.full(folds, NOT_YET, dtype=np.int64)  # the cycle a fold's weight-buffer slot became free
    # Loader and controller.
    load_at = np.zeros(folds, dtype=np.int64)
    load_started = np.zeros(folds, dtype=bool)
    stream_at = np.full(folds, -1, dtype=np.int64)
    loaded = np.zeros(folds, dtype=bool)
    next_load = next_stream = 0
    streaming = -1
    words: dict[int, np.ndarray] = {}  # fold -> [R, C] values and indices being shifted
    # Registers.
    staging_w = np.zeros((R, C), dtype=np.int64)
    staging_i = np.zeros((R, C), dtype=np.int64)
    shadow_w = np.zeros((R, C), dtype=np.int64)
    shadow_i = np.zeros((R, C), dtype=np.int64)
    shadow_fold = np.full((R, C), -1, dtype=np.int64)
    active_w = np.zeros((R, C), dtype=np.int64)
    active_i = np.zeros((R, C), dtype=np.int64)
    active_fold = np.full((R, C), -1, dtype=np.int64)
    act_reg = np.zeros((R, C, P, M), dtype=np.int64)
    act_fold = np.full((R, C), -1, dtype=np.int64)
    act_pixel = np.full((R, C, P), -1, dtype=np.int64)
    psum_reg = np.zeros((R, C, P), dtype=np.int64)
    entry_fold = np.full(R, -1, dtype=np.int64)  # what row i receives this cycle: row 0's entry of i cycles ago
    entry_group = np.zeros(R, dtype=np.int64)

    def space_free(kind: str, index: int, cycle: int) -> bool:
        if kind == WEIGHTS:
            return index < config.weight_buffer_folds or slot_freed[index - config.weight_buffer_folds] <= cycle
        if kind == INPUT:
            return cycle >= 0 if index < 2 else 0 <= released[index - 2] <= cycle
        if kind == RESIDUAL:  # its own words of a buffer holding the layer's whole operand
            return cycle >= 0
        return last_write[index] < cycle

    def shifting_soon(at: int) -> bool:
        """A weight load still shifts a column at cycle ``at`` (or later: its last column latches at a + R + C - 2)."""
        return bool(load_started.any()) and int(load_at[load_started].max()) + R + C - 2 >= at

    # Nothing can take longer than every transfer and every fold (load, stream, fill, drain) one after another.
    cycle_limit = 2 * (sum(transfer_cycles(size, config.dram_bytes_per_cycle) for *_, size in queue)
                       + int((2 * R + C + lengths).sum())) + 64
    cycle = 0
    while True:
        if cycle > cycle_limit:
            raise AcceleratorError(f"layer {shape.name!r}: the stepped array ran past {cycle_limit} cycles "
                                   f"(fold {next_stream} of {folds} waiting to stream)")
        # DMA.
        while True:
            if in_flight is not None:
                if cycle < flight_end:
                    break
                kind, index = in_flight
                if kind == WEIGHTS:
                    weights_in[index] = True
                elif kind == RESIDUAL or kind == INPUT and not has_residual[index]:
                    input_in[index] = True
                in_flight, dma_last = None, flight_end
            if next_item == len(queue) or not space_free(*queue[next_item][:2], cycle):
                break
            kind, index, size = queue[next_item]
            in_flight, flight_end, next_item = (kind, index), cycle + transfer_cycles(size, config.dram_bytes_per_cycle), \
                next_item + 1
        # Controller.
        if streaming >= 0 and cycle >= stream_at[streaming] + lengths[streaming]:
            streaming = -1
        if (streaming < 0 and cycle >= 0 and next_stream < folds and loaded[next_stream]
                and input_in[tile_of[next_stream]]):
            streaming, stream_at[next_stream] = next_stream, cycle
            next_stream += 1
        # Loader.
        if (next_load < folds and weights_in[next_load]
                and (cycle >= boundary.shadow_free if next_load == 0 else 0 <= stream_at[next_load - 1] <= cycle)):
            load_at[next_load], load_started[next_load] = cycle, True
            words[next_load] = np.stack(geometry.fold_weights(layer.values, layer.index, next_load))
            next_load += 1
        # The array: row 0's entry, skewed down the rows.
        entry_fold[1:], entry_group[1:] = entry_fold[:-1].copy(), entry_group[:-1].copy()
        if streaming >= 0:
            entry_fold[0], entry_group[0] = streaming, cycle - stream_at[streaming]
        else:
            entry_fold[0] = -1
        live = entry_fold >= 0
        if live.any() or (act_fold >= 0).any():
            fold_of_row = np.maximum(entry_fold, 0)
            seg = seg_rows[fold_of_row]
            group = rows // seg * lengths[fold_of_row] + entry_group
            slot = rows % seg
            first_pixel = tile_of[fold_of_row] * geometry.tile_pixels
            local = group.reshape(-1, 1) * P + lanes
            valid = live.reshape(-1, 1) & (group.reshape(-1, 1) < groups[tile_of[fold_of_row]].reshape(-1, 1)) \
                & (local < geometry.tile_sizes[tile_of[fold_of_row]].reshape(-1, 1))
            pixel = np.where(valid, first_pixel.reshape(-1, 1) + local, -1)
            has_row = slot < geometry.rows_in[row_fold_of[fold_of_row]]
            source_row = row_fold_of[fold_of_row] * R + slot
            vectors = np.zeros((R, P, M), dtype=np.int64)
            take = valid & has_row.reshape(-1, 1)
            vectors[take] = row_acts[pixel[take], np.broadcast_to(source_row.reshape(-1, 1), take.shape)[take]]
            act_reg[:, 1:], act_fold[:, 1:], act_pixel[:, 1:] = act_reg[:, :-1], act_fold[:, :-1], act_pixel[:, :-1]
            act_reg[:, 0], act_fold[:, 0] = vectors, np.where(live & valid.any(axis=1), entry_fold, -1)
            act_pixel[:, 0] = pixel
            switching = (act_fold >= 0) & (act_fold != active_fold)
            if (shadow_fold[switching] != act_fold[switching]).any():
                raise AssertionError(f"layer {shape.name!r}: a fold's wavefront reached a PE before its shadow "
                                     f"weights at cycle {cycle}")
            active_w[switching], active_i[switching] = shadow_w[switching], shadow_i[switching]
            active_fold[switching] = act_fold[switching]
            chosen = np.take_along_axis(act_reg, active_i[:, :, None, None], axis=3)[..., 0]  # [R, C, P]
            pe_seg = seg_rows[np.maximum(act_fold, 0)]
            above = np.concatenate([np.zeros((1, C, P), dtype=np.int64), psum_reg[:-1]])
            above[(rows.reshape(-1, 1) % pe_seg) == 0] = 0  # a segment's top row starts a new chain
            psum_reg = above + lane_products(active_w, chosen)
            bottom = ((rows.reshape(-1, 1) % pe_seg) == pe_seg - 1) & (act_fold >= 0)
            bottom &= columns < geometry.cols_in[col_fold_of[np.maximum(act_fold, 0)]]
            leaving = bottom[..., None] & (act_pixel >= 0)
            left_at = cycle + config.product_stages  # the sum's product stages: it leaves d cycles later
            if leaving.any():
                pe_rows, pe_cols, pe_lanes = np.nonzero(leaving)
                fold_left = act_fold[pe_rows, pe_cols]
                channel = col_fold_of[fold_left] * C + pe_cols
                pixel_left = act_pixel[pe_rows, pe_cols, pe_lanes]
                np.add.at(acc, (pixel_left, channel), psum_reg[pe_rows, pe_cols, pe_lanes])
                cycles[pixel_left, channel] = left_at
                finals += int(last_row_fold[fold_left].sum())
                final = last_row_fold[fold_left] & (pe_cols == 0) & writes[pixel_left]
                if final.any():
                    np.subtract.at(awaited, tile_of[fold_left[final]], 1)
                    for tile in np.unique(tile_of[fold_left[final]]):
                        if awaited[tile] == 0:
                            last_write[tile] = cycles[written[written_tile == tile], ::C].max() + latency
            # The bottom row read the last vector of a tile's last fold: its input half is free.
            f_bottom = entry_fold[R - 1]
            if f_bottom >= 0 and entry_group[R - 1] == lengths[f_bottom] - 1 \
                    and f_bottom % geometry.folds_per_tile == geometry.folds_per_tile - 1:
                released[tile_of[f_bottom]] = cycle + 1
        # Weight chain (after the PEs read this cycle's shadows): column j of a load shifts during [a + j, a + j + R),
        # bottom row's word first, and latches into the shadows on its last shift.
        started = np.flatnonzero(load_started)
        if len(started):
            which = np.searchsorted(load_at[started], cycle - columns, side="right") - 1
            step = cycle - columns - load_at[started[np.maximum(which, 0)]]
            shifting = (which >= 0) & (step < R)
            if shifting.any():
                cols = np.flatnonzero(shifting)
                fold_of_col = started[which[cols]]
                live_folds, slot_of_col = np.unique(fold_of_col, return_inverse=True)
                stack = np.stack([words[int(f)] for f in live_folds])  # [loads, 2, R, C]: at most ceil(C / R) + 1
                word = stack[slot_of_col, :, R - 1 - step[cols], cols]  # [columns, 2]
                staging_w[1:, cols], staging_i[1:, cols] = staging_w[:-1, cols], staging_i[:-1, cols]
                staging_w[0, cols], staging_i[0, cols] = word[:, 0], word[:, 1]
                latch = cols[step[cols] == R - 1]
                shadow_w[:, latch], shadow_i[:, latch] = staging_w[:, latch], staging_i[:, latch]
                shadow_fold[:, latch] = started[which[latch]]
                if shifting[0] and step[0] == R - 1:
                    loaded[started[which[0]]] = True  # seen by the controller from the next cycle on
                    slot_freed[started[which[0]]] = cycle + 1  # its buffer slot's last word was read this cycle
                for fold in started[which[latch[latch == C - 1]]]:
                    del words[int(fold)]
        if next_stream == folds and finals == acc.size and (last_write[writing] <= cycle).all() \
                and next_item == len(queue) and in_flight is None:
            break
        cycle = _next_cycle(cycle, quiet=streaming < 0 and not (entry_fold >= 0).any() and not (act_fold >= 0).any()
                            and not shifting_soon(cycle + 1),
                            thresholds=(flight_end if in_flight is not None else None,
                                        slot_freed[slot_freed < NOT_YET], released,
                                        last_write[last_write < NOT_YET] + 1, 0, boundary.shadow_free))
    total = max(int(last_write[writing].max()) + 1, dma_last, int(stream_at[-1] + lengths[-1]))
    timing = LayerClock(total, stream_at, load_at, Boundary(int(stream_at[-1]) - total),
                        cycles[written, ::C] + latency)
    return acc, cycles, timing
