# amaranth: UnusedElaboratable=no
"""The layer engine (:mod:`edgesparse.rtl.engine`) in Amaranth's simulator: a whole layer from DRAM to DRAM —
transfers, feeders, the array, the output stage and the write-back — against the integer reference (every output
byte in DRAM) and the cycle model (the cycle of every output write and of the layer's end), at a DRAM rate that
stalls the array and at one that does not.

(The first line tells Amaranth not to warn about the components the validation tests refuse: never elaborated.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesparse.accel import AcceleratorConfig
from edgesparse.accel.simulate import simulate
from edgesparse.errors import AcceleratorError
from edgesparse.pattern import BlockPattern
from edgesparse.quant.graph import INPUT, IntGraph, IntOp
from edgesparse.rtl.engine_driver import (averaged_chain, check_engine, engine_program, random_chain, random_conv,
                                          residual_chain, run_engine)


def _graph(cin: int, cout: int, size: int, *, kernel: int = 3, stride: int = 1, padding: int = 1, pool: bool = False,
           n: int = 1, m: int = 16, relu: bool = True, seed: int = 0) -> tuple[IntGraph, np.ndarray]:
    """A random N:M int8 conv (int32 biases, requantization spanning int8 and saturating at both ends), optionally
    followed by a 2x2 max pool, and a random input image."""
    rng = np.random.default_rng(seed)
    ops = [random_conv(rng, "conv", INPUT, cin, cout, kernel, stride, padding, n, m, relu, bias_bits=14,
                       shifts=(36, 40))]
    if pool:
        ops.append(IntOp("pool", "maxpool", ["conv"], {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]}))
    graph = IntGraph((cin, size, size), 1.0, (0.0,) * cin, (1.0,) * cin, ops, {}, {"conv": str(BlockPattern(n, m))})
    image = rng.integers(-128, 128, size=(cin, size, size)).astype(np.int8)
    return graph, image


def _config(rate: float, **changes) -> AcceleratorConfig:
    """A 4x4 1:16 array with buffers small enough to cut an 8x8 map into tiles."""
    settings = dict(rows=4, cols=4, m=16, n=1, weight_buffer_kib=0.1, input_buffer_kib=2.0, output_buffer_kib=0.25,
                    dram_bytes_per_cycle=rate)
    return AcceleratorConfig(**{**settings, **changes})


def _run(graph, image, config):
    """Run the graph's layers through the engine, check them, and return the cycle model's first layer."""
    program = engine_program(graph, config, image)
    check_engine(program, run_engine(program))
    return next(layer.schedule for layer in simulate(graph, config, mode="analytic").layers if layer.schedule)


def _stream_gaps(schedule, rows: int) -> int:
    """Cycles the array waited between folds after the first (0: the DMA kept up)."""
    lengths = schedule.fold_lengths
    return int((np.diff(schedule.starts) - np.maximum(lengths[:-1], rows)).sum())


@pytest.mark.parametrize("rate", [4.0])  # (a slower DRAM: the chain below and benchmarks/engine_cosim.py)
def test_padded_conv_with_row_and_column_folds_and_tiles(rate):
    graph, image = _graph(cin=20, cout=6, size=8)  # 2 channel blocks x 9 positions: 5 row folds, 2 column folds
    schedule = _run(graph, image, _config(rate))
    geometry = schedule.geometry
    assert geometry.tiles > 1 and geometry.row_folds > 1 and geometry.col_folds > 1
    assert _stream_gaps(schedule, 4) > 0  # the input tiles outrun this DMA: the array waits


def test_a_dram_rate_that_keeps_the_array_busy():
    graph, image = _graph(cin=32, cout=32, size=8, seed=3)  # 6 row folds x 8 column folds per tile, 4 tiles
    schedule = _run(graph, image, _config(4.0, weight_buffer_kib=1.0))
    assert schedule.geometry.tiles == 4 and _stream_gaps(schedule, 4) == 0


@pytest.mark.parametrize("rate", [4.0])
def test_conv_then_max_pool(rate):
    graph, image = _graph(cin=16, cout=4, size=8, pool=True, seed=1)
    _run(graph, image, _config(rate))


@pytest.mark.parametrize("rate", [1.5])
def test_strided_conv(rate):
    graph, image = _graph(cin=8, cout=5, size=9, stride=2, seed=2)
    _run(graph, image, _config(rate))


def test_a_pattern_the_array_was_not_built_for_is_refused():
    graph, image = _graph(cin=16, cout=4, size=4, n=1, m=32)
    with pytest.raises(AcceleratorError, match="1:32"):
        engine_program(graph, _config(4.0, m=16), image)


def test_a_tile_that_does_not_fit_the_tile_buffer_is_refused():
    graph, image = _graph(cin=64, cout=4, size=8)
    with pytest.raises(AcceleratorError, match="fit"):
        engine_program(graph, _config(4.0, input_buffer_kib=0.5), image)


def _kinds(program, layer: int) -> set[str]:
    """The kinds of transfer a layer of ``program`` moves."""
    end, start = program.layers[layer]["transfers_end"], program.layers[layer - 1]["transfers_end"] if layer else 0
    return {transfer.kind for transfer in program.transfers[start:end]}


def test_a_residual_block_whose_maps_stay_on_chip():
    """The residency plan's on-chip maps (a roomy input buffer): a stem conv, then the residual block; every map but
    the network's input and the last stays in the output buffer, where the next layer's feeders read it over two
    tiles and the block's add reads its operand (a map two layers back, not at word 0); no transfer moves them.
    Each map's bytes (read from the buffer as its layer ends), every write's cycle and the end equal the reference
    and the cycle model, a layer that writes nothing back ending after its last write."""
    block, image = residual_chain()
    stem = random_conv(np.random.default_rng(17), "stem", INPUT, 8, 8, 3, 1, 1)
    ops = [stem] + [IntOp(op.name, op.kind, ["stem"], op.attrs, op.arrays) if op.name == "conv0" else op
                    for op in block.ops]
    graph = IntGraph(block.input_shape, 1.0, block.input_mean, block.input_std, ops, {},
                     {**block.patterns, "stem": "1:16"})
    program = engine_program(graph, _config(4.0, input_buffer_kib=16.0, output_buffer_kib=0.5), image)
    assert program.size.resident_maps and sorted(program.resident) == [0, 1, 2, 3]
    assert [layer["input_resident"] for layer in program.layers] == [0, 1, 1, 1, 1]
    assert program.layers[3]["operand_resident"] and program.layers[3]["tiles"] == 2
    assert _kinds(program, 0) == {"weights", "input"} and _kinds(program, 4) == {"weights", "output"}
    assert all(_kinds(program, k) == {"weights"} for k in (1, 2, 3))
    # First fit: the stem's map is dead once conv0 has read it, conv0's once the add has.
    assert [layer["out_base"] for layer in program.layers] == [0, 64, 0, 128, 0]
    assert program.layers[3]["operand_base"] == 64
    check_engine(program, run_engine(program))


def test_resnet_s_head_on_a_map_kept_on_chip():
    """The block's sum of two resident maps (one tile), averaged whole, then the int32 logits, at a stalling rate."""
    graph, image = residual_chain(head=True)
    program = engine_program(graph, _config(1.5, input_buffer_kib=16.0), image)
    assert sorted(program.resident) == [0, 1, 2] and program.layers[2]["operand_resident"]
    check_engine(program, run_engine(program))


def test_a_layer_of_a_single_transfer_is_refused():
    """Its input and output on chip and one fold: the controller's end of a layer needs two transfers or more."""
    rng = np.random.default_rng(3)
    ops = [random_conv(rng, "conv1", INPUT, 8, 16, 3, 1, 1), random_conv(rng, "narrow", "conv1", 16, 4, 1, 1, 0),
           random_conv(rng, "conv3", "narrow", 4, 8, 3, 1, 1)]
    patterns = dict.fromkeys(("conv1", "narrow", "conv3"), "1:16")
    graph = IntGraph((8, 4, 4), 1.0, (0.0,) * 8, (1.0,) * 8, ops, {}, patterns)
    image = rng.integers(-128, 128, size=(8, 4, 4)).astype(np.int8)
    with pytest.raises(AcceleratorError, match="layer 'narrow' moves a single DMA transfer"):
        engine_program(graph, _config(4.0, input_buffer_kib=16.0), image)
    assert engine_program(graph, _config(4.0, input_buffer_kib=16.0, resident_maps=False), image).size.resident_maps \
        is False


def test_a_layer_whose_last_stream_outlasts_its_writes_is_refused():
    """A 5x5 map pooled 2x2 in tiles of two rows: the last tile (row 4) feeds no window, writes nothing and, the
    map staying on chip, moves nothing, so the cycle model ends the layer with that tile's stream; the engine ends
    a layer with its last write or transfer. With one tile the layer runs."""
    rng = np.random.default_rng(5)
    ops = [random_conv(rng, "conv1", INPUT, 8, 4, 3, 1, 1),
           IntOp("pool", "maxpool", ["conv1"], {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0]}),
           random_conv(rng, "conv2", "pool", 4, 4, 1, 1, 0)]
    graph = IntGraph((8, 5, 5), 1.0, (0.0,) * 8, (1.0,) * 8, ops, {}, {"conv1": "1:16", "conv2": "1:16"})
    image = rng.integers(-128, 128, size=(8, 5, 5)).astype(np.int8)
    with pytest.raises(AcceleratorError, match="layer 'conv1': its last stream ends after its last write"):
        engine_program(graph, _config(4.0, input_buffer_kib=16.0, output_buffer_kib=10 * 16 / 1024), image)
    assert engine_program(graph, _config(4.0, input_buffer_kib=16.0, output_buffer_kib=0.5), image).resident == {0: 0}


def test_the_cycle_limit_names_the_layer_the_fold_and_the_transfer():
    graph, image = _graph(cin=16, cout=4, size=4)
    program = engine_program(graph, _config(4.0), image)
    program.counts[0] += 1 << 16  # tile 0 waits for one write too many: its write-back never starts
    with pytest.raises(AcceleratorError, match=r"layer 'conv': the engine ran past \d+ cycles, fold \d+ of \d+ .*"
                                               r"DMA transfer \d+ of \d+"):
        run_engine(program)



def test_three_layers_chained_through_dram():
    """Each layer reads the map the previous one wrote back; every map's bytes and every write's absolute cycle
    (from the first DMA request of the run) equal the integer reference's and the cycle model's."""
    graph, image = random_chain()
    program = engine_program(graph, _config(4.0, output_buffer_kib=0.5), image)
    assert len(program.names) == 3
    check_engine(program, run_engine(program))


def test_a_global_average_pool_then_the_classifier():
    """ResNet's head on the engine: a padded 3x3 conv, a second whose map is averaged whole (averages saturating
    at both ends), and a linear layer writing int32 logits; the averaging layer follows one that does not average
    (whose pixels its sums must not keep)."""
    graph, image = averaged_chain()
    program = engine_program(graph, _config(1.5, resident_maps=False), image)
    assert program.size.global_average and [layer["average"] for layer in program.layers] == [0, 1, 0]
    assert {-128, 127} <= set(np.frombuffer(program.outputs[1][1], np.int8).tolist())
    check_engine(program, run_engine(program))


def test_a_residual_block():
    """A residual block through DRAM: the operand (a map two layers back) comes in beside each of the four tiles'
    input rows (the tile's own pixels, into the residual buffer) and is added to the block's requantized bytes
    before they are written; a 1x1 conv reads the sums."""
    graph, image = residual_chain()
    program = engine_program(graph, _config(4.0, resident_maps=False), image)
    assert [layer.get("add") for layer in program.layers] == [0, 0, 1, 0]
    assert sum(t.kind == "residual" for t in program.transfers) == 4
    assert {0, 127} <= set(np.frombuffer(program.outputs[2][1], np.int8).tolist())
    check_engine(program, run_engine(program))


def test_resnet_s_last_block_adds_then_averages():
    """ResNet's head: the block's sum averaged whole (the add ahead of the average pool), then the int32 logits."""
    graph, image = residual_chain(head=True)
    program = engine_program(graph, _config(1.5, resident_maps=False), image)
    assert program.size.residual_add and program.size.global_average
    assert [(layer["add"], layer["average"]) for layer in program.layers] == [(0, 0), (0, 0), (1, 1), (0, 0)]
    check_engine(program, run_engine(program))


def test_a_residual_the_engine_cannot_run_is_refused():
    """An add whose operand is the layer's own input (the cycle model takes it from the input buffer, where the
    engine has no port for it) and an add before a max pool."""
    graph, image = residual_chain()
    ops = [op for op in graph.ops if op.name not in ("conv1", "conv3")]
    own = [IntOp(op.name, op.kind, ["conv0"], op.attrs, op.arrays) if op.name == "conv2" else op for op in ops]
    with pytest.raises(AcceleratorError, match="layer 'conv2': its residual operand is its own input"):
        engine_program(IntGraph(graph.input_shape, 1.0, graph.input_mean, graph.input_std, own, {}, graph.patterns),
                       _config(4.0, resident_maps=False), image)
    pooled = [*graph.ops[:4], IntOp("pool", "maxpool", ["add"], {"kernel": [2, 2], "stride": [2, 2],
                                                                 "padding": [0, 0]})]
    with pytest.raises(AcceleratorError, match="layer 'conv2': the engine adds a residual only to an unpooled map"):
        engine_program(IntGraph(graph.input_shape, 1.0, graph.input_mean, graph.input_std, pooled, {},
                                graph.patterns), _config(4.0, resident_maps=False), image)


def test_an_average_the_engine_cannot_run_is_refused():
    graph, image = averaged_chain()
    with pytest.raises(AcceleratorError, match="layer 'conv2': the engine averages an unpooled map of one tile; this "
                                               "layer runs 2 tiles"):
        engine_program(graph, _config(1.5, output_buffer_kib=0.125, resident_maps=False), image)


def test_int32_logits_of_a_linear_layer_without_requantization():
    """The classifier's path: a 1:16 linear layer (40 -> 10) on a flattened 1x1 map writes each logit's int32 sum
    plus bias (four bytes little-endian a channel; sums within 2^20 of both int32 ends), at the requantized path's
    cycles."""
    rng = np.random.default_rng(6)
    weight = rng.integers(-128, 128, size=(10, 40)).astype(np.int8)
    weight[0, :] = -128  # the most negative products
    mask = BlockPattern(1, 16).mask(torch.from_numpy(rng.random(weight.shape).astype(np.float32)), 1 / 16)
    arrays = {"weight": (weight * mask.numpy()).astype(np.int8),
              "bias": np.array([-2**31 + 2**20, 2**31 - 2**20] + [int(v) for v in rng.integers(-9, 9, 8)], np.int32)}
    ops = [IntOp("flat", "flatten", [INPUT], {}), IntOp("fc", "linear", ["flat"], {"requant": False}, arrays)]
    graph = IntGraph((40, 1, 1), 1.0, (0.0,) * 40, (1.0,) * 40, ops, {}, {"fc": "1:16"})
    image = rng.integers(-128, 128, size=(40, 1, 1)).astype(np.int8)
    image[:, 0, 0] = np.where(np.arange(40) % 2, -128, 127)
    _run(graph, image, _config(1.5))


@pytest.mark.parametrize("capacity", [0, 1, 2, 3])
def test_a_buffers_room_flag_follows_its_count_a_cycle_ahead(capacity):
    """The DMA's start reads a registered room flag (:func:`~edgesparse.rtl.engine._room`), computed a cycle ahead
    without an adder: over random frees, starts (only where there is room, as the DMA does) and layer restarts,
    the flag in every cycle equals a plain count's ``room > 0``, also when a start follows a start (a one-cycle
    transfer, which the engine tests' transfers are too long to make) and when a restart and a start coincide."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from edgesparse.rtl.engine import _room

    m = Module()
    freed, taken, restart = Signal(), Signal(), Signal()
    free = _room(m, "test", capacity, freed, taken, restart)
    rng = np.random.default_rng(capacity)
    mismatches: list = []

    async def bench(ctx):
        room = capacity
        for cycle in range(400):
            assert ctx.get(free) in (0, 1)
            if ctx.get(free) != (room > 0):
                mismatches.append((cycle, room, ctx.get(free)))
            restarts, frees = rng.random() < 0.05, rng.random() < 0.3
            starts = (capacity if restarts else room) > 0 and rng.random() < 0.7  # a new layer's start: its room
            ctx.set(taken, int(starts))
            ctx.set(restart, int(restarts))
            ctx.set(freed, int(frees))
            room = (capacity if restarts else room + frees) - starts
            await ctx.tick()

    simulator = Simulator(m)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    assert not mismatches, f"the room flag differs from its count at (cycle, room, flag) {mismatches[:5]}"


def test_an_engine_of_fewer_than_three_rows_is_refused():
    """Its buffers' write stage needs the loader to read a fold's last two words a cycle after the transfer."""
    from edgesparse.errors import EdgesparseError

    graph, image = _graph(cin=16, cout=4, size=4)
    with pytest.raises(EdgesparseError, match="three rows or more.*got 2"):
        engine_program(graph, _config(4.0, rows=2), image)
