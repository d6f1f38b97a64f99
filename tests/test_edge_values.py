"""Edge values the random tests never draw: the weight and activation -128, single pixels, buffers that barely fit,
every int8 triple of the packed two-pixel multiply, and a schedule worked out by hand."""

import numpy as np
import pytest
import torch

from edgesparse.accel import AcceleratorConfig, lower
from edgesparse.accel.array import run_fast, run_stepped
from edgesparse.accel.packing import pack_two
from edgesparse.accel.geometry import tile_pixels
from edgesparse.accel.schedule import LayerShape, schedule_layer
from edgesparse.accel.simulate import _post_process
from edgesparse.errors import AcceleratorError
from edgesparse.quant.fixedpoint import quantize_multipliers
from edgesparse.quant.graph import IntOp
from edgesparse.quant.reference import run_op
from edgesparse.pattern import BlockPattern

EDGES = (-128, 127, 0, -1)
INT8 = np.arange(-128, 128, dtype=np.int64)


def test_the_packed_multiply_is_exact_for_every_int8_triple():
    a0, a1 = INT8.reshape(1, -1, 1), INT8.reshape(1, 1, -1)
    for chunk in np.split(INT8, 8):  # 8 x 32 x 256 x 256 triples, vectorized per chunk of weights
        w = chunk.reshape(-1, 1, 1)
        low, high = pack_two(w, a0, a1)
        assert np.array_equal(low, np.broadcast_to(w * a0, low.shape)), "lane 0 wrong"
        assert np.array_equal(high, np.broadcast_to(w * a1, high.shape)), "lane 1 wrong"


async def _drive_pe(ctx, pe, cases, m, lanes, top=False):
    """Load each weight, then present its activations (at index ``m - 1``, the others random) and a partial sum.
    The pipelined PE latches the weight into its shadow and switches to it with a ``first`` activation (``top``:
    the PE starts a segment, the partial sum from above is dropped); its sum comes out after its product stages."""
    rng = np.random.default_rng(0)
    got = []
    for w, acts, psum in cases:
        strobes = (pe.shift, pe.latch) if pe.pipelined else (pe.load,)
        for strobe in strobes:
            ctx.set(strobe, 1)
        ctx.set(pe.w_in, w)
        ctx.set(pe.idx_in, m - 1)
        await ctx.tick()
        for strobe in strobes:
            ctx.set(strobe, 0)
        if pe.pipelined:
            ctx.set(pe.w_in, 1)  # the chain moves on: the shadow must hold w
            ctx.set(pe.first_in, 1)
            if pe.segment_top:
                ctx.set(pe.top_in, int(top))
        vector = 0
        for lane, a in enumerate(acts):
            block = [int(v) for v in rng.integers(-128, 128, m)]
            block[m - 1] = a
            for k, value in enumerate(block):
                vector |= (value & 0xFF) << (8 * (lane * m + k))
        ctx.set(pe.act_in, vector)
        ctx.set(pe.psum_in, sum((p & 0xFFFFFFFF) << (32 * lane) for lane, p in enumerate(psum)))
        for _ in range(pe.stages + 1):  # the product stages, then the sum (inputs held)
            await ctx.tick()
        word = ctx.get(pe.psum_out)
        lanes_out = [(word >> (32 * lane)) & 0xFFFFFFFF for lane in range(lanes)]
        got.append([v - (1 << 32) if v >= 1 << 31 else v for v in lanes_out])
    return got


@pytest.mark.parametrize("m, lanes, pipelined, top", [(4, 2, False, False), (1, 2, False, False),
                                                      (4, 1, False, False), (4, 2, True, False), (16, 1, True, True)])
def test_the_rtl_pe_multiplies_the_edge_values(m, lanes, pipelined, top):
    from amaranth.sim import Simulator

    from edgesparse.rtl.pe import SparsePE

    psums = (0, -1, 2**31 - 1 - 2**14, -(2**31) + 2**14)  # the largest sums no int8 product can overflow
    triples = np.array(np.meshgrid(*[EDGES] * (lanes + 1), indexing="ij")).reshape(lanes + 1, -1).T
    cases = [(int(w), [int(a) for a in acts], [psums[(i + lane) % 4] for lane in range(lanes)])
             for i, (w, *acts) in enumerate(triples)]
    pe = SparsePE(m, lanes, pipelined, segment_top=top)
    simulator = Simulator(pe)
    simulator.add_clock(1e-8)
    got: list = []

    async def bench(ctx):
        got.extend(await _drive_pe(ctx, pe, cases, m, lanes, top))

    simulator.add_testbench(bench)
    simulator.run()
    expected = [[(0 if top else p) + w * a for p, a in zip(psum, acts)] for w, acts, psum in cases]
    assert len(cases) == 4 ** (lanes + 1) and got == expected


def _conv(weight: np.ndarray, kernel: int, padding: int, relu: bool) -> IntOp:
    cout = weight.shape[0]
    mult, shift = quantize_multipliers(np.full(cout, 1e-3))
    return IntOp("conv", "conv", ["input"], {"kernel": [kernel, kernel], "stride": [1, 1],
                                             "padding": [padding, padding], "relu": relu},
                 {"weight": weight.astype(np.int8), "bias": np.full(cout, -(2**20), dtype=np.int32),
                  "m": mult, "shift": shift})


def _edge_weight(rng, cout, cin, kernel, pattern: BlockPattern) -> np.ndarray:
    """A weight that follows ``pattern`` with -128 in most kept slots and 127 in the rest."""
    weight = np.where(rng.random((cout, cin, kernel, kernel)) < 0.75, -128, 127)
    mask = pattern.mask(torch.from_numpy(rng.random(weight.shape).astype(np.float32)), pattern.n / pattern.m)
    return weight * mask.numpy()


def _run_all_views(op, spec, x, config):
    layer = lower(op, spec, config)
    cout, cin = op.arrays["weight"].shape[:2]
    kernel = op.attrs["kernel"][0]
    out_h, out_w = layer.output_size(*x.shape[1:])
    shape = LayerShape("conv", layer.rows_needed, cout, (out_h, out_w), tuple(x.shape), (kernel, kernel), (1, 1),
                       cout * cin * kernel**2 * out_h * out_w)
    plan = schedule_layer(shape, config)
    stepped_acc, stepped_cycles = run_stepped(layer, x, plan, config)
    fast_acc, fast_cycles = run_fast(layer, x, plan, config)
    assert np.array_equal(stepped_acc, fast_acc) and np.array_equal(stepped_cycles, fast_cycles)
    out = _post_process(op, fast_acc, (cout, out_h, out_w))
    assert np.array_equal(out, run_op(op, [x[None]]))
    return plan, fast_acc


@pytest.mark.parametrize("kernel, padding", [(1, 0), (3, 1)])
@pytest.mark.parametrize("lanes", [1, 2])
def test_a_single_pixel_of_minus_128_runs_bit_exact(kernel, padding, lanes):
    rng = np.random.default_rng(kernel + lanes)
    pattern = BlockPattern(2, 8)
    cin, cout = 19, 5
    op = _conv(_edge_weight(rng, cout, cin, kernel, pattern), kernel, padding, relu=True)
    x = np.full((cin, 1, 1), -128, dtype=np.int8)
    config = AcceleratorConfig(rows=4, cols=3, m=8, n=2, pixels_per_cycle=lanes)
    plan, acc = _run_all_views(op, str(pattern), x, config)
    assert plan.shape.pixels == 1 and plan.tiles == 1
    assert np.abs(acc).max() >= 128 * 128 * 4  # the edge products were really summed


def test_buffers_that_barely_fit_give_the_smallest_tiles():
    rng = np.random.default_rng(3)
    cin, cout, size, kernel = 6, 4, 5, 3
    op = _conv(_edge_weight(rng, cout, cin, kernel, BlockPattern(1, 4)), kernel, 1, relu=False)
    x = np.where(rng.random((cin, size + 2, size + 2)) < 0.5, -128, 127).astype(np.int8)  # padded by hand
    op.attrs["padding"] = [0, 0]
    rows_bytes = kernel * cin * (size + 2)  # the input rows one output row reads
    fold_bytes = 4 * (2 + 1)  # 4 row words: 2 values and 2 2-bit indices padded to a byte
    config = AcceleratorConfig(rows=4, cols=2, m=4, n=1, input_buffer_kib=2 * rows_bytes / 1024,
                               output_buffer_kib=size * 2 * 4 / 1024,  # exactly one output row of partial sums
                               weight_buffer_kib=2 * fold_bytes / 1024)  # exactly two folds of weights
    plan, _ = _run_all_views(op, "1:4", x, config)
    assert plan.tile_pixels == size and plan.tiles == size  # one output row per tile: both buffers are full
    shape = plan.shape
    with pytest.raises(AcceleratorError, match="do not fit half the input buffer"):
        tile_pixels(shape, AcceleratorConfig(rows=4, cols=2, m=4, n=1, input_buffer_kib=(2 * rows_bytes - 1) / 1024))
    with pytest.raises(AcceleratorError, match="cannot hold one pixel"):
        tile_pixels(shape, AcceleratorConfig(rows=4, cols=2, m=4, n=1, output_buffer_kib=(2 * 4 - 1) / 1024))
    with pytest.raises(AcceleratorError, match="cannot double-buffer one fold"):
        AcceleratorConfig(rows=4, cols=2, m=4, n=1, weight_buffer_kib=(2 * fold_bytes - 1) / 1024)
    roomy = AcceleratorConfig(rows=4, cols=2, m=4, n=1, input_buffer_kib=4 * rows_bytes / 1024)
    assert tile_pixels(shape, roomy) == 4 * size  # half holds 6 input rows: 4 output rows of a 3x3 kernel


def test_a_dram_bound_schedule_matches_the_hand_count():
    """Classic dense 2x2 array, 1 byte per cycle, a 1x1 conv of 4 -> 2 channels on one pixel: two row folds of 4 weight
    bytes; the second also writes the 2 int8 outputs, so its load (6 cycles) outlasts the first fold (5 cycles)."""
    config = AcceleratorConfig(rows=2, cols=2, m=1, n=1, dram_bytes_per_cycle=1, classic=True)  # the classic fold
    shape = LayerShape("hand", 4, 2, (1, 1), (4, 1, 1), (1, 1), (1, 1), 8)
    plan = schedule_layer(shape, config)
    prologue = 4 + 4  # the first fold's weights and the pixel's 4 input bytes
    fold = 2 * 2 + 2 + 1 - 2  # 2R + C + T - 2
    assert plan.fold_lengths.tolist() == [fold, fold] == [5, 5]
    assert plan.starts.tolist() == [prologue, prologue + 6]  # the second fold waits for its 6-byte load
    assert plan.total_cycles == prologue + 6 + fold == 19 and plan.stall_cycles == 19 - 2 * fold == 9
    assert plan.dram_bytes == 4 + 4 + 6
