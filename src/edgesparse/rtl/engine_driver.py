"""The host side of the layer engine (:mod:`edgesparse.rtl.engine`): what a layer is, in the engine's memories, and
a run in Amaranth's simulator compared with the integer reference and the cycle model.

:func:`engine_program` turns one weighted layer of an integer graph (and the max or global average pool it hosts)
into the DRAM image, the DMA's transfer list, the feeders' start values, the tiles' counts and the channels'
parameters — addresses, sizes and coordinates only; the engine finds every cycle itself. :func:`run_engine`
clocks it until its last transfer ends (or a cycle limit, with the fold and transfer where it stopped) and returns
every output write with its cycle and the DRAM's output map; :func:`check_engine` compares them with the integer
reference's bytes and the cycle model's write cycles (:meth:`~edgesparse.accel.schedule.LayerSchedule.write_cycles`).

DRAM layout: the layer's folds (column fold outer, row fold inner, as the memory image lays them out), then its
input map, then room for its output map; maps are pixel-major with each pixel's channels padded to M. The output
buffer holds each layer's map while the layer writes it back, and a resident map (one the residency plan keeps on
chip) from its layer to its last reader, each placed first fit (:class:`_MapPlacement`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import INPUT, OUTPUT, RESIDUAL, WEIGHTS, FoldGeometry, fold_geometry, transfer_cycles
from edgesparse.accel.mapping import lower
from edgesparse.accel.memory_image import fold_words
from edgesparse.accel.residency import hosted_add, hosted_ops, op_hosts
from edgesparse.accel.simulate import plan_network, simulate
from edgesparse.errors import AcceleratorError
from edgesparse.quant.graph import INPUT as NETWORK_INPUT
from edgesparse.quant.graph import IntGraph, IntOp
from edgesparse.quant.reference import run_op
from edgesparse.rtl.dma import beat_bytes
from edgesparse.rtl.engine import (ADD_FIELDS, AVERAGE_FIELDS, KIND_INPUT, KIND_OUTPUT, KIND_RESIDUAL, KIND_WEIGHTS,
                                   RESIDENT_FIELDS, RESIDENT_OPERAND_FIELDS, EngineSize)
from edgesparse.rtl.feeder import RowFields, row_fields
from edgesparse.rtl.output_stage import pack_params

KINDS = {WEIGHTS: KIND_WEIGHTS, INPUT: KIND_INPUT, OUTPUT: KIND_OUTPUT, RESIDUAL: KIND_RESIDUAL}


def random_conv(rng: np.random.Generator, name: str, source: str, cin: int, cout: int, kernel: int, stride: int,
                padding: int, n: int = 1, m: int = 16, relu: bool = True, bias_bits: int = 12,
                shifts: tuple[int, int] = (34, 37)) -> IntOp:
    """A random N:M int8 conv op with int32 biases below 2^bias_bits and requantization parameters (mantissas in
    [2^30, 2^31), shifts in ``shifts``) whose results span int8 and saturate at both ends."""
    import torch

    from edgesparse.pattern import BlockPattern

    weight = rng.integers(-127, 128, size=(cout, cin, kernel, kernel)).astype(np.int8)
    mask = BlockPattern(n, m).mask(torch.from_numpy(rng.random(weight.shape).astype(np.float32)), n / m).numpy()
    arrays = {"weight": (weight * mask).astype(np.int8),
              "bias": rng.integers(-2**bias_bits, 2**bias_bits, cout).astype(np.int32),
              "m": rng.integers(2**30, 2**31, cout).astype(np.int64),
              "shift": rng.integers(*shifts, cout).astype(np.int64)}
    return IntOp(name, "conv", [source], {"kernel": [kernel, kernel], "stride": [stride, stride],
                                          "padding": [padding, padding], "relu": relu}, arrays)


def random_chain(n: int = 1, m: int = 16, seed: int = 5) -> tuple[IntGraph, np.ndarray]:
    """Three random N:M layers on a 16x16 image of 8 channels: a padded 3x3 conv (16 filters), a 3x3 conv (40)
    followed by a 2x2 max pool, a 1x1 stride-2 conv (8) — with int32 biases and requantization spanning int8 — and
    the image: maps too large for a 2 KiB input buffer, so each goes through DRAM."""
    rng = np.random.default_rng(seed)
    specs = [("conv1", 8, 16, 3, 1, 1, False), ("conv2", 16, 40, 3, 1, 1, True), ("conv3", 40, 8, 1, 2, 0, False)]
    ops, source = [], NETWORK_INPUT
    for name, cin, cout, kernel, stride, padding, pool in specs:
        ops.append(random_conv(rng, name, source, cin, cout, kernel, stride, padding, n, m))
        source = name
        if pool:
            ops.append(IntOp(f"{name}_pool", "maxpool", [name], {"kernel": [2, 2], "stride": [2, 2],
                                                                 "padding": [0, 0]}))
            source = f"{name}_pool"
    graph = IntGraph((8, 16, 16), 1.0, (0.0,) * 8, (1.0,) * 8, ops, {}, {name: f"{n}:{m}" for name, *_ in specs})
    return graph, rng.integers(-128, 128, size=(8, 16, 16)).astype(np.int8)


def _averaged_classifier(rng: np.random.Generator, source: str, channels: int, size: int) -> list[IntOp]:
    """ResNet's head after ``source`` (``channels`` x ``size`` x ``size``): a global average pool (a random mantissa,
    shift 34), flatten, and a random 1:16 linear classifier (``channels`` -> 10) writing int32 logits."""
    import torch

    from edgesparse.pattern import BlockPattern

    average = IntOp("gap", "avgpool", [source], {"kernel": [size, size], "stride": [size, size], "padding": [0, 0],
                                                 "m": int(rng.integers(2**30, 2**31)), "shift": 34})
    weight = rng.integers(-128, 128, size=(10, channels)).astype(np.int8)
    mask = BlockPattern(1, 16).mask(torch.from_numpy(rng.random(weight.shape).astype(np.float32)), 1 / 16).numpy()
    return [average, IntOp("flat", "flatten", ["gap"], {}),
            IntOp("fc", "linear", ["flat"], {"requant": False},
                  {"weight": (weight * mask).astype(np.int8),
                   "bias": rng.integers(-2**12, 2**12, 10).astype(np.int32)})]


def averaged_chain(seed: int = 11) -> tuple[IntGraph, np.ndarray]:
    """A global average pool in small, random 1:16, and an image: a padded 3x3 conv (8 -> 16 channels, 4x4), a
    second (16 -> 12, no ReLU: sums of both signs) whose map is averaged whole (averages saturating at both ends),
    then a linear classifier (12 -> 10) writing int32 logits."""
    rng = np.random.default_rng(seed)
    ops = [random_conv(rng, "conv1", NETWORK_INPUT, 8, 16, 3, 1, 1),
           random_conv(rng, "conv2", "conv1", 16, 12, 3, 1, 1, relu=False, bias_bits=14, shifts=(31, 33)),
           *_averaged_classifier(rng, "conv2", 12, 4)]
    graph = IntGraph((8, 4, 4), 1.0, (0.0,) * 8, (1.0,) * 8, ops, {},
                     {"conv1": "1:16", "conv2": "1:16", "fc": "1:16"})
    return graph, rng.integers(-128, 128, size=(8, 4, 4)).astype(np.int8)


def residual_chain(head: bool = False, seed: int = 13) -> tuple[IntGraph, np.ndarray]:
    """A random 1:16 residual block and an image: a padded 3x3 conv (8 -> 16 channels), then the block: two more
    (16 -> 16, the second without ReLU) and the first's map added to the block's (both rescaled, ReLU after, sums
    saturating), then a 1x1 conv (16 -> 8), on an 8x8 map; or (``head``) ResNet's last block on a 4x4 map: the sum
    averaged whole and a linear classifier (16 -> 10) writing int32 logits."""
    rng = np.random.default_rng(seed)
    size = 4 if head else 8
    ops = [random_conv(rng, "conv0", NETWORK_INPUT, 8, 16, 3, 1, 1),
           random_conv(rng, "conv1", "conv0", 16, 16, 3, 1, 1),
           random_conv(rng, "conv2", "conv1", 16, 16, 3, 1, 1, relu=False),
           IntOp("add", "add", ["conv2", "conv0"], {"m_a": int(rng.integers(2**29, 2**30)),
                                                    "m_b": int(rng.integers(2**29, 2**30)), "shift": 30,
                                                    "relu": True})]
    patterns = {"conv0": "1:16", "conv1": "1:16", "conv2": "1:16"}
    if head:
        ops += _averaged_classifier(rng, "add", 16, size)
        patterns["fc"] = "1:16"
    else:
        ops.append(random_conv(rng, "conv3", "add", 16, 8, 1, 1, 0))
        patterns["conv3"] = "1:16"
    graph = IntGraph((8, size, size), 1.0, (0.0,) * 8, (1.0,) * 8, ops, {}, patterns)
    return graph, rng.integers(-128, 128, size=(8, size, size)).astype(np.int8)


def padded_map(x: np.ndarray, m: int) -> bytes:
    """A map ``[C, H, W]`` as the engine stores it: pixel-major, each pixel's channel bytes (one a channel for int8,
    four little-endian for the int32 logits) padded with zeros to a multiple of M."""
    channels, height, width = x.shape
    pixels = np.ascontiguousarray(x.transpose(1, 2, 0).astype(x.dtype.newbyteorder("<"))).view(np.uint8)
    pixels = pixels.reshape(height, width, -1)
    padded = np.zeros((height, width, -(-pixels.shape[2] // m) * m), dtype=np.uint8)
    padded[:, :, :pixels.shape[2]] = pixels
    return padded.tobytes()


@dataclass(frozen=True)
class Transfer:
    """One DMA queue entry: its kind and index among its kind, and what it moves where."""

    kind: str
    index: int
    to_dram: bool
    dram_addr: int
    buf_addr: int  # a word address in the kind's buffer
    size: int


@dataclass
class EngineProgram:
    """A chain of layers for the engine: what the host writes, and what must come out."""

    names: list[str]  # the weighted layers, in order
    size: EngineSize
    image: bytes  # the DRAM's initial contents
    transfers: list[Transfer]  # every layer's, in order
    layers: list[dict[str, int]]  # per layer: its descriptor (:data:`~edgesparse.rtl.engine.LAYER_FIELDS`)
    tables: list[list[RowFields]]  # per row: feeder start values per (layer, tile, row fold)
    counts: list[int]  # per (layer, tile): pixels | writes << 16
    params: list[int]  # per (layer, column fold, column): requantization parameters
    outputs: list[tuple[int, bytes]]  # per layer: its output map's DRAM address and the reference's bytes
    expected_writes: dict[int, tuple[int, int]]  # cycle -> (word, byte mask), every layer's
    expected_cycles: int  # the cycle model's end of the last layer
    cycle_limit: int
    resident: dict[int, int]  # per layer whose map stays on chip: its first word in the output buffer

    @property
    def name(self) -> str:
        return self.names[0] if len(self.names) == 1 else f"{self.names[0]}..{self.names[-1]}"


def _check_supported(config: AcceleratorConfig) -> None:
    if config.pixels_per_cycle != 1 or config.segments != 1 or config.batch != 1 or config.classic:
        raise AcceleratorError("the layer engine is built for one pixel lane, one segment, batch 1 and the pipelined "
                               f"array; got {config.describe()}")


def _reference_maps(graph: IntGraph, image: np.ndarray) -> dict[int, np.ndarray]:
    """The integer reference's map each weighted layer writes (after the ops it hosts), ``[C, H, W]``, by
    weighted-op index."""
    hosts, tensors, maps = op_hosts(graph), {NETWORK_INPUT: image[None]}, {}
    for op in graph.ops:
        tensors[op.name] = run_op(op, [tensors[name] for name in op.inputs])
        maps[hosts[op.name]] = tensors[op.name]
    return {index: value[0].reshape(value.shape[1], *(value.shape[2:] or (1, 1))) for index, value in maps.items()}


def _input_rows(shape, geometry: FoldGeometry, tile: int) -> tuple[int, int]:
    """The first and last input rows tile ``tile`` reads (one image)."""
    span = geometry.tile_range(tile)
    return shape.input_rows(span.start // shape.out_hw[1], (span.stop - 1) // shape.out_hw[1])


def _written(shape, geometry: FoldGeometry) -> list[range]:
    """Per tile, the written (pooled) pixels it completes, in raster order of the written map; refuses pooled tiles
    the output stage cannot pool on their own."""
    completing = shape.written_pixels()
    if shape.pool and shape.pool_window.kernel[0] == 3 and geometry.tiles != 1:
        raise AcceleratorError(f"layer {shape.name!r}: the engine runs a 3x3-pooled layer as one tile, not "
                               f"{geometry.tiles}")
    if shape.average and (shape.pool or geometry.tiles != 1):
        raise AcceleratorError(f"layer {shape.name!r}: the engine averages an unpooled map of one tile; this layer "
                               f"{'pools first' if shape.pool else f'runs {geometry.tiles} tiles'}")
    ends = np.searchsorted(completing, [geometry.tile_range(t).stop for t in range(geometry.tiles)])
    return [range(int(start), int(stop)) for start, stop in zip(np.concatenate([[0], ends[:-1]]), ends)]


def _residual_fields(op: IntOp, shape, ops: list[IntOp], hosts: dict[str, int],
                     last_of: dict[int, str]) -> tuple[dict[str, int], int | None]:
    """The descriptor's :data:`~edgesparse.rtl.engine.ADD_FIELDS` of a layer and the layer whose map is its
    residual operand (None: no add): the add's mantissa for the layer's own bytes first, ReLU after the add when
    it has one or a ReLU op follows. Refuses an add the engine cannot run."""
    add = hosted_add(ops)
    if add is None:
        return dict.fromkeys(ADD_FIELDS, 0), None
    operand = next((name for name in add.inputs if hosts[name] != hosts[op.name]), None)
    writer = None if operand is None else hosts[operand]
    if operand is None or last_of.get(writer) != operand:
        raise AcceleratorError(f"layer {op.name!r}: the engine adds a map another layer wrote, and {add.name!r} "
                               f"adds {operand!r}")
    if shape.pool:
        raise AcceleratorError(f"layer {op.name!r}: the engine adds a residual only to an unpooled map")
    if not op.requant:
        raise AcceleratorError(f"layer {op.name!r}: the engine adds a residual only to requantized bytes")
    if not shape.residual_bytes and not shape.input_resident and hosts[op.inputs[0]] == writer:
        raise AcceleratorError(f"layer {op.name!r}: its residual operand is its own input, which the cycle model "
                               f"takes from the input buffer; the engine reads an operand from DRAM or from a "
                               f"resident map only")
    own = 0 if add.inputs[0] != operand else 1
    mantissas = (add.attrs["m_a"], add.attrs["m_b"])
    relu = add.relu or any(o.kind == "relu" for o in ops[ops.index(add) + 1:])
    return dict(zip(ADD_FIELDS, (1, mantissas[own], mantissas[1 - own], add.attrs["shift"], int(relu)))), writer


def _last_readers(graph: IntGraph, hosts: dict[str, int]) -> dict[int, int]:
    """Per weighted layer (by index), the last layer that reads its map: as its input, or through an op it hosts
    (the residual add)."""
    last: dict[int, int] = {}
    for op in graph.ops:
        reader = hosts[op.name]
        for name in op.inputs:
            if op.weighted or hosts[name] != reader:
                last[hosts[name]] = max(last.get(hosts[name], reader), reader)
    return last


class _MapPlacement:
    """Where each layer's output map sits in the engine's output buffer: first fit among the maps still live (a
    resident map until its last reader, any other map during its own layer, for the write-back)."""

    def __init__(self) -> None:
        self.base: dict[int, int] = {}
        self.live: list[tuple[int, int, int]] = []  # (first word, end word, last layer)
        self.words = 1  # the buffer's depth so far

    def place(self, layer: int, words: int, until: int) -> int:
        """The first word of ``layer``'s map of ``words`` words, live until layer ``until``."""
        self.live = sorted(item for item in self.live if item[2] >= layer)
        start = 0
        for first, end, _ in self.live:
            if start + words <= first:
                break
            start = max(start, end)
        self.live.append((start, start + words, until))
        self.base[layer] = start
        self.words = max(self.words, start + words)
        return start


def engine_program(graph: IntGraph, config: AcceleratorConfig, image: np.ndarray) -> EngineProgram:
    """The program that runs every weighted layer of ``graph`` (and the ops each hosts) on ``image`` (int8
    ``[C, H, W]``), layer after layer, each reading the map the previous one wrote to DRAM or, where the residency
    plan keeps it on chip, left in the output buffer."""
    _check_supported(config)
    plan = [(op, shape) for op, shape in plan_network(graph, config) if shape is not None]
    R, C, M = config.rows, config.cols, config.m
    tile_words = int(config.input_buffer_kib * 1024 // 2 // M)
    maps = _reference_maps(graph, image)
    simulated = [layer for layer in simulate(graph, config, mode="analytic").layers if layer.schedule is not None]

    # DRAM: every layer's folds, the network's input map, then each layer's output map.
    lowered = [lower(op, graph.patterns.get(op.name), config) for op, _ in plan]
    geometries = [fold_geometry(shape, config) for _, shape in plan]
    chunks, weights_at = [], []
    for layer, geometry in zip(lowered, geometries):
        weights_at.append(sum(len(chunk) for chunk in chunks))
        chunks += [fold_words(layer, config, c, r) for c in range(geometry.col_folds)
                   for r in range(geometry.row_folds)]
    chunks.append(padded_map(image, M))
    map_at = {-1: sum(len(chunk) for chunk in chunks[:-1])}  # weighted-op index -> its map (-1: the input)
    for k, (op, _) in enumerate(plan):  # the logits of a layer without requantization: int32 in the engine
        if not op.requant:
            if np.abs(maps[k]).max(initial=0) >= 2**31:
                raise AcceleratorError(f"layer {op.name!r}: the reference's logits overflow int32")
            maps[k] = maps[k].astype(np.int32)
    references = {k: padded_map(maps[k], M) for k in range(len(plan))}
    for k in range(len(plan)):
        map_at[k] = sum(len(chunk) for chunk in chunks)
        chunks.append(bytes(len(references[k])))

    transfers, layers, counts, params, expected = [], [], [], [], {}
    tables: list[list[RowFields]] = [[] for _ in range(R)]
    hosts, hosted = op_hosts(graph), hosted_ops(graph)
    readers = _last_readers(graph, hosts)
    placement = _MapPlacement()
    last_of = {k: (hosted[op.name][-1] if hosted[op.name] else op).name for k, (op, _) in enumerate(plan)}
    last_of[-1] = NETWORK_INPUT
    sizes = {"out_words": 1, "tile_pixels": 1, "col_folds": 1, "width": 2, "pool": None}
    for k, ((op, shape), layer, geometry, result) in enumerate(zip(plan, lowered, geometries, simulated)):
        channel_bytes = 1 if op.requant else 4  # int8 maps; the int32 logits of a layer without requantization
        if not op.requant and (4 * C > M or shape.pool or shape.average):
            raise AcceleratorError(f"layer {op.name!r}: the engine writes int32 sums (no requantization) only "
                                   f"unpooled and when a column fold's {4 * C} bytes fit an {M}-byte word")
        add_fields, operand_layer = _residual_fields(op, shape, hosted[op.name], hosts, last_of)
        in_blocks, out_blocks = layer.blocks, -(-channel_bytes * shape.cout // M)
        written = _written(shape, geometry)
        source = hosts[op.inputs[0]]  # the layer whose map this layer reads (-1: the network's input)
        operand_resident = operand_layer is not None and not shape.residual_bytes
        out_base = placement.place(k, written[-1].stop * out_blocks,
                                   readers[k] if not shape.written_bytes else k)
        moves = geometry.transfers()
        if len(moves) < 2:
            raise AcceleratorError(f"layer {op.name!r} moves a single DMA transfer (its input and output on chip, "
                                   f"one fold of weights); the engine's controller runs layers of two or more")
        row_bytes = shape.in_chw[2] * in_blocks * M
        for kind, index, size in moves:
            if kind == WEIGHTS:
                _, c, r = geometry.fold_position(index)
                entry = Transfer(kind, index, False, weights_at[k] + (c * geometry.row_folds + r)
                                 * config.fold_weight_bytes, index % config.weight_buffer_folds * R,
                                 config.fold_weight_bytes)
            elif kind == INPUT:
                first, last = _input_rows(shape, geometry, index)
                if (last - first + 1) * row_bytes > tile_words * M:
                    raise AcceleratorError(f"layer {op.name!r}: tile {index}'s {last - first + 1} input rows do not "
                                           f"fit half the tile buffer ({tile_words} words of {M} bytes)")
                entry = Transfer(kind, index, False, map_at[hosts[op.inputs[0]]] + first * row_bytes,
                                 index % 2 * tile_words, (last - first + 1) * row_bytes)
            elif kind == RESIDUAL:  # the tile's pixels of the operand, at their own words (laid out as the output)
                pixels = geometry.tile_range(index)
                entry = Transfer(kind, index, False, map_at[operand_layer] + pixels.start * out_blocks * M,
                                 pixels.start * out_blocks, len(pixels) * out_blocks * M)
            else:
                pixels = written[index]
                entry = Transfer(kind, index, True, map_at[k] + pixels.start * out_blocks * M,
                                 out_base + pixels.start * out_blocks, len(pixels) * out_blocks * M)
            if size != entry.size:
                raise AssertionError(f"layer {op.name!r}: the cycle model moves {size} bytes for {kind}({index}), "
                                     f"the engine's memory layout {entry.size}")
            transfers.append(entry)
        layers.append({"transfers_end": len(transfers), "folds": geometry.folds, "row_folds": geometry.row_folds,
                       "col_folds": geometry.col_folds, "folds_per_tile": geometry.folds_per_tile,
                       "height": shape.in_chw[1], "width": shape.in_chw[2], "out_height": shape.out_hw[0],
                       "out_width": shape.out_hw[1], "stride_y": layer.stride[0], "stride_x": layer.stride[1],
                       "relu": int(op.relu), "pool": int(bool(shape.pool)), "raw": int(not op.requant),
                       "out_blocks": out_blocks,
                       "table_base": len(tables[0]), "count_base": len(counts), "param_base": len(params) // C})
        average = next((o for o in hosted[op.name] if o.kind == "avgpool"), None) if shape.average else None
        layers[-1].update(zip(AVERAGE_FIELDS, (0, 0, 0, 0) if average is None else
                              (1, average.attrs["m"], average.attrs["shift"], shape.pixels - 1)))
        layers[-1].update(add_fields)
        layers[-1].update(zip(RESIDENT_FIELDS, (int(shape.input_resident), out_base, geometry.tiles)))
        layers[-1].update(zip(RESIDENT_OPERAND_FIELDS, (int(operand_resident),
                                                        placement.base[operand_layer] if operand_resident else 0)))
        positions, block_of_row = layer.row_block()
        for tile in range(geometry.tiles):
            span = geometry.tile_range(tile)
            base = 0 if shape.input_resident else _input_rows(shape, geometry, tile)[0]
            start = placement.base[source] if shape.input_resident else tile % 2 * tile_words
            for row_fold in range(geometry.row_folds):
                for i in range(R):
                    row = row_fold * R + i
                    used = row < layer.rows_needed
                    fields = row_fields(in_hw=shape.in_chw[1:], out_hw=shape.out_hw, kernel_w=layer.kernel[1],
                                        stride=layer.stride, padding=layer.padding, blocks=in_blocks,
                                        position=int(positions[row]) if used else 0,
                                        block=int(block_of_row[row]) if used else 0, first_pixel=span.start,
                                        pixels=len(span), groups=len(span), lanes=1, base=base, enable=used)
                    tables[i].append(replace(fields, addr=fields.addr + start))
            counts.append(len(span) | len(written[tile]) * geometry.col_folds << 16)
        for channel in range(geometry.col_folds * C):  # every column of every column fold: zeros past Cout
            if channel >= shape.cout:
                params.append(0)
            elif op.requant:
                params.append(pack_params(op.arrays["bias"][channel], op.arrays["m"][channel],
                                          op.arrays["shift"][channel]))
            else:
                params.append(pack_params(op.arrays["bias"][channel], 0, 0))
        fold_bytes = channel_bytes * C
        per_word = M // fold_bytes
        writes = result.schedule.write_cycles(config) + result.start_cycle
        stream_end = int(result.schedule.starts[-1] + result.schedule.fold_lengths[-1]) + result.start_cycle
        if stream_end > int(writes.max()) + 1 and stream_end == result.start_cycle + result.schedule.total_cycles:
            raise AcceleratorError(f"layer {op.name!r}: its last stream ends after its last write and its last "
                                   f"transfer (pixels no pooling window keeps); the engine ends a layer with those")
        for pixel in range(writes.shape[0]):
            for c in range(geometry.col_folds):
                width = M if c == geometry.col_folds - 1 else fold_bytes  # the last column fold zeroes its word's rest
                expected[int(writes[pixel, c])] = (out_base + pixel * out_blocks + c // per_word,
                                                   (((1 << width) - 1) << (fold_bytes * (c % per_word)))
                                                   & ((1 << M) - 1))
        pool = shape.pool_window.kernel[0] if shape.pool else None
        if pool and sizes["pool"] not in (None, pool):
            raise AcceleratorError(f"layer {op.name!r}: the engine's output stage is built with one max pool")
        operand_words = shape.pixels * out_blocks if operand_layer is not None else 0  # the residual buffer's
        sizes.update(out_words=max(sizes["out_words"], placement.words, operand_words),
                     tile_pixels=max(sizes["tile_pixels"], geometry.tile_pixels),
                     col_folds=max(sizes["col_folds"], geometry.col_folds),
                     width=max(sizes["width"], shape.out_hw[1]), pool=pool or sizes["pool"])
    averaging, adding = (any(layer[name] for layer in layers) for name in ("average", "add"))
    resident = {k: base for k, base in placement.base.items() if plan[k][1].written_bytes == 0}
    unbuilt = (AVERAGE_FIELDS if not averaging else ()) + (ADD_FIELDS if not adding else ()) \
        + (RESIDENT_FIELDS if not resident else ()) + (RESIDENT_OPERAND_FIELDS if not (resident and adding) else ())
    layers = [{name: value for name, value in layer.items() if name not in unbuilt} for layer in layers]
    image_bytes = b"".join(chunks)
    size = EngineSize(rows=R, cols=C, m=M, rate=config.dram_bytes_per_cycle,
                      dram_bytes=_dram_bytes(len(image_bytes), config.dram_bytes_per_cycle),
                      weight_slots=config.weight_buffer_folds, tile_words=tile_words, out_words=sizes["out_words"],
                      max_tile_pixels=sizes["tile_pixels"], max_col_folds=sizes["col_folds"],
                      max_width=sizes["width"], queue=len(transfers), tables=len(tables[0]), max_tiles=len(counts),
                      param_words=len(params) // C, max_layers=len(plan), pool_kernel=sizes["pool"],
                      global_average=averaging, residual_add=adding, resident_maps=bool(resident),
                      stages=config.product_stages)
    total = sum(layer.cycles for layer in simulated)
    limit = 2 * (sum(transfer_cycles(t.size, config.dram_bytes_per_cycle) for t in transfers) + total) + 64
    return EngineProgram([op.name for op, _ in plan], size, image_bytes, transfers, layers, tables, counts, params,
                         [(map_at[k], references[k]) for k in range(len(plan))], expected, total, limit, resident)


def _dram_bytes(needed: int, rate: float) -> int:
    """The simulation DRAM's size: ``needed`` rounded up to the DMA's beat."""
    beat = beat_bytes(rate)
    return -(-needed // beat) * beat


@dataclass
class EngineRecord:
    """What a run of the engine produced."""

    writes: dict[int, tuple[int, int]]  # cycle -> (word, byte mask) of every output-buffer write
    outputs: list[bytes]  # per layer: its output map in DRAM after the run (a resident map: on chip as it ended)
    cycles: int  # the cycle the last layer's last transfer ended


def run_engine(program: EngineProgram) -> EngineRecord:
    """Clock the engine through ``program`` in Amaranth's simulator."""
    from amaranth.sim import Simulator

    from edgesparse.rtl.dma import pack_descriptor
    from edgesparse.rtl.engine import LayerEngine, pack_layer, pack_row_fields

    engine = LayerEngine(program.size, program.image)
    record = EngineRecord({}, [], 0)

    async def bench(ctx):
        async def write(prefix: str, address_port: str, entries, **extra) -> None:
            for address, value in enumerate(entries):
                for name, extra_value in extra.items():
                    ctx.set(getattr(engine, name), extra_value)
                ctx.set(getattr(engine, f"{prefix}_we"), 1)
                ctx.set(getattr(engine, address_port), address)
                ctx.set(getattr(engine, f"{prefix}_data"), value)
                await ctx.tick()
            ctx.set(getattr(engine, f"{prefix}_we"), 0)

        await write("q", "q_addr", [pack_descriptor(engine.dma.fields, to_dram=t.to_dram, buffer=KINDS[t.kind],
                                                    dram_addr=t.dram_addr, buf_addr=t.buf_addr, size=t.size)
                                    for t in program.transfers])
        for row, entries in enumerate(program.tables):
            await write("t", "t_addr", [pack_row_fields(e, program.size.feeder_words) for e in entries], t_row=row)
        await write("c", "c_addr", program.counts)
        await write("p", "p_channel", program.params)
        await write("d", "d_addr", [pack_layer(program.size, layer) for layer in program.layers])
        ctx.set(engine.layers, len(program.layers))
        ctx.set(engine.start, 1)
        await ctx.tick()
        ctx.set(engine.start, 0)
        lanes, running, kept = None, 0, {}  # the output buffer's byte lanes; the layer running; resident maps
        if program.resident:
            lanes = [memory.data for memory in engine.output_stage.out_buffer.memories]

        def keep_resident(layer: int) -> None:  # a resident map as its layer ends, before any later layer's writes
            if layer in program.resident:
                first, size = program.resident[layer], len(program.outputs[layer][1]) // program.size.m
                kept[layer] = bytes(ctx.get(lanes[lane][row]) for row in range(first, first + size)
                                    for lane in range(program.size.m))

        while not ctx.get(engine.done):
            cycle = ctx.get(engine.cycle)
            layer = ctx.get(engine.layer)
            if layer != running:
                keep_resident(running)
                running = layer
            if cycle > program.cycle_limit:
                raise AcceleratorError(
                    f"layer {program.names[layer]!r}: the engine ran past {program.cycle_limit} cycles, fold "
                    f"{ctx.get(engine.fold)} of {program.layers[layer]['folds']} next to stream, DMA transfer "
                    f"{ctx.get(engine.head)} of {len(program.transfers)} next")
            if ctx.get(engine.out_we):
                record.writes[cycle] = (ctx.get(engine.out_addr), ctx.get(engine.out_mask))
            if ctx.get(engine.collision):
                raise AcceleratorError(f"layer {program.names[layer]!r}, cycle {cycle}: a buffer read "
                                       f"met a write of the same row, which its block RAM (no collision logic) leaves "
                                       f"undefined")
            await ctx.tick()
        record.cycles = ctx.get(engine.cycle)
        await ctx.tick()  # the write-back's last bytes land at the edge ending its last cycle
        dram = engine.dram
        for layer, (address, reference) in enumerate(program.outputs):
            record.outputs.append(kept[layer] if layer in program.resident else bytes(
                ctx.get(dram.banks[a % dram.beat].data[a // dram.beat])
                for a in range(address, address + len(reference))))

    simulator = Simulator(engine)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return record


def check_engine(program: EngineProgram, record: EngineRecord) -> None:
    """Raise AssertionError naming the first output byte or write cycle where the engine and the references part."""
    for name, (_, reference), output in zip(program.names, program.outputs, record.outputs):
        got, want = np.frombuffer(output, np.uint8), np.frombuffer(reference, np.uint8)
        bad = np.flatnonzero(got != want)
        if len(bad):
            raise AssertionError(f"layer {name!r}: output byte {bad[0]}: engine {got[bad[0]]}, reference "
                                 f"{want[bad[0]]} ({len(bad)} bytes differ)")
    if record.writes != program.expected_writes:
        cycles = sorted(set(record.writes) ^ set(program.expected_writes))
        first = cycles[0] if cycles else min(c for c in record.writes if record.writes[c] != program.expected_writes[c])
        raise AssertionError(f"{program.name}: write at cycle {first}: engine {record.writes.get(first)}, cycle model "
                             f"{program.expected_writes.get(first)}")
    if record.cycles != program.expected_cycles:
        raise AssertionError(f"{program.name}: the engine ended at cycle {record.cycles}, the cycle model at "
                             f"{program.expected_cycles}")
