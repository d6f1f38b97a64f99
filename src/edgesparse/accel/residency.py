"""Where a network's feature maps live: on chip in the input buffer, or in DRAM. One rule for every view.

The post-processing unit runs the ops that follow a weighted op in its output stream (ReLU, max and average
pooling, the residual add, flatten): those ops are *hosted* by the latest weighted op they depend on. A *map* is a
tensor that crosses hosts: the input of a weighted op, or a residual operand read by another layer's add (the
network's input and output are maps in DRAM). A map is live from the layer that writes it to the last layer that
reads it.

**The rule.** In the order maps are written, a map is resident when it fits the input buffer together with every
resident map live at any point of its life (a ResNet block's shortcut included), and every layer in that span
whose input still streams from DRAM keeps room to double-buffer the kernel's input rows. A resident map is never
written to or read from DRAM; every other map is written once, pooled, and read by each layer that needs it. With
``resident_maps`` off (:class:`~edgesparse.accel.config.AcceleratorConfig`) no map is resident.

A map's bytes are the engine's layout (:mod:`edgesparse.accel.geometry`): every pixel's channels padded to a
multiple of the array's M (:func:`map_bytes`); a 1-D map (a linear layer's input) is one pixel of its channels. The
network's logits, int32 when not requantized, are 4 bytes per channel, padded to the block the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import POOLS, padded_channels
from edgesparse.quant.graph import INPUT, IntGraph, IntOp


@dataclass(frozen=True)
class LayerMaps:
    """One weighted layer's maps: what it reads and writes off chip, and the input-buffer room it stages in."""

    input_resident: bool
    output_bytes: int  # int8 (int32 for logits) bytes written to DRAM per frame
    residual_bytes: int  # residual operands read from DRAM per frame
    staging_bytes: float  # input-buffer bytes for one half of its input tiles (when the input streams)


@dataclass(frozen=True)
class _Map:
    name: str
    size: int  # bytes per frame
    writer: int  # index of the weighted op that writes it (-1: the network's input)
    readers: tuple[int, ...]  # weighted ops that read it (as input, or through an add they host)

    @property
    def last(self) -> int:
        return max(self.readers)


def op_hosts(graph: IntGraph) -> dict[str, int]:
    """The weighted op (its index among weighted ops) each tensor's op runs under; -1 for the network's input."""
    hosts, weighted = {INPUT: -1}, 0
    for op in graph.ops:
        if op.weighted:
            hosts[op.name] = weighted
            weighted += 1
        else:
            hosts[op.name] = max(hosts[name] for name in op.inputs)
    return hosts


def hosted_ops(graph: IntGraph) -> dict[str, list[IntOp]]:
    """The post-processing ops each weighted op hosts (by :func:`op_hosts`), in execution order."""
    weighted = [op for op in graph.ops if op.weighted]
    hosts = op_hosts(graph)
    hosted: dict[str, list[IntOp]] = {op.name: [] for op in weighted}
    for op in graph.ops:
        if not op.weighted:
            hosted[weighted[hosts[op.name]].name].append(op)
    return hosted


def hosted_pool(ops: list[IntOp]) -> int:
    """The max pool among a layer's hosted ``ops`` that its output stage runs: its code in
    :data:`~edgesparse.accel.geometry.POOLS`; 0 for none, and for a window the output stage cannot pool (the
    descriptor refuses such a layer; the model times it unpooled)."""
    return next((POOLS.get(op.window, 0) for op in ops if op.kind == "maxpool"), 0)


def hosted_average(ops: list[IntOp], shapes: dict[str, tuple[int, ...]]) -> bool:
    """Whether a layer's hosted ``ops`` end in a global average pool (an ``avgpool`` leaving one pixel per channel:
    ResNet's head), which its output stage runs on the whole map."""
    return any(op.kind == "avgpool" and tuple(shapes[op.name][1:]) == (1, 1) for op in ops)


def hosted_add(ops: list[IntOp]) -> IntOp | None:
    """The residual add among a layer's hosted ``ops`` (None: none), which its output stage runs on the stream."""
    return next((op for op in ops if op.kind == "add"), None)


def map_bytes(shape: tuple[int, ...], block: int) -> int:
    """int8 bytes of one image's map of ``shape`` (CHW, or C for a 1-D map), channels padded to ``block``."""
    return padded_channels(shape[0], block) * math.prod(shape[1:])


def _maps(graph: IntGraph, config: AcceleratorConfig) -> list[_Map]:
    hosts, shapes, batch = op_hosts(graph), graph.shapes(), config.batch
    readers: dict[str, set[int]] = {}
    for op in graph.ops:
        for name in op.inputs:
            reader = hosts[op.name]
            if op.weighted or hosts[name] != reader:
                readers.setdefault(name, set()).add(reader)
    output = graph.op(graph.output)
    int8_logits = output.requant or not output.weighted
    output_shape = shapes[graph.output]  # int32 logits: four bytes a channel, padded to the block the same way
    logits = map_bytes(output_shape if int8_logits else (4 * output_shape[0], *output_shape[1:]), config.m)
    maps = [_Map(name, map_bytes(shapes[name], config.m) * batch, hosts[name], tuple(sorted(reader)))
            for name, reader in readers.items()]
    last = len([op for op in graph.ops if op.weighted])
    # The logits are read by the host after the frame: never resident.
    maps.append(_Map(graph.output, logits * batch, hosts[graph.output], (last,)))
    return sorted(maps, key=lambda item: (item.writer, item.name))


def _minimum_staging(graph: IntGraph, config: AcceleratorConfig) -> list[int]:
    """Per weighted op: bytes of the kernel's input rows (channels padded), double-buffered (the least a streamed
    input needs)."""
    shapes, need = graph.shapes(), []
    for op in graph.ops:
        if op.weighted:
            source = shapes[op.inputs[0]]
            row_bytes = map_bytes(source[:1] + source[2:], config.m)  # one row: channels x width (1-D: channels)
            need.append(2 * op.window.kernel[0] * row_bytes)
    return need


def plan_maps(graph: IntGraph, config: AcceleratorConfig) -> dict[str, LayerMaps]:
    """Residency of every map by the rule above, and what each weighted layer reads and writes off chip."""
    capacity = config.input_buffer_kib * 1024
    maps = _maps(graph, config)
    weighted = [op for op in graph.ops if op.weighted]
    staging = _minimum_staging(graph, config)
    input_of = {index: op.inputs[0] for index, op in enumerate(weighted)}
    resident: dict[str, _Map] = {}
    for item in maps:
        if item.writer < 0 or item.last >= len(weighted) or item.name == graph.output or not config.resident_maps:
            continue
        span = range(item.writer, item.last + 1)
        fits = True
        for k in span:
            held = item.size + sum(m.size for m in resident.values() if m.writer <= k <= m.last)
            streamed = input_of[k] not in resident and input_of[k] != item.name
            if held + (staging[k] if streamed else 0) > capacity:
                fits = False
                break
        if fits:
            resident[item.name] = item
    plans = {}
    for k, op in enumerate(weighted):
        held = sum(m.size for m in resident.values() if m.writer <= k <= m.last)
        written = sum(m.size for m in maps if m.writer == k and m.name not in resident)
        residual = sum(m.size for m in maps if k in m.readers and m.name != input_of[k] and m.writer != k
                       and m.name not in resident)
        plans[op.name] = LayerMaps(input_of[k] in resident, written, residual, (capacity - held) / 2)
    return plans
