"""Whole networks on the accelerator in three views of one machine: stepped, fast and analytic.

Weighted ops (conv, linear) run on the array, one layer after another. The post-processing unit adds the bias,
requantizes, applies ReLU and runs the ops that follow in the stream (max/average pool, residual add, flatten) at
the rate outputs leave the array. On the pipelined array its pipeline delays each layer's writes (and so its
write-back and its end) by a fixed latency (:mod:`edgesparse.accel.schedule`), maps hold every pixel's channels
padded to the array's M, :mod:`edgesparse.accel.residency` decides which maps stay on chip (the rest are written
pooled and read back), and each layer starts from what the previous one left
(:class:`~edgesparse.accel.schedule.Boundary`); the stepped view chains its own measured boundaries, the analytic
and fast views the schedule's. On the classic array every output goes to DRAM and a
residual add reads its second operand from DRAM. ``stepped`` and ``fast`` compute every output (bit-exact
against the integer reference); ``analytic`` computes cycles and traffic only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgesparse.accel.array import clock_layer, run_fast, run_stepped
from edgesparse.accel.bound import layer_bound
from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import LayerShape
from edgesparse.accel.mapping import lower, slots_for
from edgesparse.accel.residency import hosted_add, hosted_average, hosted_ops, hosted_pool, plan_maps
from edgesparse.accel.schedule import Boundary, LayerSchedule, prologue_bytes, schedule_layer
from edgesparse.errors import AcceleratorError
from edgesparse.progress import progress_bar
from edgesparse.quant.fixedpoint import requantize
from edgesparse.quant.graph import INPUT, WEIGHTED, IntGraph, IntOp
from edgesparse.quant.reference import run_op

MODES = ("stepped", "fast", "analytic")


@dataclass
class LayerResult:
    """One op's share of a frame."""

    name: str
    kind: str
    start_cycle: int
    cycles: int
    dram_bytes: int
    dense_macs: int = 0
    real_macs: int = 0
    schedule: LayerSchedule | None = None
    output_cycles: np.ndarray | None = None  # [pixels, Cout], absolute cycles (stepped and fast)

    @property
    def weighted(self) -> bool:
        """The layer ran on the array."""
        return self.kind in WEIGHTED

    def pe_utilization(self, config: AcceleratorConfig) -> float:
        """MACs performed over the array's MAC slots (PEs x pixels per cycle x cycles)."""
        slots = config.pes * config.pixels_per_cycle * self.cycles
        return self.real_macs / slots if slots else 0.0

    def as_row(self, config: AcceleratorConfig) -> dict:
        return {"name": self.name, "kind": self.kind, "cycles": self.cycles,
                "pe_utilization": round(self.pe_utilization(config), 6), "dram_bytes": self.dram_bytes,
                "folds": self.schedule.folds if self.schedule else 0,
                "stall_cycles": self.schedule.stall_cycles if self.schedule else 0,
                "dense_macs": self.dense_macs, "real_macs": self.real_macs,
                "bound_cycles": round(layer_bound(self.schedule.shape, config).cycles) if self.schedule else 0,
                **(self.schedule.buffer_bytes if self.schedule and self.schedule.buffer_bytes else {})}


@dataclass
class SimulationResult:
    """A frame on the accelerator: per-layer results, totals and (stepped/fast) the output."""

    config: AcceleratorConfig
    mode: str
    layers: list[LayerResult]
    output: np.ndarray | None = None
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def total_cycles(self) -> int:
        return sum(layer.cycles for layer in self.layers)

    @property
    def frames_per_second(self) -> float:
        """Frames (of ``batch`` images each) per second."""
        return self.config.clock_mhz * 1e6 / self.total_cycles

    @property
    def fps(self) -> float:
        """Images per second."""
        return self.config.batch * self.frames_per_second

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def real_macs(self) -> int:
        return sum(layer.real_macs for layer in self.layers)

    @property
    def pe_utilization(self) -> float:
        return self.real_macs / (self.config.pes * self.config.pixels_per_cycle * self.total_cycles)

    @property
    def effective_gops(self) -> float:
        """2 x the dense model's MACs x FPS: pruned MACs counted, as the literature does."""
        return 2 * self.dense_macs * self.frames_per_second / 1e9

    @property
    def actual_gops(self) -> float:
        """2 x the MACs the PEs perform x FPS."""
        return 2 * self.real_macs * self.frames_per_second / 1e9

    @property
    def dram_bytes(self) -> int:
        return sum(layer.dram_bytes for layer in self.layers)

    def buffer_bytes(self) -> dict[str, int]:
        """On-chip buffer traffic of the frame, summed over layers."""
        totals: dict[str, int] = {}
        for layer in self.layers:
            for key, value in ((layer.schedule.buffer_bytes or {}) if layer.schedule else {}).items():
                totals[key] = totals.get(key, 0) + value
        return totals


def plan_network(graph: IntGraph, config: AcceleratorConfig) -> list[tuple[IntOp, LayerShape | None]]:
    """Every op of ``graph`` with, for weighted ops, its shape on the array (no weights are lowered): its maps'
    channels padded to the array's M, its window's padding, the max pool its output stream hosts and, on the
    pipelined array, where its maps live. A linear layer reads its input as one pixel of ``cin`` channels."""
    shapes, hosted = graph.shapes(), hosted_ops(graph)
    maps = {} if config.classic else plan_maps(graph, config)
    plan: list[tuple[IntOp, LayerShape | None]] = []
    for op in graph.ops:
        if not op.weighted:
            plan.append((op, None))
            continue
        weight = op.arrays["weight"]
        cout, cin = weight.shape[:2]
        kernel = op.window.kernel
        slots = slots_for(op, graph.patterns.get(op.name), config)
        rows_needed = kernel[0] * kernel[1] * math.ceil(cin / config.m) * slots
        source = shapes[op.inputs[0]]
        out_hw = tuple(shapes[op.name][1:]) if op.kind == "conv" else (1, 1)
        in_chw = tuple(source) if op.kind == "conv" else (source[0], 1, 1)
        memory = maps.get(op.name)
        placement = {} if memory is None else {
            "input_resident": memory.input_resident, "output_bytes": memory.output_bytes,
            "residual_bytes": memory.residual_bytes, "input_staging_bytes": memory.staging_bytes}
        plan.append((op, LayerShape(op.name, rows_needed, cout, out_hw, in_chw, kernel, op.window.stride,
                                    config.batch * cout * cin * kernel[0] * kernel[1] * math.prod(out_hw),
                                    config.batch, channel_block=config.m, padding=op.window.padding,
                                    pool=hosted_pool(hosted[op.name]),
                                    average=hosted_average(hosted[op.name], shapes),
                                    residual_add=hosted_add(hosted[op.name]) is not None, **placement)))
    return plan


def _post_process(op: IntOp, acc: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bias, requantization and ReLU on the accumulators ``[pixels, Cout]``, back to the tensor layout."""
    acc = acc + op.arrays["bias"].astype(np.int64).reshape(1, -1)
    if op.kind == "conv":  # [images * H * W, Cout] -> [images, Cout, H, W]
        acc = acc.reshape(-1, shape[1] * shape[2], shape[0]).transpose(0, 2, 1).reshape(-1, *shape)
    if not op.requant:
        return acc
    return requantize(acc, op.arrays["m"], op.arrays["shift"], relu=op.relu)


def simulate(graph: IntGraph, config: AcceleratorConfig, mode: str = "fast", image: np.ndarray | None = None,
             progress: bool = False, keep: bool = False) -> SimulationResult:
    """Run one frame. ``image`` is the int8 input ``[C, H, W]``, or ``[batch, C, H, W]`` for a batch (needed by
    stepped and fast)."""
    if mode not in MODES:
        raise AcceleratorError(f"unknown simulation mode {mode!r}: choose one of {', '.join(MODES)}")
    computing = mode != "analytic"
    if computing:
        if image is None:
            raise AcceleratorError(f"{mode} mode computes values: give it an int8 input image")
        images = image if image.ndim == len(graph.input_shape) + 1 else image[None]
        if image.dtype != np.int8 or tuple(images.shape) != (config.batch, *graph.input_shape):
            expected = tuple(graph.input_shape) if config.batch == 1 else (config.batch, *graph.input_shape)
            raise AcceleratorError(f"the input must be int8 {expected}, got {image.dtype} {tuple(image.shape)}")
    shapes = graph.shapes()
    tensors: dict[str, np.ndarray] = {INPUT: images} if computing else {}
    layers, clock = [], 0
    execute = run_stepped if mode == "stepped" else run_fast
    previous: LayerSchedule | None = None
    boundary = stepped_boundary = Boundary()
    for op, shape in progress_bar(plan_network(graph, config), desc=f"{mode} {config.describe()}", unit="op",
                                  disable=not progress):
        if shape is None:
            extra = int(math.prod(shapes[op.inputs[1]])) if op.kind == "add" and config.classic else 0
            layers.append(LayerResult(op.name, op.kind, clock, 0, extra))
            if computing:
                tensors[op.name] = run_op(op, [tensors[name] for name in op.inputs])
            continue
        if config.classic:
            # The previous layer's idle DRAM time prefetches this layer's first weights, and its first input tile
            # when the previous layer ran several tiles (its first output rows were final before its last tile).
            prefetched = 0
            if previous is not None:
                prefetched = min(previous.tail_idle_bytes, prologue_bytes(shape, config, previous.tiles > 1))
            plan = schedule_layer(shape, config, prefetched)
        else:
            plan = schedule_layer(shape, config, boundary=boundary)
            boundary = plan.next_boundary
        previous = plan
        result = LayerResult(op.name, op.kind, clock, plan.total_cycles, plan.dram_bytes, shape.dense_macs,
                             plan.real_macs, plan)
        if computing:
            layer = lower(op, graph.patterns.get(op.name), config)
            if mode == "stepped" and not config.classic:  # its own clock, from its own previous layer
                acc, cycles, measured = clock_layer(layer, tensors[op.inputs[0]], shape, config, stepped_boundary)
                result.cycles, stepped_boundary = measured.total_cycles, measured.next_boundary
            else:
                acc, cycles = execute(layer, tensors[op.inputs[0]], plan, config)
            tensors[op.name] = _post_process(op, acc, shapes[op.name])
            result.output_cycles = cycles + clock
        layers.append(result)
        clock += result.cycles
    output = tensors.get(graph.output) if computing else None
    return SimulationResult(config, mode, layers, output, tensors if keep else {})
