"""The frame bound: what no schedule on this array and DRAM can beat, computed from layer shapes alone.

Per weighted layer, ``max(performed MACs / (R x C x pixels per cycle), minimum DRAM bytes / bandwidth)`` cycles,
where the minimum DRAM bytes are the layer's weights and indices once, its input unless resident (the rows its
outputs read, padding rows excepted: a stride-2 1x1 convolution skips every other row; channels padded to M as the
map is stored), its residual
operand unless resident and its (pooled) output unless resident (residency by the one rule of
:mod:`edgesparse.accel.residency`, carried by the :class:`~edgesparse.accel.geometry.LayerShape`). The frame's
bound is the sum. It takes nothing from the schedule: tiles, folds and their timing play no part.
"""

from __future__ import annotations

import math

import numpy as np
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


def rows_read(shape: LayerShape) -> int:
    """Distinct input rows the output windows cover, padding rows excepted: the whole map, except where a kernel
    shorter than its stride skips rows (a stride-2 1x1 convolution reads every other row); never more than the
    schedule's tiles read."""
    (kernel, stride, padding), out_rows = (shape.kernel[0], shape.stride[0], shape.padding[0]), shape.out_hw[0]
    starts = np.arange(out_rows) * stride - padding
    covered = np.unique((starts.reshape(-1, 1) + np.arange(kernel)).ravel())
    return int(((covered >= 0) & (covered < shape.in_chw[1])).sum())


def layer_bound(shape: LayerShape, config: AcceleratorConfig) -> LayerBound:
    """The bound of one weighted layer."""
    performed = shape.rows_needed * shape.cout * shape.pixels
    weights = math.ceil(shape.rows_needed * shape.cout * (8 + config.index_bits) / 8)
    inputs = 0 if shape.input_resident else shape.batch * shape.input_row_bytes() * rows_read(shape)
    moved = weights + inputs + shape.residual_bytes + shape.written_bytes
    return LayerBound(shape.name, performed / (config.pes * config.pixels_per_cycle), moved,
                      moved / config.dram_bytes_per_cycle)


def frame_bound(shapes: list[LayerShape], config: AcceleratorConfig) -> list[LayerBound]:
    """The bound of every weighted layer of a frame (their sum is the frame's)."""
    return [layer_bound(shape, config) for shape in shapes]
