# amaranth: UnusedElaboratable=no
"""The layer engine's RTL components against independent Python references, in Amaranth's simulator: the
post-processing unit (requantization, max pools, residual add, global average pool) against
:mod:`edgesparse.quant.fixedpoint` / :mod:`edgesparse.quant.reference` on random and edge values; the activation
feeder against :func:`edgesparse.rtl.cosim.stream_words`; the DMA against
:func:`edgesparse.accel.geometry.transfer_cycles` on a layer's transfer list.

(The first line tells Amaranth not to warn about the components the validation tests refuse: never elaborated.)"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Mux
from amaranth.sim import Simulator

from edgesparse.accel import AcceleratorConfig
from edgesparse.accel.array import row_activations
from edgesparse.accel.geometry import fold_geometry, transfer_cycles
from edgesparse.errors import ConfigError
from edgesparse.quant.fixedpoint import quantize_multiplier, requantize
from edgesparse.quant.graph import IntOp
from edgesparse.quant.reference import run_op
from edgesparse.rtl.cosim import random_layer, stream_words
from edgesparse.rtl.buffer import WordBuffer
from edgesparse.rtl.dma import DMA, SimDRAM, beat_bytes, descriptor_fields, pack_descriptor, rate_fraction
from edgesparse.accel.pipeline import FEED_LATENCY
from edgesparse.rtl.feeder import ActivationFeeder, row_fields
from edgesparse.rtl.ppu import (ADD_LATENCY, AVGPOOL_LATENCY, MAXPOOL_LATENCY, REQUANT_LATENCY, GlobalAvgPool,
                                MaxPool, Requantizer, ResidualAdd)


def _simulate(unit, bench) -> None:
    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()


def _pack(values, width: int) -> int:
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (width * k) for k, v in enumerate(values))


def _unpack(word: int, width: int, count: int) -> list[int]:
    out = []
    for k in range(count):
        v = (word >> (width * k)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


def _requantize_rtl(acc, bias, mult, shift, relu: bool, lanes: int, gaps: int = 3):
    """Stream (cycles x lanes) inputs through a Requantizer (every ``gaps``-th cycle idle); return the outputs and
    the cycle each left, checked against its input's cycle + REQUANT_LATENCY."""
    unit = Requantizer(lanes)
    cycles = acc.shape[0]
    results = np.zeros((cycles, lanes), dtype=np.int64)
    seen = []

    async def bench(ctx):
        ctx.set(unit.relu, int(relu))
        t, sent = 0, 0
        issued = {}
        while len(seen) < cycles * lanes:
            idle = gaps and t % gaps == gaps - 1
            if sent < cycles and not idle:
                ctx.set(unit.acc, _pack(acc[sent], 32))
                ctx.set(unit.bias, _pack(bias[sent], 32))
                ctx.set(unit.mult, _pack(mult[sent], 31))
                ctx.set(unit.shift, _pack(shift[sent], 6))
                ctx.set(unit.valid, (1 << lanes) - 1)
                issued[t] = sent
                sent += 1
            else:
                ctx.set(unit.valid, 0)
            valid = ctx.get(unit.out_valid)
            if valid:
                assert valid == (1 << lanes) - 1 and t - REQUANT_LATENCY in issued, f"an output in cycle {t}"
                results[issued[t - REQUANT_LATENCY]] = _unpack(ctx.get(unit.out), 8, lanes)
                seen.extend([t] * lanes)
            assert t < 4 * cycles + 20, "the requantizer stopped producing"
            await ctx.tick()
            t += 1

    _simulate(unit, bench)
    return results


def _exact(total: int, m: int, s: int, relu: bool) -> int:
    """The requantization in Python integers (no int64 bound): the reference expression, for sums beyond int32."""
    y = min(127, max(-128, (total * m + ((1 << s) >> 1)) >> s))
    return max(y, 0) if relu else y


@pytest.mark.parametrize("relu", [False, True])
def test_requantizer_matches_the_reference_on_random_values(relu):
    rng = np.random.default_rng(11 + relu)
    cycles, lanes = 150, 2
    acc = rng.integers(-2**20, 2**20, (cycles, lanes))
    bias = rng.integers(-2**16, 2**16, (cycles, lanes))
    mult = rng.integers(2**30, 2**31, (cycles, lanes))
    shift = rng.integers(38, 50, (cycles, lanes))  # results around the int8 range
    out = _requantize_rtl(acc, bias, mult, shift, relu, lanes)
    expected = requantize((acc + bias).ravel(), mult.ravel(), shift.ravel(), relu=relu, channel_axis=0)
    assert np.array_equal(out.ravel(), expected)
    assert len(np.unique(expected)) > 30  # the values span the range, not just the saturation


def test_requantizer_edge_values():
    """Extreme int32 sums and biases, the smallest and largest mantissa and shift, saturation at both ends, ties."""
    i32 = (-2**31, -2**31 + 1, -1, 0, 1, 2**31 - 1)
    cases = []
    for a in i32:
        for b in (-2**31, 0, 2**31 - 1):
            for m in (1, 2**30, 2**31 - 1):
                for s in (0, 1, 31, 62, 63):
                    cases.append((a, b, m, s))
    # Ties of the rounding (half up): (acc * m) / 2^s = k + 0.5 for negative and positive k, and near-saturation.
    for total, s in ((5, 1), (-5, 1), (-3, 1), (255, 1), (-257, 1), (-256, 1), (254, 1), (253, 1), (3 << 29, 30),
                     (-(3 << 29), 30)):
        cases.append((total, 0, 1, s))
    arr = np.array(cases, dtype=np.int64)
    lanes = 2
    arr = np.concatenate([arr, arr[: len(arr) % lanes]]) if len(arr) % lanes else arr
    shaped = arr.reshape(-1, lanes, 4)
    for relu in (False, True):
        out = _requantize_rtl(shaped[..., 0], shaped[..., 1], shaped[..., 2], shaped[..., 3], relu, lanes, gaps=0)
        expected = [_exact(int(a) + int(b), int(m), int(s), relu) for a, b, m, s in shaped.reshape(-1, 4)]
        assert out.ravel().tolist() == expected
        # Where the reference's own domain holds (int32 sums, shift in [1, 62]), it agrees too.
        flat = shaped.reshape(-1, 4)
        total = flat[:, 0] + flat[:, 1]
        inside = (total >= -2**31) & (total < 2**31) & (flat[:, 3] >= 1) & (flat[:, 3] <= 62)
        reference = requantize(total[inside], flat[inside, 2], flat[inside, 3], relu=relu, channel_axis=0)
        assert np.array_equal(out.ravel()[inside], reference) and inside.sum() > 50
        assert {-128, 127} <= set(expected) if not relu else {0, 127} <= set(expected)


def test_ppu_parameters_are_validated():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="lane count"):
            Requantizer(bad)
    with pytest.raises(ConfigError, match="residual add's lane count must be a positive integer, got 0"):
        ResidualAdd(0)
    with pytest.raises(ConfigError, match="average pool's lane count"):
        GlobalAvgPool(-2)
    with pytest.raises(ConfigError, match="maximum width"):
        MaxPool(1, 0)
    with pytest.raises(ConfigError, match="got kernel 4"):
        MaxPool(1, 8, 4)


def _maxpool_rtl(maps: np.ndarray, kernel: int, seed: int) -> np.ndarray:
    """Stream maps ``[count, C, H, W]`` (channels as lanes) through one MaxPool in raster order with random idle
    cycles, each map after a ``start``; return the pooled maps, each output checked MAXPOOL_LATENCY cycles after
    the pixel that completes its window."""
    count, lanes, height, width = maps.shape
    unit = MaxPool(lanes, max_width=16, kernel=kernel)
    rng = np.random.default_rng(seed)
    if kernel == 2:
        out_hw = height // 2, width // 2
        closes = lambda i, n: i % 2 == 1  # noqa: E731  (a 2x2 window closes on its odd row / column)
    else:
        out_hw = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        closes = lambda i, n: i % 2 == 1 or i == n - 1  # noqa: E731  (or at the edge: the rest is padding)
    pooled = []

    async def bench(ctx):
        t, completes = 0, set()
        for image in maps:
            out = []

            async def tick():
                nonlocal t
                await ctx.tick()
                t += 1
                if ctx.get(unit.out_valid):
                    assert t - MAXPOOL_LATENCY in completes, f"an unexpected output in cycle {t}"
                    out.append(_unpack(ctx.get(unit.out), 8, lanes))

            for p, pixel in enumerate(image.reshape(lanes, -1).T):
                while rng.random() < 0.3:
                    ctx.set(unit.valid, 0)
                    await tick()
                ctx.set(unit.start, int(p == 0))
                ctx.set(unit.height, height)
                ctx.set(unit.width, width)
                ctx.set(unit.data, _pack(pixel, 8))
                ctx.set(unit.valid, 1)
                y, x = divmod(p, width)
                if closes(y, height) and closes(x, width):
                    completes.add(t)
                await tick()
                ctx.set(unit.start, 0)
                ctx.set(unit.valid, 0)
            for _ in range(MAXPOOL_LATENCY):  # the map's last maximum leaves
                await tick()
            pooled.append(np.array(out, dtype=np.int8).T.reshape(lanes, *out_hw))

    _simulate(unit, bench)
    return np.stack(pooled)


@pytest.mark.parametrize("kernel, height, width", [
    (2, 6, 8), (2, 7, 5), (2, 2, 2), (2, 1, 1), (2, 3, 9),
    (3, 6, 8), (3, 7, 5), (3, 2, 2), (3, 1, 1), (3, 4, 1), (3, 5, 3), (3, 5, 2), (2, 6, 2)])
def test_max_pool_matches_the_reference(kernel, height, width):
    """2x2 stride 2 and 3x3 stride 2 padding 1 (ResNet's) on even and odd map sizes (a 2x2 pool drops an odd last
    row and column, a 3x3 window over the edge takes the padding), a 1x1 map, the int8 extremes; two maps back to
    back through one unit."""
    rng = np.random.default_rng(height * 16 + width + kernel)
    maps = rng.integers(-128, 128, (2, 3, height, width), dtype=np.int8)
    maps[0, 0, 0, 0], maps[0, 0, -1, -1] = -128, 127
    maps[1, 1] = -128  # a channel at the minimum throughout
    stride, padding = [2, 2], [kernel - 2] * 2
    op = IntOp("pool", "maxpool", ["x"], {"kernel": [kernel, kernel], "stride": stride, "padding": padding})
    if kernel == 2 and min(height, width) < 2:  # no window fits (the graph refuses such a pool): no output
        expected = np.zeros((2, 3, height // 2, width // 2), dtype=np.int8)
    else:
        expected = run_op(op, [maps])
    assert np.array_equal(_maxpool_rtl(maps, kernel, seed=width), expected)


# --- The activation feeder against stream_words (the stream the layer unit's co-simulation builds in Python). ---


def _tile_buffer(x: np.ndarray, m: int) -> list[int]:
    """Input maps ``[N, Cin, H, W]`` (or one ``[Cin, H, W]``) as the feeder's tile buffer: word
    ``((n H + y) W + x) B + b`` = channels of block b."""
    x = x[None] if x.ndim == 3 else x
    count, cin, height, width = x.shape
    blocks = -(-cin // m)
    padded = np.zeros((count, blocks * m, height, width), dtype=np.int64)
    padded[:, :cin] = x
    words = padded.reshape(count, blocks, m, height, width).transpose(0, 3, 4, 1, 2).reshape(-1, m) & 0xFF
    return [int.from_bytes(bytes(word.astype(np.uint8)), "little") for word in words]


def _feeder_against_stream_words(config, layer, x, shape, max_folds: int | None = None,
                                 tile: int | None = None, window: int | None = None) -> int:
    """The tile buffer written as the DMA writes it, a byte stream ``window`` bytes a cycle at most (a random
    count each cycle, so windows start at any byte lane), then every row of every fold (``max_folds`` of them at
    most, spread over the layer) through the feeder: each vector and real flag equals the row's part of
    stream_words' words, vector g FEED_LATENCY + g cycles after the row's start. Returns vectors checked."""
    geometry = fold_geometry(shape, config)
    row_acts = row_activations(layer, x).astype(np.int64)
    M, P, R = config.m, config.pixels_per_cycle, config.rows
    positions, blocks_of_row = layer.row_block()
    base = 0
    if tile is not None:  # the buffer holds only that tile's input rows (from its first output row's top tap on)
        first_row = tile * geometry.tile_pixels // shape.out_hw[1]
        base = max(0, first_row * layer.stride[0] - layer.padding[0])
    words = _tile_buffer(x[:, base:] if tile is not None else x, M)
    unit = ActivationFeeder(M, P, depth=len(words), window=window)
    stream = b"".join(word.to_bytes(M, "little") for word in words)
    rng = np.random.default_rng(len(stream))
    count = geometry.folds if max_folds is None else min(max_folds, geometry.folds)
    runs = []  # (fields, expected vectors [L, P], expected real flags or None)
    chosen = np.linspace(0, geometry.folds - 1, count).astype(int).tolist()  # first, last, between
    if tile is not None:
        chosen = list(range(tile * geometry.folds_per_tile, (tile + 1) * geometry.folds_per_tile))
    for fold in sorted(set(chosen)):
        expected = stream_words(geometry, row_acts, fold, M)
        tile, _, row_fold = geometry.fold_position(fold)
        seg, length = geometry.segment_rows(row_fold), geometry.stream_length(tile, row_fold)
        for i in range(R):
            slot, segment = i % seg, i // seg
            row = row_fold * R + slot
            enable = slot < int(geometry.rows_in[row_fold])
            first = segment * length * P
            fields = row_fields(in_hw=shape.in_chw[1:], out_hw=shape.out_hw, kernel_w=layer.kernel[1],
                                stride=layer.stride, padding=layer.padding, blocks=layer.blocks,
                                position=int(positions[row]) if enable else 0,
                                block=int(blocks_of_row[row]) if enable else 0,
                                first_pixel=tile * geometry.tile_pixels + first,
                                pixels=int(geometry.tile_sizes[tile]) - first, groups=length, lanes=P,
                                enable=enable, base=base)
            vectors = [[(word >> (8 * M * (i * P + lane))) & ((1 << 8 * M) - 1) for lane in range(P)]
                       for word in expected]
            flags = [[(word >> (8 * M * P * R + i * P + lane)) & 1 for lane in range(P)] for word in expected]
            runs.append((fields, vectors, flags if slot == seg - 1 else None))
    checked, nonzero = 0, set()

    async def bench(ctx):
        nonlocal checked
        at = 0
        while at < len(stream):
            count = min(int(rng.integers(0, unit.window + 1)), len(stream) - at)
            ctx.set(unit.w_row, at // M)
            ctx.set(unit.w_pos, at % M)
            ctx.set(unit.w_data, int.from_bytes(stream[at:at + count], "little"))
            ctx.set(unit.w_mask, (1 << count) - 1)
            at += count
            await ctx.tick()
        ctx.set(unit.w_mask, 0)
        static = {"height": shape.in_chw[1], "width": shape.in_chw[2], "out_height": shape.out_hw[0],
                  "out_width": shape.out_hw[1], "stride_y": layer.stride[0], "stride_x": layer.stride[1]}
        for fields, vectors, flags in runs:
            for name, value in {**static, **dataclasses.asdict(fields)}.items():
                ctx.set(getattr(unit, name), value)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            for g in range(1 - FEED_LATENCY, len(vectors)):
                if g >= 0:
                    assert ctx.get(unit.out_valid), f"vector {g} is late"
                    out = ctx.get(unit.out)
                    got = [(out >> (8 * M * lane)) & ((1 << 8 * M) - 1) for lane in range(P)]
                    assert got == vectors[g], f"group {g} of {fields}"
                    nonzero.update(bool(v) for v in got)
                    if flags is not None:
                        assert [(ctx.get(unit.out_real) >> lane) & 1 for lane in range(P)] == flags[g]
                    checked += P
                else:
                    assert not ctx.get(unit.out_valid) and ctx.get(unit.busy)
                await ctx.tick()
            assert not ctx.get(unit.out_valid) and not ctx.get(unit.busy)

    _simulate(unit, bench)
    assert True in nonzero  # not all zeros
    return checked


@pytest.mark.parametrize("lanes, size, kernel, stride, padding, segments, out_kib, window", [
    (1, 5, 3, 1, 1, 1, 256.0, None),       # a padded 3x3 convolution, odd map size
    (2, 7, 3, 2, 1, 2, 4 * 4 * 6 / 1024, 3),  # strided, both lanes, two segments, tiles of 6 pixels (odd tiles)
    (2, 1, 3, 1, 1, 1, 256.0, 1),       # a 1x1 map: every tap but the centre is padding
    (1, 6, 3, 2, 0, 2, 4 * 4 * 5 / 1024, 2),  # strided, unpadded, tiles of 5 pixels
    (2, 3, 1, 1, 0, 1, 256.0, None),       # a 1x1 convolution
])
def test_feeder_matches_stream_words(lanes, size, kernel, stride, padding, segments, out_kib, window):
    config = AcceleratorConfig(4, 4, 4, 1, pixels_per_cycle=lanes, segments=segments, output_buffer_kib=out_kib)
    layer, x, plan = random_layer(config, 1, 4, cin=7, cout=4, size=size, kernel=kernel, stride=stride,
                                  padding=padding, seed=size + lanes)
    assert layer.blocks == 2
    checked = _feeder_against_stream_words(config, layer, x, plan.shape, max_folds=6, window=window)
    assert checked > 0


def test_feeder_walks_a_batch_across_images():
    """Two images of a strided layer (5x5 -> 3x3: the image step is not a row step), tiles of 7 pixels that
    straddle the images' boundary, both lanes."""
    config = AcceleratorConfig(4, 4, 4, 1, pixels_per_cycle=2, output_buffer_kib=4 * 4 * 7 / 1024)
    layer, x, plan = random_layer(config, 1, 4, cin=5, cout=4, size=5, stride=2, padding=1, seed=9)
    batch = np.stack([x, np.random.default_rng(10).integers(-128, 128, x.shape).astype(np.int8)])
    shape = dataclasses.replace(plan.shape, batch=2)
    assert _feeder_against_stream_words(dataclasses.replace(config, batch=2), layer, batch, shape, max_folds=8) > 0


def test_feeder_reads_a_tile_buffer_holding_only_the_tile_s_rows():
    """The last tile of a strided layer with its halo rows only in the buffer (``base`` > 0)."""
    config = AcceleratorConfig(4, 4, 4, 1, output_buffer_kib=4 * 4 * 4 / 1024)  # tiles of 4 pixels
    layer, x, plan = random_layer(config, 1, 4, cin=6, cout=4, size=9, stride=2, padding=1, seed=4)
    geometry = fold_geometry(plan.shape, config)
    assert geometry.tiles > 2
    assert _feeder_against_stream_words(config, layer, x, plan.shape, tile=geometry.tiles - 1) > 0


def test_feeder_parameters_are_validated():
    with pytest.raises(ConfigError, match="power of two, got 3"):
        ActivationFeeder(3)
    with pytest.raises(ConfigError, match="lanes, got 3"):
        ActivationFeeder(4, 3)
    with pytest.raises(ConfigError, match="depth must be a positive integer, got 0"):
        ActivationFeeder(4, 1, 0)
    for bad in (0, 8, 2.0):
        with pytest.raises(ConfigError, match=f"window must be 1 to M = 4 bytes, got {bad}"):
            ActivationFeeder(4, 1, 16, window=bad)
    with pytest.raises(ConfigError, match="collision_free must be a bool, got 'no'"):
        ActivationFeeder(4, 1, 16, collision_free="no")
    with pytest.raises(ConfigError, match="one vector a lane or more, got groups = 0"):  # it goes live untested
        row_fields(in_hw=(4, 4), out_hw=(4, 4), kernel_w=3, stride=(1, 1), padding=(1, 1), blocks=1, position=0,
                   block=0, first_pixel=0, pixels=0, groups=0, lanes=1)


# --- The word buffer against a byte-array model. ---


def _load_words(ctx, buffer: WordBuffer, contents: bytes) -> None:
    """Set a WordBuffer's words (``contents``: its bytes in address order) before the first clock edge."""
    N, G = buffer.word_bytes, buffer.lanes_per_memory
    for row in range(len(contents) // N):
        for number, memory in enumerate(buffer.memories):
            lanes = contents[row * N + number * G:row * N + (number + 1) * G]
            ctx.set(memory.data[row], int.from_bytes(lanes, "little"))


def _word_contents(ctx, buffer: WordBuffer) -> bytes:
    G = buffer.lanes_per_memory
    return b"".join(ctx.get(memory.data[row]).to_bytes(G, "little")
                    for row in range(buffer.depth) for memory in buffer.memories)


@pytest.mark.parametrize("word_bytes, depth, window, word_reads, word_write, shared, stage", [
    (6, 5, 4, 1, False, 1, False),   # the weight buffer's shape: a 6-byte word, a 4-byte window
    (6, 5, 4, 1, False, 1, True),    # ... with the engine's write stage
    (6, 7, 6, 2, True, 1, False),    # a window as wide as the word; two word reads; both write ports
    (16, 4, 4, 0, True, 1, False),   # the output buffer's shape: no word read, the stage's word writes
    (16, 3, 16, 1, False, 1, False),
    (1, 3, 1, 1, True, 1, False),
    (16, 5, 4, 1, False, 2, False),  # the feeder's tile buffer on ECP5: two lanes a memory
    (16, 5, 4, 1, False, 2, True),   # ... with the engine's write stage
    (16, 3, 8, 2, False, 4, False),  # four lanes a memory, a window of half a word
    (4, 5, 2, 1, False, 2, False),   # memories of half a word
    (5, 3, 3, 1, False, 1, True),    # an odd word, the stage's next row past the last
])
def test_word_buffer_matches_a_byte_array(word_bytes, depth, window, word_reads, word_write, shared, stage):
    """Random cycles of window writes (masks with holes, windows straddling words, ending at the last byte), window
    reads, word reads and word writes (in the same cycles) against a byte array: every read one cycle after its
    address, the value before that cycle's writes (with the write stage: before the previous cycle's, which land
    a cycle late); a lane both ports write takes the window's byte."""
    rng = np.random.default_rng(word_bytes * 31 + window + word_reads)
    N, W = word_bytes, window
    buffer = WordBuffer(N, depth, W, word_reads, word_write, lanes_per_memory=shared, write_stage=stage)
    model = bytearray(rng.integers(0, 256, N * depth, dtype=np.uint8).tobytes())
    last = N * depth - W  # the last window start: its last byte is the buffer's last
    seen = {"straddle": 0, "holes": 0, "last": 0}

    landing = []  # window writes on their way into the memories (one with the write stage)

    def land(at: int, mask: int, data: bytes) -> None:
        for i in range(W):
            if mask >> i & 1:
                model[at + i] = data[i]

    async def bench(ctx):
        _load_words(ctx, buffer, model)
        expected = None
        for t in range(250):
            at = last if t % 17 == 0 else int(rng.integers(0, last + 1))
            mask = int(rng.integers(0, 1 << W)) if t % 5 else 0
            data = rng.integers(0, 256, W, dtype=np.uint8).tobytes()
            read_at = last if t % 13 == 0 else int(rng.integers(0, last + 1))
            words = [int(rng.integers(0, depth)) for _ in range(word_reads)]
            ports = {"w_row": at // N, "w_pos": at % N, "w_data": int.from_bytes(data, "little"), "w_mask": mask,
                     "r_row": read_at // N, "r_pos": read_at % N}
            ports.update({f"rd{k}_addr": word for k, word in enumerate(words)})
            if word_write:
                ww_addr, ww_mask = int(rng.integers(0, depth)), int(rng.integers(0, 1 << N))
                ww_data = rng.integers(0, 256, N, dtype=np.uint8).tobytes()
                ports.update(ww_addr=ww_addr, ww_data=int.from_bytes(ww_data, "little"), ww_mask=ww_mask)
            for name, value in ports.items():
                ctx.set(getattr(buffer, name), value)
            if expected is not None:
                window_bytes, word_values = expected
                assert ctx.get(buffer.r_data).to_bytes(W, "little") == window_bytes, f"window read, cycle {t}"
                for k, word in enumerate(word_values):
                    assert ctx.get(getattr(buffer, f"rd{k}_data")).to_bytes(N, "little") == word, f"rd{k}, {t}"
            expected = bytes(model[read_at:read_at + W]), [bytes(model[w * N:(w + 1) * N]) for w in words]
            taken = {(at + i) % N for i in range(W) if mask >> i & 1}
            if word_write:
                for lane in set(range(N)) - taken:
                    if ww_mask >> lane & 1:
                        model[ww_addr * N + lane] = ww_data[lane]
            landing.append((at, mask, data))
            if len(landing) > stage:  # the write that lands at the end of this cycle
                land(*landing.pop(0))
            seen["straddle"] += at % N + W > N and mask >> (N - at % N) > 0
            seen["holes"] += (mask + (mask & -mask)) & mask != 0  # set bits not contiguous
            seen["last"] += at == last and mask >> (W - 1) & 1
            await ctx.tick()
        assert ctx.get(buffer.r_data).to_bytes(W, "little") == expected[0]
        ctx.set(buffer.w_mask, 0)
        for write in landing:
            land(*write)
            await ctx.tick()
        assert _word_contents(ctx, buffer) == bytes(model)

    _simulate(buffer, bench)
    assert seen["last"] and (seen["straddle"] or N == 1) and (seen["holes"] or W < 3)


@pytest.mark.parametrize("lanes", [1, 2])
def test_the_collision_monitors_flag_a_read_of_the_row_being_written(lanes):
    """WordBuffer.read_collisions (what the engine checks for its collision_free buffers every simulated cycle):
    high for a read port that addresses a row a write writes in the same cycle, a window straddling into the next
    row included; low for another row or no write."""
    buffer = WordBuffer(8, 16, 4, word_reads=1, lanes_per_memory=lanes, collision_free=True)
    cases = [  # (w_row, w_pos, w_mask, r_row, r_pos, rd0_addr) -> (window, rd0)
        ((3, 0, 0b1111, 3, 0, 3), (1, 1)),
        ((3, 0, 0b1111, 4, 0, 5), (0, 0)),
        ((3, 0, 0b0000, 3, 0, 3), (0, 0)),  # no byte written
        ((3, 6, 0b1111, 4, 0, 4), (1, 1)),  # the window wraps into row 4: lanes 0 and 1 of row 4 are written
        ((3, 0, 0b1111, 2, 6, 2), (1, 0)),  # the read window wraps into row 3's lanes 0 and 1, which are written
    ]
    seen = []

    async def bench(ctx):
        for (w_row, w_pos, w_mask, r_row, r_pos, rd0), _ in cases:
            for name, value in (("w_row", w_row), ("w_pos", w_pos), ("w_mask", w_mask), ("r_row", r_row),
                                ("r_pos", r_pos), ("rd0_addr", rd0)):
                ctx.set(getattr(buffer, name), value)
            seen.append((ctx.get(buffer.read_collisions["window"]), ctx.get(buffer.read_collisions["rd0"])))
            await ctx.tick()

    simulator = Simulator(buffer)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert seen == [flags for _, flags in cases]


def test_word_buffer_parameters_are_validated():
    with pytest.raises(ConfigError, match="word size must be a positive integer, got 0"):
        WordBuffer(0, 4, 1)
    with pytest.raises(ConfigError, match="collision_free must be a bool, got 1"):
        WordBuffer(4, 4, 1, collision_free=1)
    with pytest.raises(ConfigError, match="depth must be a positive integer, got 2.5"):
        WordBuffer(4, 2.5, 1)
    with pytest.raises(ConfigError, match="window \\(8 bytes\\) must not exceed its word \\(6 bytes\\)"):
        WordBuffer(6, 4, 8)
    with pytest.raises(ConfigError, match="word read port count must be a non-negative integer, got -1"):
        WordBuffer(6, 4, 4, -1)
    for bad in (dict(word_bytes=6, window=4, lanes=2), dict(word_bytes=16, window=4, lanes=3),
                dict(word_bytes=4, window=2, lanes=4)):
        with pytest.raises(ConfigError, match=f"cannot hold {bad['lanes']} byte lanes a memory"):
            WordBuffer(bad["word_bytes"], 4, bad["window"], lanes_per_memory=bad["lanes"])
    with pytest.raises(ConfigError, match="cannot hold 2 byte lanes a memory.*no word write port"):
        WordBuffer(16, 4, 4, word_write=True, lanes_per_memory=2)


def test_lanes_share_a_memory_only_where_it_fills_block_ram():
    from edgesparse.rtl.buffer import lanes_per_memory

    assert lanes_per_memory(16, 1024, 4) == 2  # the feeder's tile buffer: 1024 x 16 bits, one DP16KD
    assert lanes_per_memory(16, 512, 4) == 4
    assert lanes_per_memory(16, 2048, 4) == 1  # a lane of 2048 words fills a block already
    assert lanes_per_memory(16, 64, 4) == 1  # distributed RAM
    assert lanes_per_memory(16, 1024, 16) == 1  # a window of a whole word
    assert lanes_per_memory(6, 1024, 3) == 2 and lanes_per_memory(6, 512, 3) == 2  # 4 lanes do not divide 6


# --- The DMA between a SimDRAM and WordBuffers against transfer_cycles and FoldGeometry.transfers(). ---


class _DMABench(Elaboratable):
    """A DMA between a SimDRAM and one WordBuffer of ``depth`` words per entry of ``word_bytes``, wired as the engine
    wires them: the window write gated by ``buf_sel``, the window read answered by buffer ``buf_r_sel``."""

    def __init__(self, rate, dram: bytes, word_bytes: tuple[int, ...], depth: int, queue: int):
        self.dma = DMA(rate, len(dram), depth, word_bytes, queue)
        self.dram = SimDRAM(len(dram), self.dma.beat, dram)
        self.buffers = [WordBuffer(size, depth, self.dma.beat, word_reads=0) for size in word_bytes]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dma, m.submodules.dram = dma, dram = self.dma, self.dram
        m.d.comb += [dram.r_addr.eq(dma.dram_r_addr), dma.dram_r_data.eq(dram.r_data),
                     dram.w_addr.eq(dma.dram_w_addr), dram.w_data.eq(dma.dram_w_data),
                     dram.w_mask.eq(dma.dram_w_mask)]
        for k, buffer in enumerate(self.buffers):
            m.submodules[f"buffer{k}"] = buffer
            m.d.comb += [buffer.w_row.eq(dma.buf_row), buffer.w_pos.eq(dma.buf_pos), buffer.w_data.eq(dma.buf_w_data),
                         buffer.w_mask.eq(Mux(dma.buf_sel == k, dma.buf_w_mask, 0)),
                         buffer.r_row.eq(dma.buf_row), buffer.r_pos.eq(dma.buf_pos)]
            with m.If(dma.buf_r_sel == k):
                m.d.comb += dma.buf_r_data.eq(buffer.r_data)
        return m


def _contents(ctx, memory: SimDRAM) -> bytes:
    rows = memory.size // memory.beat
    banks = [[ctx.get(bank.data[row]) for row in range(rows)] for bank in memory.banks]
    return bytes(banks[k % memory.beat][k // memory.beat] for k in range(memory.size))


def _run_dma(rate: float, transfers: list[tuple[bool, int, int, int, int]], allow: np.ndarray, dram: bytes,
             buffers: list[bytes], word_bytes: tuple[int, ...], depth: int):
    """Run ``transfers`` (to_dram, buffer, DRAM address, buffer word address, bytes) between a DRAM and WordBuffers
    of ``depth`` words of ``word_bytes`` (initial contents ``buffers``); ``allow[t]`` gates cycle t. Returns the
    done cycle of each transfer and the final DRAM and buffer contents."""
    bench = _DMABench(rate, dram, word_bytes, depth, queue=len(transfers))
    dma = bench.dma
    done = [None] * len(transfers)
    final = {}

    async def run(ctx):
        for buffer, init in zip(bench.buffers, buffers):
            _load_words(ctx, buffer, init)
        for k, (to_dram, buffer, dram_addr, buf_addr, count) in enumerate(transfers):
            ctx.set(dma.q_we, 1)
            ctx.set(dma.q_addr, k)
            ctx.set(dma.q_data, pack_descriptor(dma.fields, to_dram=to_dram, buffer=buffer, dram_addr=dram_addr,
                                                buf_addr=buf_addr, size=count))
            await ctx.tick()
        ctx.set(dma.q_we, 0)
        ctx.set(dma.q_count, len(transfers))  # cycle 0: the queue is ready
        for t in range(len(allow)):
            ctx.set(dma.allow, int(allow[t]))
            if ctx.get(dma.done):
                done[ctx.get(dma.done_index)] = t
            await ctx.tick()
        assert ctx.get(dma.head) == len(transfers) and not ctx.get(dma.busy), "the DMA did not finish"
        final["dram"] = _contents(ctx, bench.dram)
        final["buffers"] = [_word_contents(ctx, buffer) for buffer in bench.buffers]

    _simulate(bench, run)
    return done, final["dram"], final["buffers"]


def _replay(transfers, dram: bytes, buffers: list[bytes], word_bytes: tuple[int, ...]):
    """The transfers' effect in Python: the DRAM's and the buffers' final bytes."""
    want_dram, want_buffers = bytearray(dram), [bytearray(b) for b in buffers]
    for to_dram, buffer, dram_addr, buf_addr, count in transfers:
        at = buf_addr * word_bytes[buffer]
        if to_dram:
            want_dram[dram_addr:dram_addr + count] = want_buffers[buffer][at:at + count]
        else:
            want_buffers[buffer][at:at + count] = want_dram[dram_addr:dram_addr + count]
    return bytes(want_dram), [bytes(b) for b in want_buffers]


def _contract(rate: float, sizes: list[int], allow: np.ndarray) -> list[int]:
    """The Python contract: each transfer starts in the first cycle at or after the previous one's end in which it
    is allowed, and ends transfer_cycles(bytes, rate) later."""
    ends, free = [], 0
    for size in sizes:
        start = free + int(np.argmax(allow[free:]))
        assert allow[start]
        free = start + transfer_cycles(size, rate)
        ends.append(free)
    return ends


@pytest.mark.parametrize("rate", [3.5, 0.75, 4.0, 1.0])
def test_dma_completion_cycles_follow_the_transfer_contract(rate):
    """The transfers of a real layer's descriptor list (FoldGeometry.transfers: weights, input, output) with the
    sizes scaled to a small DRAM, into a weight buffer of 6-byte words and input and output buffers of 16-byte words;
    allow held low at times (a full buffer); every done pulse in the contract's cycle, every byte where it belongs."""
    config = AcceleratorConfig(4, 4, 4, 1, output_buffer_kib=4 * 4 * 6 / 1024)
    layer, x, plan = random_layer(config, 1, 4, cin=7, cout=6, size=5, seed=1)
    full = fold_geometry(plan.shape, config).transfers()
    kinds_at = {kind: [k for k, item in enumerate(full) if item[0] == kind] for kind in ("input", "output")}
    listed = [full[k] for k in sorted({0, 1, 2, 3, *kinds_at["input"][1:3], *kinds_at["output"][:3]})]
    rng = np.random.default_rng(int(rate * 4))
    word_bytes, depth = (6, 16, 16), 8
    # Sizes scaled down to a small DRAM: one-byte and one-cycle transfers, and sizes whose last cycle a rounding
    # error (a ceil for the floor of the bytes moved so far) would move.
    sizes = [(1, 4, 3, 11, 2, 5, 13, 22, 7, 9, 6)[k % 11] for k in range(len(listed))]
    kinds = [kind for kind, *_ in listed]
    assert {"weights", "input", "output"} <= set(kinds)
    transfers, dram_next = [], 0
    buffer_next = [0, 0, 0]
    for kind, count in zip(kinds, sizes):
        buffer = ("weights", "input", "output").index(kind)
        words = -(-count // word_bytes[buffer])
        at = buffer_next[buffer] % (depth - words + 1)
        transfers.append((kind == "output", buffer, dram_next, at, count))
        dram_next += count
        buffer_next[buffer] += words + 1
    cycles = sum(transfer_cycles(s, rate) for s in sizes)
    allow = rng.random(cycles * 2 + 40) < 0.7
    allow[-8:] = True
    dram = bytes(rng.integers(0, 256, 256, dtype=np.uint8))
    buffers = [bytes(depth * n) for n in word_bytes[:2]] + [bytes(rng.integers(0, 256, depth * 16, dtype=np.uint8))]
    done, final_dram, final_buffers = _run_dma(rate, transfers, allow, dram, buffers, word_bytes, depth)
    assert done == _contract(rate, sizes, allow)
    assert (final_dram, final_buffers) == _replay(transfers, dram, buffers, word_bytes)


@pytest.mark.parametrize("rate", [0.75, 1.5, 2.0, 3.25])
def test_dma_moves_unaligned_windows_between_dram_and_word_buffers(rate):
    """Random transfers both ways between any DRAM byte and a 6-byte-word and a 16-byte-word buffer: lengths that
    straddle words and end mid-word (and ones of a single byte and of whole words), some back to back (allow high:
    a transfer starting in its predecessor's done cycle, a DRAM-to-buffer transfer while the previous write-back's
    last bytes go to the DRAM), some behind gaps; done cycles against transfer_cycles, every byte."""
    rng = np.random.default_rng(int(rate * 8))
    word_bytes, depth = (6, 16), 6
    transfers = []
    dram_next = 0
    for k in range(14):
        buffer = k % 2 if k < 8 else int(rng.integers(0, 2))
        at = int(rng.integers(0, depth - 2))
        most = (depth - at) * word_bytes[buffer]
        count = (1, word_bytes[buffer], most)[k] if k < 3 else int(rng.integers(1, min(most, 40) + 1))
        transfers.append((bool(k % 3 == 1 or rng.random() < 0.4), buffer, dram_next, at, count))
        dram_next += count  # each transfer its own DRAM bytes: what a write-back writes is not read again
    assert any(t[4] % word_bytes[t[1]] and t[4] > word_bytes[t[1]] for t in transfers)  # straddles, ends mid-word
    sizes = [t[4] for t in transfers]
    cycles = sum(transfer_cycles(s, rate) for s in sizes)
    allow = np.ones(cycles * 2 + 40, dtype=bool)
    allow[cycles // 2:cycles // 2 + 5] = False
    allow[cycles:cycles + 3] = False
    dram = bytes(rng.integers(0, 256, 512, dtype=np.uint8))
    buffers = [bytes(rng.integers(0, 256, depth * n, dtype=np.uint8)) for n in word_bytes]
    done, final_dram, final_buffers = _run_dma(rate, transfers, allow, dram, buffers, word_bytes, depth)
    assert done == _contract(rate, sizes, allow)
    assert (final_dram, final_buffers) == _replay(transfers, dram, buffers, word_bytes)


def test_dma_runs_entries_the_host_appends_while_it_runs():
    """The host writes entry t in cycle t and makes it ready in cycle t + 1 (q_count), so the DMA's head register
    takes the host's write as the head moves onto the entry (back-to-back one-cycle transfers), on the head (allow
    low, the DMA caught up) and through the queue's one-ahead read (the DMA behind); then a restart of the queue
    (reset_queue) runs entry 0 again from the copy kept as the host wrote it. Every start and byte as the contract
    says."""
    rate, word_bytes, depth = 1.0, (4,), 16
    rng = np.random.default_rng(3)
    sizes = [3, 1, 1, 2, 1, 3, 1, 1, 4, 1, 2, 1, 1, 1]
    transfers = [(False, 0, 5 * k, k, count) for k, count in enumerate(sizes)]  # word k of the buffer
    allow = np.ones(80, dtype=bool)
    allow[[4, 5, 9, 20, 21, 22, 23]] = False
    # Expected: transfer k is ready from cycle k + 1; the restart (cycle 60) runs entry 0 again.
    ends, free = [], 0
    for k, count in enumerate(sizes):
        start = max(free, k + 1)
        start += int(np.argmax(allow[start:]))
        free = start + transfer_cycles(count, rate)
        ends.append(free)
    assert free < 60 and max(np.diff([0, *ends])) > 1 and min(np.diff(ends)) == 1
    dram = bytes(rng.integers(0, 256, 128, dtype=np.uint8))
    bench = _DMABench(rate, dram, word_bytes, depth, queue=16)
    dma, done, final = bench.dma, {}, {}

    async def run(ctx):
        for t in range(len(allow)):
            ctx.set(dma.q_we, t < len(transfers))
            if t < len(transfers):
                to_dram, buffer, dram_addr, buf_addr, count = transfers[t]
                ctx.set(dma.q_addr, t)
                ctx.set(dma.q_data, pack_descriptor(dma.fields, to_dram=to_dram, buffer=buffer, dram_addr=dram_addr,
                                                    buf_addr=buf_addr, size=count))
            ctx.set(dma.q_count, min(t, len(transfers)) if t < 61 else 1)
            ctx.set(dma.reset_queue, t == 60)
            ctx.set(dma.allow, int(allow[t]))
            if ctx.get(dma.done):
                done.setdefault(ctx.get(dma.done_index), []).append(t)
            await ctx.tick()
        final["buffer"] = _word_contents(ctx, bench.buffers[0])

    _simulate(bench, run)
    assert [final["buffer"]] == _replay(transfers, dram, [bytes(4 * depth)], word_bytes)[1]
    assert [done[k][0] for k in range(len(sizes))] == ends
    assert done[0][1:] == [61 + transfer_cycles(sizes[0], rate)]  # entry 0 again, right after the restart


def test_dma_parameters_are_validated():
    assert rate_fraction(3.5) == (7, 1) and rate_fraction(0.75) == (3, 2) and beat_bytes(3.5) == 4
    for bad in (0, -1.0, float("inf"), float("nan"), True, "4"):
        with pytest.raises(ConfigError, match="positive, finite"):
            DMA(bad, 64, 64, (4,))
    with pytest.raises(ConfigError, match="0.1 needs k"):
        DMA(0.1, 64, 64, (4,))
    with pytest.raises(ConfigError, match="beat of 8 bytes \\(rate 5.5\\) does not fit a buffer word of 6 bytes"):
        DMA(5.5, 64, 16, (16, 6))
    with pytest.raises(ConfigError, match="tuple of word sizes, one per buffer, got 6"):
        DMA(1.0, 64, 16, 6)
    with pytest.raises(ConfigError, match="buffer word size must be a positive integer, got 0"):
        DMA(1.0, 64, 16, (6, 0))
    with pytest.raises(ConfigError, match="size \\(60 bytes\\) must be a multiple of its beat \\(8\\)"):
        SimDRAM(60, 8)
    with pytest.raises(ConfigError, match="moves 1 to"):
        pack_descriptor(descriptor_fields(64, 64, 1), to_dram=False, buffer=0, dram_addr=0, buf_addr=0, size=0)


# --- The residual add and the global average pool against the reference's add and avgpool. ---


def _drive(unit, inputs: list[dict], latency: int, lanes: int) -> list[list[int]]:
    """Drive one dict of port values per cycle (``_out``: this input yields an output; ``valid`` 0: an idle cycle);
    collect ``out`` whenever ``out_valid``, each exactly ``latency`` cycles after an input marked ``_out``."""
    got = []

    async def bench(ctx):
        issued = set()
        for t in range(len(inputs) + latency + 2):
            if t < len(inputs):
                for name, value in inputs[t].items():
                    if name != "_out":
                        ctx.set(getattr(unit, name), value)
                if inputs[t]["_out"]:
                    issued.add(t)
            else:
                ctx.set(unit.valid, 0)
            if ctx.get(unit.out_valid):
                assert t - latency in issued, f"an output in cycle {t}"
                got.append(_unpack(ctx.get(unit.out), 8, lanes))
            await ctx.tick()
        assert len(got) == len(issued)

    _simulate(unit, bench)
    return got


@pytest.mark.parametrize("relu", [False, True])
def test_residual_add_matches_the_reference(relu):
    """Random operands and the extremes (-128, 127) at typical, the smallest and the largest shifts and mantissas;
    each parameter set a reference add op."""
    rng = np.random.default_rng(5 + relu)
    lanes, per_set = 2, 24
    sets = [(int(rng.integers(2**29, 2**31)), int(rng.integers(2**29, 2**31)), 31), (2**31 - 1, 2**31 - 1, 62),
            (2**31 - 1, 1, 1), (1, 2**30, 30), (2**31 - 1, 2**31 - 1, 24), (3 << 28, 5 << 27, 31)]
    unit = ResidualAdd(lanes)
    inputs, expected = [], []
    for m_a, m_b, shift in sets:
        a = rng.integers(-128, 128, (per_set, lanes), dtype=np.int8)
        b = rng.integers(-128, 128, (per_set, lanes), dtype=np.int8)
        a[:4], b[:4] = [[-128], [127], [-128], [127]], [[-128], [127], [127], [-128]]
        op = IntOp("add", "add", ["a", "b"], {"m_a": m_a, "m_b": m_b, "shift": shift, "relu": relu})
        expected.append(run_op(op, [a, b]))
        for t in range(per_set):
            inputs.append({"a": _pack(a[t], 8), "b": _pack(b[t], 8), "m_a": m_a, "m_b": m_b, "shift": shift,
                           "relu": int(relu), "valid": (1 << lanes) - 1, "_out": True})
            if t % 5 == 4:
                inputs.append({"valid": 0, "_out": False})
    got = _drive(unit, inputs, ADD_LATENCY, lanes)
    want = np.concatenate(expected)
    assert np.array_equal(np.array(got, dtype=np.int8), want)
    assert len(np.unique(want)) > 40 and {127, 0 if relu else -128} <= set(want.ravel().tolist())


@pytest.mark.parametrize("height, width", [(4, 4), (7, 3), (1, 1)])
def test_global_average_pool_matches_the_reference(height, width):
    """Maps back to back (a map's first pixel right after the previous map's last) and with idle cycles; random
    maps and maps at -128 and 127 throughout; scales that round, and that saturate."""
    rng = np.random.default_rng(height * 8 + width)
    lanes = 3
    maps = rng.integers(-128, 128, (4, lanes, height, width), dtype=np.int8)
    maps[2, 0], maps[2, 1], maps[3, 2] = 127, -128, -128
    unit = GlobalAvgPool(lanes)
    inputs, expected = [], []
    for k, image in enumerate(maps):
        real = (0.7, 1.3, 9.0, 0.05)[k] / (height * width)  # 9.0: saturates at both ends
        m, shift = quantize_multiplier(real)
        op = IntOp("gap", "avgpool", ["x"], {"kernel": [height, width], "stride": [height, width],
                                             "padding": [0, 0], "m": m, "shift": shift})
        expected.append(run_op(op, [image[None]]).reshape(lanes))
        pixels = image.reshape(lanes, -1).T
        for p, pixel in enumerate(pixels):
            last = p == len(pixels) - 1
            inputs.append({"data": _pack(pixel, 8), "valid": 1, "last": int(last), "mult": m, "shift": shift,
                           "_out": last})
            if k % 2 and p % 3 == 1:
                inputs.append({"valid": 0, "last": 0, "_out": False})
    got = _drive(unit, inputs, AVGPOOL_LATENCY, lanes)
    want = np.stack(expected)
    assert np.array_equal(np.array(got, dtype=np.int8), want)
    assert {127, -128} <= set(want[2].tolist())


# --- The resource model counts the post-processing unit from its synthesis. ---


def test_the_resource_model_counts_the_synthesized_post_processing_unit():
    """The table's requantizer is what yosys gives for today's RTL (synthesized again here), and a configuration
    gets C x P lanes of requantizer, max pool and residual add plus C average-pool lanes on top of its array."""
    from edgesparse.accel.resources import estimate_resources, load_calibration
    from edgesparse.rtl.ppu import ppu_verilog
    from edgesparse.rtl.synth import synthesize

    table = load_calibration()["ppu"]
    measured = synthesize(ppu_verilog("requantizer"), "requantizer")
    assert {k: measured[k] for k in ("dsp", "lut", "ff")} == {k: table["requantizer"][k] for k in ("dsp", "lut", "ff")}
    assert table["requantizer"]["dsp"] >= 2 and table["residual_add"]["dsp"] >= 2  # wider than one DSP48E1
    config = AcceleratorConfig(8, 8, 16, 1, pixels_per_cycle=2)
    res = estimate_resources(config)
    lanes = 8 * 2
    assert res.post_processing == {
        key: lanes * sum(table[unit][key] for unit in ("requantizer", "max_pool", "residual_add"))
        + 8 * table["avgpool"][key] for key in ("dsp", "lut", "ff")}
    assert "post-processing: 16 synthesized lanes" in res.source
    bare = estimate_resources(config, {**load_calibration(), "ppu": {}})
    assert bare.post_processing is None and "post-processing unit not counted" in bare.source
    assert res.dsps - bare.dsps == res.post_processing["dsp"]


# --- The generated Verilog in Icarus (cocotb 2): the same streams, the same answers and cycles. ---


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog is not installed")
def test_requantizer_and_residual_add_verilog_match_in_icarus(tmp_path):
    """The signed arithmetic of the exported Verilog (the arithmetic shift, the signed x unsigned partial products,
    the saturation) on the edge values, in Icarus and in Amaranth's simulator: the same outputs in the same cycles,
    equal to the reference."""
    from edgesparse.rtl.engine_bench import run_stream_amaranth, run_stream_icarus
    from edgesparse.rtl.ppu import ppu_verilog

    cases = [(a, b, m, s) for a in (-2**31, -1, 0, 2**31 - 1) for b in (-2**31, 0, 2**31 - 1)
             for m in (1, 2**30 + 12345, 2**31 - 1) for s in (1, 31, 62)]
    cases += [(5, 0, 1, 1), (-5, 0, 1, 1), (-3, 0, 1, 1), (3 << 29, 0, 1, 30), (-(3 << 29), 0, 1, 30)]
    steps = [{"acc": a & 0xFFFFFFFF, "bias": b & 0xFFFFFFFF, "mult": m, "shift": s, "relu": t % 2, "valid": 1}
             for t, (a, b, m, s) in enumerate(cases)]
    expected = [(t + REQUANT_LATENCY, _exact(a + b, m, s, bool(t % 2)) & 0xFF) for t, (a, b, m, s) in enumerate(cases)]
    amaranth = run_stream_amaranth(Requantizer(1), steps, REQUANT_LATENCY + 2)
    icarus = run_stream_icarus(ppu_verilog("requantizer"), "requantizer", steps, REQUANT_LATENCY + 2,
                               tmp_path / "requantizer")
    assert amaranth == icarus == expected

    rng = np.random.default_rng(3)
    pairs = rng.integers(-128, 128, (40, 2))
    pairs[:4] = [[-128, -128], [127, 127], [-128, 127], [127, -128]]
    params = [(2**31 - 1, 2**31 - 1, 31), (1, 2**30, 30), (int(rng.integers(2**29, 2**31)), 3 << 28, 31),
              (2**31 - 1, 1, 62)]
    steps, expected = [], []
    for t, (a, b) in enumerate(pairs):
        m_a, m_b, shift = params[t % len(params)]
        relu = t % 3 == 0
        op = IntOp("add", "add", ["a", "b"], {"m_a": m_a, "m_b": m_b, "shift": shift, "relu": relu})
        steps.append({"a": int(a) & 0xFF, "b": int(b) & 0xFF, "m_a": m_a, "m_b": m_b, "shift": shift,
                      "relu": int(relu), "valid": 1})
        want = run_op(op, [np.array([a], dtype=np.int8), np.array([b], dtype=np.int8)])
        expected.append((t + ADD_LATENCY, int(want[0]) & 0xFF))
    amaranth = run_stream_amaranth(ResidualAdd(1), steps, ADD_LATENCY + 2)
    icarus = run_stream_icarus(ppu_verilog("residual_add"), "residual_add", steps, ADD_LATENCY + 2,
                               tmp_path / "residual_add")
    assert amaranth == icarus == expected
