"""The frame bound: what no schedule on this array and DRAM can beat, computed from layer shapes alone.

Per weighted layer, ``max(performed MACs / (R x C x pixels per cycle), minimum DRAM bytes / bandwidth)`` cycles,
where the minimum DRAM bytes are the layer's weights and indices once, its input unless resident (the rows its
outputs read: a stride-2 1x1 convolution skips every other row), its residual
operand unless resident and its (pooled) output unless resident (residency by the one rule of
:mod:`edgesparse.accel.residency`, carried by the :class:`~edgesparse.accel.geometry.LayerShape`). The frame's
bound is the sum. It takes nothing from the schedule: tiles, folds and their timing play no part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.geometry import LayerShape


@dataclass(frozen=True)
class LayerBound:
    """A layer's two limits, in cycles, and the bytes behind the second."""

    name: str
    compute_cycles: float
    dram_bytes: int
    dram_cycles: float

    @property
    def cycles(self) -> float:
        return max(self.compute_cycles, self.dram_cycles)


def layer_bound(shape: LayerShape, config: AcceleratorConfig) -> LayerBound:
    """The bound of one weighted layer."""
    performed = shape.rows_needed * shape.cout * shape.pixels
    weights = math.ceil(shape.rows_needed * shape.cout * (8 + config.index_bits) / 8)
    cin, height, width = shape.in_chw
    rows_read = min(height, (shape.out_hw[0] - 1) * shape.stride[0] + shape.kernel[0])  # a stride may skip rows
    inputs = 0 if shape.input_resident else shape.batch * cin * width * rows_read
    moved = weights + inputs + shape.residual_bytes + shape.written_bytes
    return LayerBound(shape.name, performed / (config.pes * config.pixels_per_cycle), moved,
                      moved / config.dram_bytes_per_cycle)


def frame_bound(shapes: list[LayerShape], config: AcceleratorConfig) -> list[LayerBound]:
    """The bound of every weighted layer of a frame (their sum is the frame's)."""
    return [layer_bound(shape, config) for shape in shapes]
