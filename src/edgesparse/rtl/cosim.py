"""Co-simulation of the generated fold unit against the cycle-accurate simulator, on real layer data.

A layer's folds (weights read back from the accelerator's memory image, activations from the integer graph) are
written into the fold unit's memories and run; every sum leaving the bottom row is recorded with its pixel, column
and cycle. The same async driver runs under Amaranth's simulator and under cocotb (Icarus Verilog): each gives it
a small ``Bus`` adapter (set, get, tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

import math

import torch

from edgesparse.accel.array import FoldInputs, clock_fold, iter_folds
from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.mapping import LoweredLayer, lower
from edgesparse.accel.memory_image import read_fold
from edgesparse.accel.schedule import LayerSchedule, LayerShape, fold_cycles, schedule_layer
from edgesparse.quant.graph import IntOp
from edgesparse.rtl.pe import PSUM_BITS, index_bits
from edgesparse.sparsity.pattern import BlockPattern


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


def run_amaranth(jobs: list[FoldJob], config: AcceleratorConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the jobs on the fold unit in Amaranth's simulator."""
    from amaranth.sim import Simulator

    from edgesparse.rtl.array import FoldUnit

    unit = FoldUnit(config.rows, config.cols, config.m, max(job.pixels for job in jobs), config.pixels_per_cycle)
    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    results: list[tuple[np.ndarray, np.ndarray]] = []

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
        results.extend(await drive_folds(AmaranthBus(ctx), jobs, config))

    simulator.add_testbench(bench)
    simulator.run()
    return results



def run_icarus(jobs: list[FoldJob], config: AcceleratorConfig, build_dir: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run the jobs on the exported Verilog in Icarus Verilog through cocotb (timescale 1ns/1ps)."""
    import os
    import pickle
    import sys

    from cocotb_tools.runner import get_runner

    from edgesparse.rtl.verilog import fold_unit_verilog, write_verilog

    build_dir = Path(build_dir)
    source = write_verilog(fold_unit_verilog(config.rows, config.cols, config.m, max(job.pixels for job in jobs),
                                             config.pixels_per_cycle), build_dir / "fold_unit.v")
    jobs_path, results_path = build_dir / "jobs.pkl", build_dir / "results.pkl"
    jobs_path.write_bytes(pickle.dumps((jobs, config)))
    venv_bin = str(Path(sys.executable).parent)  # cocotb's runner calls cocotb-config from PATH
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    runner = get_runner("icarus")
    runner.build(sources=[source], hdl_toplevel="fold_unit", build_dir=build_dir, timescale=("1ns", "1ps"),
                 always=True, log_file=build_dir / "build.log")
    results_path.unlink(missing_ok=True)
    runner.test(test_module="edgesparse.rtl.cocotb_bench", hdl_toplevel="fold_unit", build_dir=build_dir,
                extra_env={"EDGESPARSE_JOBS": str(jobs_path), "EDGESPARSE_RESULTS": str(results_path)},
                log_file=build_dir / "test.log")
    if not results_path.exists():
        raise AssertionError(f"the cocotb run wrote no results; see {build_dir / 'test.log'}")
    return pickle.loads(results_path.read_bytes())
