"""Layer descriptors: the small record the engine's controller reads from memory to run one weighted layer and the
post-processing ops it hosts.

A descriptor says *what* to run, never *when*: shapes, the layer's slots per block on the array, the tile size, the
folds, where the weights, parameters and maps are (a byte address in the memory image, or :data:`ON_CHIP` for a map
the residency rule keeps in the input buffer), and the requantization parameters of the ops the post-processing
unit applies. It carries no cycle counts and no waits: the controller derives its timing from DMA handshakes and
buffer flags.

The post-processing unit applies, in this fixed order, what follows a weighted op in its output stream: bias and
requantization (ReLU fused), the residual add (its own requantization, ReLU fused), a ReLU, one max pooling
(:data:`~edgesparse.accel.geometry.POOLS`), the global average pool. A layer whose hosted ops come in another
order, or a window the unit has no stage for, is refused here with the op's name: the engine cannot run it.

Encoded as :data:`WORDS` little-endian unsigned 32-bit words in the order of the dataclass's fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import POOLS, fold_geometry
from edgesparse.accel.residency import hosted_add, hosted_ops, map_bytes, op_hosts, plan_maps
from edgesparse.accel.simulate import plan_network
from edgesparse.errors import AcceleratorError
from edgesparse.quant.graph import INPUT, IntGraph, IntOp

ON_CHIP = 0xFFFF_FFFF  # the address of a map kept in the input buffer
KINDS = {"conv": 0, "linear": 1}
_STAGES = ("add", "relu", "maxpool", "avgpool", "flatten")  # the unit's order after requantization


@dataclass(frozen=True)
class LayerDescriptor:
    """One weighted layer and the post-processing it hosts, as the controller reads it (see the module docstring).

    Addresses are byte offsets in the engine's memory: the weight image first (:mod:`.memory_image`), then the
    maps in the order they are written, each as the engine lays it out (every pixel's channels padded to the
    array's M, pixel-major; :func:`~edgesparse.accel.residency.map_bytes`).
    """

    kind: int  # KINDS
    cin: int
    cout: int
    in_h: int
    in_w: int
    out_h: int  # before pooling
    out_w: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    slots: int  # weights kept per M-block of input channels (N of the array's N:M)
    row_folds: int
    col_folds: int
    tile_pixels: int  # output pixels per tile
    weights_addr: int
    bias_addr: int
    m_addr: int  # per-channel mantissas; 0 and requant 0 for int32 logits
    shift_addr: int
    requant: int
    relu: int
    input_addr: int
    output_addr: int
    output_bytes: int  # int8 bytes the layer writes to DRAM per frame (padded channels, pooled); 0 when resident
    residual_addr: int  # 0 and add_shift 0: no residual add
    add_m_a: int
    add_m_b: int
    add_shift: int
    add_relu: int
    relu_after: int  # a ReLU op after the add
    pool: int  # the hosted max pool: 0 none, else its code in POOLS (2: 2x2 stride 2, 3: 3x3 stride 2 padding 1)
    gap_m: int  # 0: no global average pool
    gap_shift: int

    def encode(self) -> bytes:
        """The descriptor as little-endian 32-bit words."""
        values = dataclasses.astuple(self)
        for field, value in zip(dataclasses.fields(self), values):
            if not 0 <= value < 2**32:
                raise AcceleratorError(f"descriptor field {field.name!r} = {value} does not fit 32 bits")
        return np.asarray(values, dtype="<u4").tobytes()

    @classmethod
    def decode(cls, data: bytes) -> "LayerDescriptor":
        """A descriptor read back from :meth:`encode`'s bytes."""
        if len(data) != WORDS * 4:
            raise AcceleratorError(f"a layer descriptor is {WORDS * 4} bytes, got {len(data)}")
        return cls(*(int(v) for v in np.frombuffer(data, dtype="<u4")))


WORDS = len(dataclasses.fields(LayerDescriptor))


def _post_processing(host: IntOp, ops: list[IntOp], shapes: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """The descriptor's post-processing fields; refuses what the unit's fixed order cannot run."""
    fields = {"add_m_a": 0, "add_m_b": 0, "add_shift": 0, "add_relu": 0, "relu_after": 0, "gap_m": 0,
              "gap_shift": 0}
    stage = -1
    for op in ops:
        position = _STAGES.index(op.kind)
        if position <= stage and op.kind != "flatten":
            raise AcceleratorError(f"layer {host.name!r}: the post-processing unit runs add, ReLU, max pool and "
                                   f"average pool in that order, once each; {op.name!r} ({op.kind}) comes too late")
        stage = max(stage, position)
        if op.kind == "add":
            fields.update(add_m_a=op.attrs["m_a"], add_m_b=op.attrs["m_b"], add_shift=op.attrs["shift"],
                          add_relu=int(op.relu))
        elif op.kind == "relu":
            fields["relu_after"] = 1
        elif op.kind == "maxpool":
            if op.window not in POOLS:
                raise AcceleratorError(f"layer {host.name!r}: the post-processing unit has no stage for {op.name!r}'s "
                                       f"{op.window} max pool (it pools 2x2 stride 2 and 3x3 stride 2 padding 1)")
        elif op.kind == "avgpool":
            if shapes[op.name][1:] != (1, 1):
                raise AcceleratorError(f"layer {host.name!r}: the post-processing unit averages whole maps only; "
                                       f"{op.name!r} leaves {shapes[op.name][1:]}")
            fields.update(gap_m=op.attrs["m"], gap_shift=op.attrs["shift"])
    return fields


def describe_network(graph: IntGraph, config: AcceleratorConfig,
                     layout: dict) -> list[LayerDescriptor]:
    """One descriptor per weighted op of ``graph`` on ``config``'s array, addresses from the memory image's
    ``layout`` (:func:`.memory_image.build_memory_image`) and a map arena after it."""
    if config.classic:
        raise AcceleratorError("descriptors drive the pipelined engine; the classic array is a model-only mode")
    shapes, hosts, hosted = graph.shapes(), op_hosts(graph), hosted_ops(graph)
    maps = plan_maps(graph, config)
    entries = {entry["name"]: entry for entry in layout["layers"]}
    arena = {INPUT: layout["total_bytes"]}
    cursor = layout["total_bytes"] + map_bytes(tuple(graph.input_shape), config.m) * config.batch
    descriptors = []
    for op, shape in plan_network(graph, config):
        if shape is None:
            continue
        geometry = fold_geometry(shape, config)  # refuses a layer whose tiles do not fit the buffers
        entry, window, placement = entries[op.name], op.window, maps[op.name]
        last = hosted[op.name][-1].name if hosted[op.name] else op.name
        source = op.inputs[0]
        add = hosted_add(hosted[op.name])
        residual = None if add is None else next((name for name in add.inputs if hosts[name] != hosts[op.name]), "")
        if residual == "":
            raise AcceleratorError(f"layer {op.name!r}: its add {add.name!r} has no operand from another layer")
        if placement.output_bytes:
            arena[last] = cursor
            cursor += placement.output_bytes
        descriptors.append(LayerDescriptor(
            kind=KINDS[op.kind], cin=shape.in_chw[0], cout=shape.cout, in_h=shape.in_chw[1], in_w=shape.in_chw[2],
            out_h=shape.out_hw[0], out_w=shape.out_hw[1], kernel_h=window.kernel[0], kernel_w=window.kernel[1],
            stride_h=window.stride[0], stride_w=window.stride[1], pad_h=window.padding[0], pad_w=window.padding[1],
            slots=entry["slots"], row_folds=geometry.row_folds, col_folds=geometry.col_folds,
            tile_pixels=geometry.tile_pixels, weights_addr=entry["weights_offset"],
            bias_addr=entry["bias_offset"], m_addr=entry.get("m_offset", 0), shift_addr=entry.get("shift_offset", 0),
            requant=int(op.requant), relu=int(op.relu),
            input_addr=ON_CHIP if placement.input_resident else arena[source],
            output_addr=arena.get(last, ON_CHIP), output_bytes=placement.output_bytes,
            residual_addr=0 if residual is None else arena.get(residual, ON_CHIP), pool=shape.pool,
            **_post_processing(op, hosted[op.name], shapes)))
    return descriptors
