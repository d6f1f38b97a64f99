# amaranth: UnusedElaboratable=no
"""The output stage (:mod:`edgesparse.rtl.output_stage`) in Amaranth's simulator, driven with the row folds'
partial sums of real lowered layers as the pipelined array delivers them (tags at row 0, column j's sum R - 1 + j
cycles later, folds back to back by the layer unit's recurrence), against the integer reference
(:func:`edgesparse.quant.reference.run_op` on the conv and then the pool): every byte of the output buffer and the
cycle of every write.

(The first line tells Amaranth not to warn about the components the validation tests refuse: never elaborated.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from edgesparse.accel import AcceleratorConfig
from edgesparse.accel.array import row_activations, run_fast
from edgesparse.accel.geometry import LayerShape, fold_geometry
from edgesparse.accel.mapping import lower
from edgesparse.accel.schedule import schedule_layer
from edgesparse.errors import ConfigError
from edgesparse.pattern import BlockPattern
from edgesparse.quant.fixedpoint import requantize
from edgesparse.quant.graph import IntOp
from edgesparse.quant.reference import run_op
from edgesparse.rtl.output_stage import (AVGPOOL_LATENCY, OUTPUT_LATENCY, POOLED_LATENCY, RESIDUAL_LATENCY, OutputStage,
                                         pack_params)


def _conv(config, n, m, cin, cout, size, kernel=3, stride=1, padding=1, seed=0, relu=False, weight=None,
          x=None, bias=None, shift=(36, 40)):
    """A random N:M int8 conv with int32 biases and requantization parameters (results spanning int8, saturating at
    both ends), lowered for ``config``; returns (op, lowered layer, input [1, Cin, H, W], shape)."""
    rng = np.random.default_rng(seed)
    if weight is None:
        weight = rng.integers(-127, 128, size=(cout, cin, kernel, kernel)).astype(np.int8)
        mask = BlockPattern(n, m).mask(torch.from_numpy(rng.random(weight.shape).astype(np.float32)), n / m)
        weight = (weight * mask.numpy()).astype(np.int8)
    if x is None:
        x = rng.integers(-128, 128, size=(1, cin, size, size)).astype(np.int8)
    bias = rng.integers(-2**14, 2**14, cout).astype(np.int32) if bias is None else np.asarray(bias, np.int32)
    arrays = {"weight": weight, "bias": bias, "m": rng.integers(2**30, 2**31, cout).astype(np.int64),
              "shift": rng.integers(*shift, cout).astype(np.int64)}
    op = IntOp("conv", "conv", ["input"], {"kernel": [kernel, kernel], "stride": [stride, stride],
                                           "padding": [padding, padding], "relu": relu}, arrays)
    layer = lower(op, str(BlockPattern(n, m)), config)
    out_hw = layer.output_size(size, size)
    shape = LayerShape("conv", layer.rows_needed, cout, out_hw, (cin, size, size), (kernel, kernel),
                       (stride, stride), cout * cin * kernel * kernel * math.prod(out_hw))
    return op, layer, x, shape


def _row_fold_sums(layer, x, geometry) -> np.ndarray:
    """Each row fold's share of every accumulator: int64 [row_folds, pixels, Cout] (the sums the array's folds
    deliver), vectorized over pixels, rows and channels."""
    row_acts = row_activations(layer, x).astype(np.int64)  # [pixels, rows_needed, M]
    rows = np.arange(layer.rows_needed)
    chosen = row_acts[:, rows.reshape(-1, 1), layer.index]  # [pixels, rows_needed, Cout]
    products = chosen * layer.values.astype(np.int64)
    return np.stack([products[:, geometry.row_slice(f)].sum(axis=1) for f in range(geometry.row_folds)])


def _timeline(geometry, rows: int, gap: int = 0):
    """The cycle each fold's first pixel enters row 0: the layer unit's recurrence with every fold's weights
    present (``s_f = s_{f-1} + max(L_{f-1}, R)``), plus ``gap`` idle cycles between folds."""
    lengths = geometry.stream_lengths()
    steps = np.maximum(lengths[:-1], rows) + gap
    return np.concatenate([[0], np.cumsum(steps)]).astype(np.int64)


def _words(out: np.ndarray, m: int) -> np.ndarray:
    """A layer's int8 output ``[1, Cout, H, W]`` as the next layer's tile buffer: word ``p B + b`` holds channels
    ``[b M, (b + 1) M)`` of pixel p (zeros past Cout); bytes [words, M]."""
    _, cout, height, width = out.shape
    blocks = -(-cout // m)
    padded = np.zeros((blocks * m, height * width), dtype=np.uint8)
    padded[:cout] = out.reshape(cout, -1).astype(np.uint8)
    return padded.T.reshape(height * width * blocks, m)


def _run_stage(config, geometry, partial, op, *, pool=None, gap=0, built=None, window=3, average=None,
               built_average=False, residual=None):
    """Drive an output stage with the row folds' partial sums ``[row_folds, pixels, Cout]``; return the output
    buffer's bytes [words, M] (read back through the window port as the write-back DMA reads it, ``window`` bytes a
    cycle from byte 0 on, so windows straddle words unless ``window`` divides M), the writes {cycle: (address,
    mask)} and the folds' starts. ``built``: the pool the stage has when the layer has none; ``average``: the global
    average pool's (mantissa, shift) (the map's one tile averaged), on a stage built with it (or ``built_average``
    for a layer without); ``residual``: the residual add's (add op, operand bytes [words, M]), the operand written
    into the residual buffer through its window port first."""
    R, C, M = config.rows, config.cols, config.m
    shape = geometry.shape
    out_h, out_w = shape.out_hw
    blocks = -(-shape.cout // M)
    pooled_pixels = shape.pixels if pool is None else len(_pool_completions(shape.out_hw, pool)[0])
    depth = (shape.pixels if residual else 1 if average else pooled_pixels) * blocks  # the operand's words too
    stage = OutputStage(R, C, M, max_groups=geometry.tile_pixels, max_col_folds=geometry.col_folds,
                        out_depth=depth, pool_kernel=pool or built, max_width=max(out_w, 2), window=window,
                        global_average=average is not None or built_average, residual_add=residual is not None)
    starts = _timeline(geometry, R, gap)
    tile_of, col_fold_of, row_fold_of = geometry.positions()
    tags, arrivals = {}, {}
    for fold, start in enumerate(starts.tolist()):
        tile, cf, rf = int(tile_of[fold]), int(col_fold_of[fold]), int(row_fold_of[fold])
        first_pixel = tile * geometry.tile_pixels
        for g in range(int(geometry.tile_sizes[tile])):
            tags[start + g] = (g, cf, int(rf == 0), int(rf == geometry.row_folds - 1))
            for j in range(C):
                channel = cf * C + j
                value = int(partial[rf, first_pixel + g, channel]) if channel < shape.cout else 0
                arrivals.setdefault(start + g + R - 1 + j, {})[j] = value
    end = max(arrivals) + POOLED_LATENCY + AVGPOOL_LATENCY + RESIDUAL_LATENCY + 4
    writes, result = {}, bytearray(depth * M)

    async def bench(ctx):
        for channel in range(shape.cout):
            ctx.set(stage.p_we, 1)
            ctx.set(stage.p_channel, channel)
            ctx.set(stage.p_data, pack_params(op.arrays["bias"][channel], op.arrays["m"][channel],
                                              op.arrays["shift"][channel]))
            await ctx.tick()
        ctx.set(stage.p_we, 0)
        for name, value in (("relu", int(op.relu)), ("height", out_h), ("width", out_w), ("out_base", 0),
                            ("out_blocks", blocks), ("last_col_fold", geometry.col_folds - 1)):
            ctx.set(getattr(stage, name), value)
        if stage.pool_kernel is not None:
            ctx.set(stage.pool, int(pool is not None))
        if residual is not None:
            add, operand = residual
            for name, value in (("add", 1), ("add_m_a", add.attrs["m_a"]), ("add_m_b", add.attrs["m_b"]),
                                ("add_shift", add.attrs["shift"]), ("add_relu", int(add.relu))):
                ctx.set(getattr(stage, name), value)
            flat = operand.tobytes()
            for at in range(0, len(flat), window):
                chunk = flat[at:at + window]
                ctx.set(stage.res_w_row, at // M)
                ctx.set(stage.res_w_pos, at % M)
                ctx.set(stage.res_w_data, int.from_bytes(chunk, "little"))
                ctx.set(stage.res_w_mask, (1 << len(chunk)) - 1)
                await ctx.tick()
            ctx.set(stage.res_w_mask, 0)
        if stage.global_average:
            mult, shift = average or (0, 0)
            for name, value in (("average", int(average is not None)), ("avg_mult", mult), ("avg_shift", shift),
                                ("map_last", shape.pixels - 1)):
                ctx.set(getattr(stage, name), value)
        ctx.set(stage.start, 1)
        await ctx.tick()
        ctx.set(stage.start, 0)
        for cycle in range(end):
            tag = tags.get(cycle)
            ctx.set(stage.entry_live, int(tag is not None))
            if tag is not None:
                for name, value in zip(("group", "col_fold", "first", "last"), tag):
                    ctx.set(getattr(stage, f"entry_{name}"), value)
            sums = arrivals.get(cycle, {})
            ctx.set(stage.psum_in, sum((v & 0xFFFFFFFF) << (32 * j) for j, v in sums.items()))
            ctx.set(stage.valid_in, sum(1 << j for j in sums))
            if ctx.get(stage.out_we):
                writes[cycle] = (ctx.get(stage.out_addr), ctx.get(stage.out_mask))
            await ctx.tick()
        for at in range(0, depth * M, window):
            at = min(at, depth * M - window)  # the last window ends at the buffer's last byte
            ctx.set(stage.r_row, at // M)
            ctx.set(stage.r_pos, at % M)
            await ctx.tick()
            result[at:at + window] = ctx.get(stage.r_data).to_bytes(window, "little")

    simulator = Simulator(stage)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return np.frombuffer(bytes(result), dtype=np.uint8).reshape(depth, M), writes, starts


def _pool_completions(out_hw, kernel):
    """Per pooled pixel (raster order), the map pixel whose arrival completes its window: (rows, cols)."""
    height, width = out_hw
    if kernel == 2:
        py, px = np.meshgrid(np.arange(height // 2), np.arange(width // 2), indexing="ij")
        return (2 * py + 1).ravel(), (2 * px + 1).ravel()
    py, px = np.meshgrid(np.arange((height - 1) // 2 + 1), np.arange((width - 1) // 2 + 1), indexing="ij")
    return np.minimum(2 * py + 1, height - 1).ravel(), np.minimum(2 * px + 1, width - 1).ravel()


def _expected_writes(config, geometry, starts, pool=None, average=False, residual=False) -> dict[int, tuple[int, int]]:
    """{cycle: (address, mask)} of every write: a pixel's bytes OUTPUT_LATENCY cycles after its last column's sum
    of the unit's last row fold (POOLED_LATENCY after the window's completing pixel's; an averaged map's one pixel
    AVGPOOL_LATENCY after its last pixel's would be)."""
    R, C, M = config.rows, config.cols, config.m
    shape = geometry.shape
    blocks = -(-shape.cout // M)
    folds_per_word = M // C
    expected = {}
    for tile in range(geometry.tiles):
        span = geometry.tile_range(tile)
        for cf in range(geometry.col_folds):
            fold = geometry.fold_index(tile, cf, geometry.row_folds - 1)
            width = M if cf == geometry.col_folds - 1 else C  # the last column fold zeroes the rest of its word
            mask = (((1 << width) - 1) << (C * (cf % folds_per_word))) & ((1 << M) - 1)
            last_column = int(starts[fold]) + R - 1 + C - 1 + (RESIDUAL_LATENCY if residual else 0)
            if average:
                expected[last_column + len(span) - 1 + OUTPUT_LATENCY + AVGPOOL_LATENCY] = (cf // folds_per_word,
                                                                                          mask)
            elif pool is None:
                for g, pixel in enumerate(span):
                    expected[last_column + g + OUTPUT_LATENCY] = (pixel * blocks + cf // folds_per_word, mask)
            else:
                rows, cols = _pool_completions(shape.out_hw, pool)
                for pooled, (y, x) in enumerate(zip(rows.tolist(), cols.tolist())):
                    g = y * shape.out_hw[1] + x - span.start
                    if 0 <= g < len(span):
                        expected[last_column + g + POOLED_LATENCY] = (pooled * blocks + cf // folds_per_word, mask)
    return expected


def _check_layer(config, op, layer, x, shape, pool=None, gap=0, built=None, window=3, average=None,
                 built_average=False, residual=None):
    geometry = fold_geometry(shape, config)
    partial = _row_fold_sums(layer, x, geometry)
    acc, _ = run_fast(layer, x[0], schedule_layer(shape, config), config)
    assert np.array_equal(partial.sum(axis=0), acc)  # the row folds' shares add up to the fast model's sums
    buffer, writes, starts = _run_stage(config, geometry, partial, op, pool=pool, gap=gap, built=built,
                                        window=window, average=average, built_average=built_average,
                                        residual=None if residual is None else (residual[0], _words(residual[1],
                                                                                                    config.m)))
    reference = run_op(op, [x])
    if residual is not None:
        reference = run_op(residual[0], [reference, residual[1]])
    if average is not None:
        mult, shift = average
        reference = run_op(IntOp("gap", "avgpool", ["conv"], {"kernel": list(shape.out_hw), "stride": [1, 1],
                                                              "padding": [0, 0], "m": mult, "shift": shift}),
                           [reference])
    if pool is not None:
        stride, padding = [2, 2], [pool - 2] * 2
        reference = run_op(IntOp("pool", "maxpool", ["conv"], {"kernel": [pool, pool], "stride": stride,
                                                               "padding": padding}), [reference])
    expected = _words(reference, config.m)
    buffer = buffer[:len(expected)]  # (a buffer deeper for a residual operand than the averages need)
    bad = np.argwhere(buffer != expected)
    assert not len(bad), (f"byte {bad[0][1]} of word {bad[0][0]}: RTL {buffer[tuple(bad[0])]}, reference "
                          f"{expected[tuple(bad[0])]} ({len(bad)} bytes differ)")
    assert writes == _expected_writes(config, geometry, starts, pool, average is not None, residual is not None)
    return geometry, reference


@pytest.mark.parametrize("built, window", [(None, 3), (3, 16)])
def test_random_layer_with_row_and_column_folds_and_tiles(built, window):
    """A 1:16 3x3 padded conv on a 4x4 array: 5 row folds, 2 column folds (two per 16-byte output word), 3 tiles
    (the last one short), folds back to back; saturation at both ends. Also on a stage with a max pool, off (the
    buffer read back a whole word a cycle)."""
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=1, output_buffer_kib=0.25)
    op, layer, x, shape = _conv(config, 1, 16, cin=32, cout=8, size=6, seed=3)
    geometry, reference = _check_layer(config, op, layer, x, shape, built=built, window=window)
    assert geometry.row_folds >= 2 and geometry.col_folds >= 2 and geometry.tiles >= 2
    assert {-128, 127} <= set(reference.ravel().tolist())


@pytest.mark.parametrize("pool, size", [(2, 8), (2, 7), (3, 7), (3, 6)])
def test_padded_conv_then_max_pool(pool, size):
    """A 3x3 padded conv with ReLU, then a 2x2 (VGG) or 3x3 stride-2 (ResNet) max pool, on even and odd maps; the
    2x2 case at size 8 runs tiles of two output rows (pooled across tiles), with gaps between folds."""
    kib = 0.25 if pool == 2 and size == 8 else 256.0  # 16-pixel tiles: two rows of an 8-wide map
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=2, output_buffer_kib=kib)
    op, layer, x, shape = _conv(config, 2, 16, cin=16, cout=4, size=size, seed=size + pool, relu=True)
    geometry, _ = _check_layer(config, op, layer, x, shape, pool=pool, gap=3 if kib < 1 else 0)
    assert geometry.row_folds >= 2
    assert geometry.tiles == (4 if kib < 1 else 1)


@pytest.mark.parametrize("size, rows, built_only", [(5, 4, False), (1, 16, False), (3, 16, True)])
def test_global_average_pool(size, rows, built_only):
    """A conv whose whole map is averaged (ResNet's head): 5x5 with row and column folds (averages saturating at
    both ends), a single-pixel map (a 1x1 conv) whose units come R cycles apart on a 16-row array (the previous
    unit's averages still on their way as the next map's sums begin); and a layer without the average on a stage
    built with it."""
    config = AcceleratorConfig(rows=rows, cols=4, m=16, n=1)
    kernel = 1 if size == 1 else 3
    op, layer, x, shape = _conv(config, 1, 16, cin=32, cout=8, size=size, kernel=kernel, padding=kernel // 2,
                                seed=15 + size, shift=(34, 37))
    average = None if built_only else (int(np.random.default_rng(5).integers(2**30, 2**31)), 34)
    geometry, reference = _check_layer(config, op, layer, x, shape, average=average, built_average=built_only)
    assert geometry.tiles == 1 and geometry.col_folds == 2
    if size == 5:
        assert geometry.row_folds >= 2 and {-128, 127} <= set(reference.ravel().tolist())
    if size == 1:
        assert geometry.stream_lengths()[0] == 1 and geometry.row_folds == 1


@pytest.mark.parametrize("average, window, rows", [(False, 3, 4), (True, 16, 4), (False, 16, 16)])
def test_residual_add(average, window, rows):
    """A conv whose requantized map gets a residual operand added (rescaled both, ReLU after, results saturating
    at both ends and at 0), on a 5x5 map of 8 channels (two column folds, two per word: the operand's bytes at each
    fold's offset), its operand written into the residual buffer ``window`` bytes a cycle; then ResNet's last block:
    the sum averaged whole (the add ahead of the average pool); and on a 16-row array, one row fold, the two column
    folds' streams back to back (the operand's offset changes between two pixels' reads)."""
    config = AcceleratorConfig(rows=rows, cols=4, m=16, n=1)
    op, layer, x, shape = _conv(config, 1, 16, cin=32 if rows == 4 else 16, cout=8, size=5, seed=31,
                                shift=(34, 37))
    rng = np.random.default_rng(32)
    operand = rng.integers(-128, 128, size=(1, 8, 5, 5)).astype(np.int8)
    add = IntOp("add", "add", ["conv", "shortcut"], {"m_a": int(rng.integers(2**29, 2**30)),
                                                      "m_b": int(rng.integers(2**29, 2**30)), "shift": 30,
                                                      "relu": not average})
    gap = (int(rng.integers(2**30, 2**31)), 34) if average else None
    geometry, reference = _check_layer(config, op, layer, x, shape, residual=(add, operand), average=gap,
                                       window=window)
    assert geometry.row_folds == (1 if rows == 16 else 5) and geometry.col_folds == 2
    if not average:
        assert {0, 127} <= set(reference.ravel().tolist())


def test_single_pixel_map_and_one_row_fold():
    """A 1x1 map (a 1x1 conv over 128 channels: one-pixel tiles, the same accumulator re-read every fold) and a
    layer of one row fold (first and last together: nothing written to the accumulation memory)."""
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=1)
    op, layer, x, shape = _conv(config, 1, 16, cin=128, cout=4, size=1, kernel=1, padding=0, seed=5,
                                shift=(36, 40))
    geometry, reference = _check_layer(config, op, layer, x, shape)
    assert geometry.row_folds >= 2 and shape.pixels == 1 and np.abs(reference).max() < 127
    assert _row_fold_sums(layer, x, geometry)[:-1].any()  # the earlier row folds' shares count
    config = AcceleratorConfig(rows=16, cols=4, m=16, n=1)
    op, layer, x, shape = _conv(config, 1, 16, cin=16, cout=4, size=3, seed=6)
    assert fold_geometry(shape, config).row_folds == 1
    _check_layer(config, op, layer, x, shape)


def test_one_row_array_rereads_the_total_it_is_writing():
    """On a 1-row array a 1x1 map's folds come every cycle: each reads the accumulator the previous one writes in
    the same cycle (the read port's transparency)."""
    config = AcceleratorConfig(rows=1, cols=4, m=16, n=1)
    op, layer, x, shape = _conv(config, 1, 16, cin=64, cout=4, size=1, kernel=1, padding=0, seed=7,
                                shift=(40, 43))
    geometry, reference = _check_layer(config, op, layer, x, shape)
    assert geometry.row_folds >= 4 and np.abs(reference).max() < 127
    assert _row_fold_sums(layer, x, geometry)[:-1].any()


@pytest.mark.parametrize("pool", [None, 2, 3])
def test_units_back_to_back(pool):
    """One row fold, two column folds streaming back to back (no idle cycle): a unit's first pixel takes its own
    column fold's parameters right after the previous unit's last pixel, and enters the pool (if any) right after
    the previous unit's window-completing last pixel."""
    config = AcceleratorConfig(rows=16, cols=4, m=16, n=1)
    op, layer, x, shape = _conv(config, 1, 16, cin=16, cout=8, size=5 if pool == 3 else 4, seed=8 + (pool or 0),
                                relu=pool == 3)
    geometry, _ = _check_layer(config, op, layer, x, shape, pool=pool)
    assert geometry.row_folds == 1 and geometry.col_folds == 2
    assert geometry.stream_lengths()[0] >= config.rows  # s_1 = s_0 + L_0: back to back


def test_accumulators_at_the_int32_extremes():
    """Chosen weights and inputs (every tap 127 x 127 or -128 x 127 over 18 row folds of an 8x8 array) and biases
    that put the biased sums exactly at 2^31 - 1 and -2^31: 127 and -128 results."""
    config = AcceleratorConfig(rows=8, cols=8, m=16, n=16)
    cin, cout, size = 16, 8, 2
    weight = np.full((cout, cin, 3, 3), 127, dtype=np.int8)
    weight[1::2] = -128
    x = np.full((1, cin, size, size), 127, dtype=np.int8)
    op, layer, x, shape = _conv(config, 16, 16, cin, cout, size, weight=weight, x=x,
                                bias=[2**31 - 1 - 4 * cin * 127 * 127, -2**31 + 4 * cin * 128 * 127] * 4,
                                shift=(1, 2))
    geometry, reference = _check_layer(config, op, layer, x, shape)
    assert geometry.row_folds >= 2 and {-128, 127} == set(reference.ravel().tolist())


def test_requantization_of_extreme_totals_against_fixedpoint():
    """Sums at the int32 extremes arriving in two row folds (2^30 + 2^30 - 1 = 2^31 - 1, -2^30 - 2^30 = -2^31),
    with biases and shifts giving mid-range results, against requantize() on the int64 totals."""
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=1)
    op, layer, x, shape = _conv(config, 1, 16, cin=32, cout=4, size=2, seed=9)
    geometry = fold_geometry(shape, config)
    rows_folds = geometry.row_folds
    partial = np.zeros((rows_folds, shape.pixels, shape.cout), dtype=np.int64)
    partial[0] = [[2**30, -2**30, 2**30, -2**30]] * shape.pixels
    partial[1] = [[2**30 - 1, -2**30, 2**30 - 1 - 5, -2**30 + 7]] * shape.pixels
    op.arrays.update(bias=np.array([0, 0, -2**31 + 1, 2**31 - 1], np.int32),
                     m=np.array([2**30, 2**30, 2**31 - 1, 2**31 - 1], np.int64), shift=np.array([54, 54, 33, 33]))
    buffer, writes, starts = _run_stage(config, geometry, partial, op)
    totals = partial.sum(axis=0) + op.arrays["bias"].astype(np.int64)
    expected = requantize(totals, op.arrays["m"], op.arrays["shift"], relu=False)  # [pixels, Cout]
    assert np.array_equal(buffer[:, :shape.cout].view(np.int8), expected)
    assert expected[0].tolist() == [127, -128, -1, 1]
    assert writes == _expected_writes(config, geometry, starts)


def test_output_stage_parameters_are_validated():
    with pytest.raises(ConfigError, match="row count must be a positive integer, got 0"):
        OutputStage(0, 4, 16, 8, 1, 8)
    with pytest.raises(ConfigError, match="C = 3, M = 16"):
        OutputStage(4, 3, 16, 8, 1, 8)
    with pytest.raises(ConfigError, match="C = 32, M = 16"):
        OutputStage(4, 32, 16, 8, 1, 8)
    with pytest.raises(ConfigError, match="one pixel lane .* got 2 lanes"):
        OutputStage(4, 4, 16, 8, 1, 8, lanes=2)
    with pytest.raises(ConfigError, match="segment per column; got 2"):
        OutputStage(4, 4, 16, 8, 1, 8, segments=2)
    with pytest.raises(ConfigError, match="got kernel 4"):
        OutputStage(4, 4, 16, 8, 1, 8, pool_kernel=4)
    with pytest.raises(ConfigError, match="global_average must be True or False, got 1"):
        OutputStage(4, 4, 16, 8, 1, 8, global_average=1)
    with pytest.raises(ConfigError, match="tile depth must be a positive integer, got 1.5"):
        OutputStage(4, 4, 16, 1.5, 1, 8)
    for bad in (0, 32, 2.0):
        with pytest.raises(ConfigError, match=f"read window must be 1 to M = 16 bytes, got {bad}"):
            OutputStage(4, 4, 16, 8, 1, 8, window=bad)
