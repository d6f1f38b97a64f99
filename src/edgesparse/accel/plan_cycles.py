"""Cycles of a layer-wise N:M plan on the array, from the accelerator's public analytic simulation.

The pattern fixes the work, so a model with random weights that follows the plan has the trained model's cycles.
The array is built for the largest M the plan uses (an M = 32 array runs a 1:16 layer as two slots per block).
"""

from __future__ import annotations

from typing import Iterable, Mapping

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.simulate import simulate
from edgesparse.export_flow import export_random
from edgesparse.models import INPUT_SIZE
from edgesparse.pattern import BlockPattern, parse_pattern


def array_for(patterns: Iterable[str], rows: int = 16, cols: int = 16) -> AcceleratorConfig:
    """The ``rows x cols`` array built for the largest M among ``patterns`` (16 when none is N:M)."""
    ms = [p.m for p in map(parse_pattern, patterns) if isinstance(p, BlockPattern)]
    return AcceleratorConfig(rows=rows, cols=cols, m=max(ms, default=16))


def plan_layer_cycles(model: str, width: float, num_classes: int, in_chans: int, plan: Mapping[str, str],
                      array: AcceleratorConfig | None = None) -> dict[str, int]:
    """Analytic cycles of every weighted layer of ``model`` with ``plan`` (layer -> pattern, first conv dense)."""
    array = array or array_for(plan.values())
    graph = export_random(model, "dense", "dense", INPUT_SIZE[model], num_classes, in_chans, width,
                          calibration_images=1, overrides=dict(plan))
    return {layer.name: layer.cycles for layer in simulate(graph, array, mode="analytic").layers
            if layer.weighted}


def option_cycles(model: str, width: float, num_classes: int, in_chans: int, layers: list[str],
                  options: list[BlockPattern], array: AcceleratorConfig) -> dict[str, dict[BlockPattern, int]]:
    """Cycles of each of ``layers`` under each uniform option (a layer's cycles barely depend on its neighbours)."""
    table: dict[str, dict[BlockPattern, int]] = {name: {} for name in layers}
    for option in options:
        cycles = plan_layer_cycles(model, width, num_classes, in_chans, {name: str(option) for name in layers}, array)
        for name in layers:
            table[name][option] = cycles[name]
    return table
