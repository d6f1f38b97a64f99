"""Co-simulation of the generated RTL against the cycle-accurate simulator, on real layer data.

- Classic array: a layer's folds (weights read back from the accelerator's memory image, activations from the
  integer graph) are written into the fold unit's memories and run one by one; every sum leaving the bottom row is
  recorded with its pixel, column and cycle, against :func:`~edgesparse.accel.array.clock_fold`.
- Pipelined array: a layer's consecutive folds are written into the layer unit's memories and run back to back by
  its own controller; every valid sum leaving an output port is recorded with its cycle, against
  :func:`~edgesparse.accel.array.clock_layer` (cycles aligned on the first weight load).

The same async drivers run under Amaranth's simulator and under cocotb (Icarus Verilog): each gives them a small
``Bus`` adapter (set, get, tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

import math

import torch

from edgesparse.accel.array import FoldInputs, clock_fold, iter_folds, row_activations
from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import FoldGeometry, fold_geometry
from edgesparse.accel.mapping import LoweredLayer, lower
from edgesparse.accel.memory_image import read_fold
from edgesparse.accel.schedule import LayerSchedule, LayerShape, fold_cycles, schedule_layer
from edgesparse.errors import ConfigError
from edgesparse.quant.graph import IntOp
from edgesparse.rtl.pe import PSUM_BITS, index_bits
from edgesparse.pattern import BlockPattern


@dataclass(frozen=True)
class FoldJob:
    """One fold as memory words, with what the stepped simulator says comes out of it."""

    inputs: FoldInputs  # where the fold sits in the layer, and its arrays
    weight_words: list[int]  # R words, bottom row first
    act_words: list[int]  # one word per group of L pixels
    expected_out: np.ndarray  # int64 [pixels, C]
    expected_when: np.ndarray  # int64 [pixels, C], the fold's local cycle

    @property
    def pixels(self) -> int:
        return len(self.inputs.acts)


def weight_words(weights: np.ndarray, index: np.ndarray, m: int) -> list[int]:
    """R words of C (int8 value, index) pairs, bottom row first."""
    width = 8 + max(1, index_bits(m))
    words = []
    for row in range(weights.shape[0] - 1, -1, -1):
        word = 0
        for j, (value, idx) in enumerate(zip(weights[row], index[row])):
            word |= ((int(value) & 0xFF) | (int(idx) << 8)) << (j * width)
        words.append(word)
    return words


def act_words(acts: np.ndarray, lanes: int = 1) -> list[int]:
    """One word per group of ``lanes`` pixels: row i, lane l, activation k at bits [((i * L + l) * M + k) * 8, +8)
    (a missing last pixel is zeros)."""
    pixels, rows, m = acts.shape
    groups = -(-pixels // lanes)
    padded = np.zeros((groups * lanes, rows, m), dtype=np.int64)
    padded[:pixels] = acts
    flat = padded.reshape(groups, lanes, rows, m).transpose(0, 2, 1, 3).reshape(groups, -1) & 0xFF
    return [int.from_bytes(bytes(row.astype(np.uint8)), "little") for row in flat]


def layer_jobs(layer: LoweredLayer, x: np.ndarray, plan: LayerSchedule, config: AcceleratorConfig,
               image: bytes | None = None, layout: dict[str, Any] | None = None) -> list[FoldJob]:
    """Every fold of ``layer`` on ``x``; with a memory image, the weights come from it (and must match)."""
    jobs = []
    for fold in iter_folds(layer, x, plan, config):
        weights, index = fold.weights, fold.index
        if image is not None and layout is not None:
            col_fold = fold.columns.start // config.cols
            row_fold = fold.fold % plan.row_folds
            weights, index = read_fold(image, layout, layer.name, col_fold, row_fold)
            if not (np.array_equal(weights, fold.weights) and np.array_equal(index, fold.index)):
                raise AssertionError(f"memory image fold ({col_fold}, {row_fold}) of {layer.name} differs from the "
                                     f"lowered layer")
        out, when = clock_fold(fold.weights, fold.index, fold.acts, config, int(plan.fold_lengths[fold.fold]))
        jobs.append(FoldJob(fold, weight_words(weights, index, config.m),
                            act_words(fold.acts, config.pixels_per_cycle), out, when))
    return jobs


def random_layer(config: AcceleratorConfig, n: int, m: int, cin: int, cout: int, size: int, kernel: int = 3,
                 stride: int = 1, padding: int = 1, seed: int = 0) -> tuple[LoweredLayer, np.ndarray, LayerSchedule]:
    """A random int8 conv whose weights follow N:M exactly, lowered for ``config``, with a random input and its
    schedule."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(-127, 128, size=(cout, cin, kernel, kernel)).astype(np.int8)
    pattern = BlockPattern(n, m)
    weight = weight * pattern.mask(torch.from_numpy(rng.random(weight.shape).astype(np.float32)), n / m).numpy()
    op = IntOp("conv", "conv", ["input"], {"kernel": [kernel, kernel], "stride": [stride, stride],
                                           "padding": [padding, padding]}, {"weight": weight.astype(np.int8)})
    layer = lower(op, str(pattern), config)
    out_hw = layer.output_size(size, size)
    shape = LayerShape("conv", layer.rows_needed, cout, out_hw, (cin, size, size), (kernel, kernel),
                       (stride, stride), cout * cin * kernel * kernel * math.prod(out_hw))
    x = rng.integers(-128, 128, size=(cin, size, size)).astype(np.int8)
    return layer, x, schedule_layer(shape, config)


class Bus(Protocol):
    """What the driver needs of a simulator: set an input, read an output, advance one clock edge."""

    def set(self, name: str, value: int) -> None: ...

    def get(self, name: str, signed: bool = False) -> int: ...

    async def tick(self) -> None: ...


async def drive_folds(bus: Bus, jobs: Iterable[FoldJob], config: AcceleratorConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run each job on the fold unit; return per job the sums ``[pixels, C]`` and their local cycles."""
    R, C, L = config.rows, config.cols, config.pixels_per_cycle
    results, loaded_acts = [], None
    for job in jobs:
        groups = len(job.act_words)
        fresh = job.act_words != loaded_acts
        for k in range(max(R, groups if fresh else 0)):
            bus.set("w_we", int(k < R))
            if k < R:
                bus.set("w_addr", k)
                bus.set("w_data", job.weight_words[k])
            bus.set("a_we", int(fresh and k < groups))
            if k < groups:
                bus.set("a_addr", k)
                bus.set("a_data", job.act_words[k])
            await bus.tick()
        bus.set("w_we", 0)
        bus.set("a_we", 0)
        loaded_acts = job.act_words
        bus.set("pixels", job.pixels)
        bus.set("start", 1)
        await bus.tick()
        bus.set("start", 0)
        out = np.zeros((job.pixels, C), dtype=np.int64)
        when = np.full((job.pixels, C), -1, dtype=np.int64)
        for _ in range(fold_cycles(config, job.pixels)):
            await bus.tick()
            valid = bus.get("out_valid")
            if not (bus.get("out_live") and valid):
                continue
            sums, cycle, group = bus.get("psum_bottom"), bus.get("out_cycle", True), bus.get("out_group", True)
            for bit in range(C * L):
                if valid >> bit & 1:
                    column, lane = divmod(bit, L)
                    value = sums >> (bit * PSUM_BITS) & ((1 << PSUM_BITS) - 1)
                    pixel = (group - column) * L + lane
                    out[pixel, column] = value - (1 << PSUM_BITS) if value >> (PSUM_BITS - 1) else value
                    when[pixel, column] = cycle
        if bus.get("busy"):
            raise AssertionError("the fold unit is still busy after the fold's cycle count")
        results.append((out, when))
    return results


def compare(jobs: list[FoldJob], results: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Raise, naming the first fold, pixel and column, where the RTL and the simulator differ."""
    for number, (job, (out, when)) in enumerate(zip(jobs, results, strict=True)):
        for name, rtl, sim in (("value", out, job.expected_out), ("cycle", when, job.expected_when)):
            bad = np.argwhere(rtl != sim)
            if len(bad):
                pixel, column = bad[0]
                raise AssertionError(f"fold {number}: {name} of pixel {pixel}, column {column}: RTL {rtl[pixel, column]}"
                                     f", simulator {sim[pixel, column]} ({len(bad)} mismatches)")


def _run_amaranth(unit, driver) -> Any:
    """Run the async ``driver(bus)`` against ``unit`` in Amaranth's simulator; return what it returns."""
    from amaranth.sim import Simulator

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    result: list = []

    class AmaranthBus:
        def __init__(self, ctx):
            self.ctx = ctx

        def set(self, name: str, value: int) -> None:
            self.ctx.set(getattr(unit, name), value)

        def get(self, name: str, signed: bool = False) -> int:
            return int(self.ctx.get(getattr(unit, name)))

        async def tick(self) -> None:
            await self.ctx.tick()

    async def bench(ctx):
        result.append(await driver(AmaranthBus(ctx)))

    simulator.add_testbench(bench)
    simulator.run()
    return result[0]


def run_amaranth(jobs: list[FoldJob], config: AcceleratorConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the jobs on the fold unit in Amaranth's simulator."""
    from edgesparse.rtl.array import FoldUnit

    unit = FoldUnit(config.rows, config.cols, config.m, max(job.pixels for job in jobs), config.pixels_per_cycle)
    return _run_amaranth(unit, lambda bus: drive_folds(bus, jobs, config))


def run_cocotb(text: str, top: str, test_module: str, payload: Any, build_dir: str | Path) -> Any:
    """Build Verilog ``text`` (module ``top``) with Icarus and run the cocotb ``test_module`` on ``payload``
    (pickled at ``$EDGESPARSE_PAYLOAD``; timescale 1ns/1ps); return what the test pickled at
    ``$EDGESPARSE_RESULT``."""
    import os
    import pickle
    import sys

    from cocotb_tools.runner import get_runner

    from edgesparse.rtl.verilog import write_verilog

    build_dir = Path(build_dir)
    source = write_verilog(text, build_dir / f"{top}.v")
    payload_path, result_path = build_dir / "payload.pkl", build_dir / "result.pkl"
    payload_path.write_bytes(pickle.dumps(payload))
    venv_bin = str(Path(sys.executable).parent)  # cocotb's runner calls cocotb-config from PATH
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    runner = get_runner("icarus")
    runner.build(sources=[source], hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"),
                 always=True, log_file=build_dir / "build.log")
    result_path.unlink(missing_ok=True)
    runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir,
                extra_env={"EDGESPARSE_PAYLOAD": str(payload_path), "EDGESPARSE_RESULT": str(result_path)},
                log_file=build_dir / "test.log")
    if not result_path.exists():
        raise AssertionError(f"the cocotb run wrote no results; see {build_dir / 'test.log'}")
    return pickle.loads(result_path.read_bytes())


def _run_icarus(text: str, top: str, payload: tuple, build_dir: str | Path) -> Any:
    """:mod:`edgesparse.rtl.cocotb_bench` on ``payload`` (``(kind, work, config)``) in Icarus."""
    return run_cocotb(text, top, "edgesparse.rtl.cocotb_bench", payload, build_dir)


def run_icarus(jobs: list[FoldJob], config: AcceleratorConfig, build_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the jobs on the exported Verilog in Icarus Verilog through cocotb (timescale 1ns/1ps)."""
    from edgesparse.rtl.verilog import fold_unit_verilog

    text = fold_unit_verilog(config.rows, config.cols, config.m, max(job.pixels for job in jobs),
                             config.pixels_per_cycle)
    return _run_icarus(text, "fold_unit", ("fold", jobs, config), build_dir)


# --- The pipelined array: a layer's consecutive folds on the layer unit, against clock_layer. ---


@dataclass(frozen=True)
class LayerProgram:
    """The first ``folds`` folds of a layer as the layer unit's memory contents, and where their outputs go."""

    geometry: FoldGeometry
    folds: int
    weight_words: list[int]  # R words per fold, bottom row first
    lengths: list[int]  # stream length L_f per fold
    stream_words: list[int]  # L_f words per fold, folds in order

    @property
    def units(self) -> int:
        """Units (tile, column fold) whose row folds all run: their outputs are final."""
        return self.folds // self.geometry.row_folds


def stream_words(geometry: FoldGeometry, row_acts: np.ndarray, fold: int, m: int) -> list[int]:
    """The L_f stream words of one fold (the feeder's output, see :mod:`edgesparse.rtl.layer_unit`): row i of
    segment k gets group ``k L + g`` of the fold's tile, valid bits on the segments' bottom rows, top bits on their
    first rows."""
    tile, _, row_fold = geometry.fold_position(fold)
    R, P = geometry.rows, geometry.lanes
    seg, length = geometry.segment_rows(row_fold), geometry.stream_length(tile, row_fold)
    rows = np.arange(R)
    slot = rows % seg
    group = (rows // seg).reshape(1, -1) * length + np.arange(length).reshape(-1, 1)  # [L, R]
    local = group[..., None] * P + np.arange(P)  # [L, R, P]
    real = (group < geometry.groups(tile))[..., None] & (local < int(geometry.tile_sizes[tile]))
    take = real & (slot < int(geometry.rows_in[row_fold])).reshape(1, -1, 1)
    vectors = np.zeros((length, R, P, m), dtype=np.int64)
    source = np.broadcast_to((row_fold * R + slot).reshape(1, -1, 1), take.shape)
    vectors[take] = row_acts[tile * geometry.tile_pixels + local[take], source[take]]
    valid = real & (slot == seg - 1).reshape(1, -1, 1)
    flags = np.concatenate([valid.reshape(length, -1), np.broadcast_to(slot == 0, (length, R))], axis=1)
    data = np.concatenate([(vectors.reshape(length, -1) & 0xFF).astype(np.uint8),
                           np.packbits(flags.astype(np.uint8), axis=1, bitorder="little")], axis=1)
    # Flags start right after the vectors, which fill whole bytes: the bytes concatenate.
    return [int.from_bytes(bytes(row), "little") for row in data]


def layer_program(layer: LoweredLayer, x: np.ndarray, shape: LayerShape, config: AcceleratorConfig,
                  folds: int | None = None, image: bytes | None = None,
                  layout: dict[str, Any] | None = None) -> LayerProgram:
    """The layer unit's memories for the first ``folds`` folds (all by default; whole units) of ``layer`` on
    ``x``; with a memory image, each fold's rows must equal the image's (read back through its layout)."""
    geometry = fold_geometry(shape, config)
    folds = geometry.folds if folds is None else folds
    if not 0 < folds <= geometry.folds or folds % geometry.row_folds:
        raise ConfigError(f"run whole units of {geometry.row_folds} row folds, at most {geometry.folds} folds; "
                          f"got {folds}")
    row_acts = row_activations(layer, x).astype(np.int64)
    weights, words = [], []
    for fold in range(folds):
        values, index = geometry.fold_weights(layer.values, layer.index, fold)
        if image is not None and layout is not None:
            _, col_fold, row_fold = geometry.fold_position(fold)
            stored, stored_index = read_fold(image, layout, layer.name, col_fold, row_fold)
            height = int(geometry.rows_in[row_fold])
            if not (np.array_equal(stored[:height], values[:height])
                    and np.array_equal(stored_index[:height], index[:height])):
                raise AssertionError(f"memory image fold ({col_fold}, {row_fold}) of {layer.name} differs")
        weights += weight_words(values, index, config.m)
        words += stream_words(geometry, row_acts, fold, config.m)
    return LayerProgram(geometry, folds, weights, geometry.stream_lengths()[:folds].tolist(), words)


@dataclass(frozen=True)
class LayerRecord:
    """What the layer unit put out: every cycle's row-0 entry, and every valid sum with its port and column."""

    entries: dict[int, tuple[int, int]]  # cycle -> (fold, group step) entering row 0
    sums: list[tuple[int, int, int, int, int]]  # (cycle, port, column, lane, value)


async def drive_layer(bus: Bus, program: LayerProgram, config: AcceleratorConfig) -> LayerRecord:
    """Write the unit's memories, start it, and record every valid output until the array has drained."""
    R, C, L, S = config.rows, config.cols, config.pixels_per_cycle, config.segments
    writes = (("w", program.weight_words), ("n", program.lengths), ("a", program.stream_words))
    for k in range(max(len(words) for _, words in writes)):
        for prefix, words in writes:
            bus.set(f"{prefix}_we", int(k < len(words)))
            if k < len(words):
                bus.set(f"{prefix}_addr", k)
                bus.set(f"{prefix}_data", words[k])
        await bus.tick()
    for prefix, _ in writes:
        bus.set(f"{prefix}_we", 0)
    bus.set("folds", program.folds)
    bus.set("start", 1)
    await bus.tick()
    bus.set("start", 0)
    entries, sums = {}, []
    drain, limit = R + C + config.product_stages + 4, 8 * (len(program.stream_words) + program.folds * R) + 64
    for _ in range(limit):
        await bus.tick()
        cycle = bus.get("out_cycle")
        if bus.get("entry_live"):
            entries[cycle] = (bus.get("entry_fold"), bus.get("entry_group"))
        valid = bus.get("valid_out")
        if valid:
            word = bus.get("psum_out")
            for bit in range(S * C * L):
                if valid >> bit & 1:
                    value = word >> (bit * PSUM_BITS) & ((1 << PSUM_BITS) - 1)
                    port, rest = divmod(bit, C * L)
                    sums.append((cycle, port, *divmod(rest, L),
                                 value - (1 << PSUM_BITS) if value >> (PSUM_BITS - 1) else value))
        if not bus.get("busy"):
            drain -= 1
            if drain == 0:
                return LayerRecord(entries, sums)
    raise AssertionError(f"the layer unit was still busy after {limit} cycles")


def layer_outputs(record: LayerRecord, program: LayerProgram, config: AcceleratorConfig,
                  offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The layer's accumulators ``[pixels, Cout]`` summed over row folds and the cycle (plus ``offset``) each
    final sum left, from the unit's record: a sum leaving port k's row b at column j in cycle t entered row 0 at
    ``t - b - j - d`` (d: the PE's product stages), as the group step g of the fold the monitor saw there; it
    belongs to that fold's segment ``b // (R / s)``, group ``that * L_f + g``."""
    geometry, R, C, P = program.geometry, config.rows, config.cols, config.pixels_per_cycle
    shape = geometry.shape
    acc = np.zeros((shape.pixels, shape.cout), dtype=np.int64)
    cycles = np.full(acc.shape, -1, dtype=np.int64)
    port_rows = [(k + 1) * config.segment_rows - 1 for k in range(config.segments)]
    for cycle, port, column, lane, value in sorted(record.sums):
        row = port_rows[port]
        entered = cycle - row - column - config.product_stages
        if entered not in record.entries:
            raise AssertionError(f"a valid sum left port {port}, column {column} at cycle {cycle}, but nothing "
                                 f"entered row 0 at cycle {entered}")
        fold, step = record.entries[entered]
        tile, col_fold, row_fold = geometry.fold_position(fold)
        group = row // geometry.segment_rows(row_fold) * program.lengths[fold] + step
        pixel, channel = tile * geometry.tile_pixels + group * P + lane, col_fold * C + column
        if channel >= shape.cout:
            continue  # a column the fold leaves empty
        acc[pixel, channel] += value
        cycles[pixel, channel] = cycle + offset
    return acc, cycles


def compare_layer(program: LayerProgram, rtl: tuple[np.ndarray, np.ndarray],
                  model: tuple[np.ndarray, np.ndarray]) -> int:
    """Raise, naming the first pixel and channel, where the unit's outputs of its whole units differ from the
    model's (values and cycles); return how many sums were compared."""
    geometry, checked = program.geometry, 0
    for unit in range(program.units):
        tile, col_fold = divmod(unit, geometry.col_folds)
        span, columns = geometry.tile_range(tile), geometry.col_slice(col_fold)
        for name, got, want in zip(("value", "cycle"), rtl, model):
            got, want = got[span.start:span.stop, columns], want[span.start:span.stop, columns]
            bad = np.argwhere(got != want)
            if len(bad):
                pixel, column = bad[0]
                raise AssertionError(f"unit {unit}: {name} of pixel {span.start + pixel}, channel "
                                     f"{columns.start + column}: RTL {got[pixel, column]}, model "
                                     f"{want[pixel, column]} ({len(bad)} mismatches)")
        checked += len(span) * (columns.stop - columns.start)
    return checked


def layer_unit_for(program: LayerProgram, config: AcceleratorConfig):
    """The layer unit just big enough for ``program``."""
    from edgesparse.rtl.layer_unit import LayerUnit

    return LayerUnit(config.rows, config.cols, config.m, config.pixels_per_cycle, config.segments,
                     max_folds=program.folds, max_words=len(program.stream_words), stages=config.product_stages)


def run_layer_amaranth(program: LayerProgram, config: AcceleratorConfig) -> LayerRecord:
    """Run ``program`` on the layer unit in Amaranth's simulator."""
    unit = layer_unit_for(program, config)
    return _run_amaranth(unit, lambda bus: drive_layer(bus, program, config))


def run_layer_icarus(program: LayerProgram, config: AcceleratorConfig, build_dir: str | Path) -> LayerRecord:
    """Run ``program`` on the layer unit's Verilog in Icarus Verilog through cocotb."""
    from amaranth.back import verilog

    text = verilog.convert(layer_unit_for(program, config), name="layer_unit")
    return _run_icarus(text, "layer_unit", ("layer", program, config), build_dir)
