"""The Python API: your own model and your own training loop, N:M-pruned, exported, packed and run on the array.

The lifecycle follows ``torch.ao.pruning`` (prepare -> step -> squash): :func:`prepare` attaches the masks and
returns the pruner, whose ``step()`` goes after ``optimizer.step()`` in any loop and whose ``finalize()`` fixes the
masks at the final pattern; :func:`export` then bakes the masked weights into the integer graph (where
``torch.ao`` squashes them into the float model). :func:`verify_pattern` checks the pattern, :func:`save_packed`
writes the packed model, :func:`simulate` runs it on the sparse array and :func:`hardware_figures` reads its figures.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np
import torch
from torch import nn

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.energy import load_energy_table
from edgesparse.accel.metrics import HardwareFigures
from edgesparse.accel.metrics import hardware_figures as _figures_of
from edgesparse.accel.simulate import SimulationResult
from edgesparse.accel.simulate import simulate as _simulate
from edgesparse.errors import QuantError
from edgesparse.pattern import BlockPattern, Pattern, parse_pattern
from edgesparse.quant.export import export_model
from edgesparse.quant.graph import IntGraph
from edgesparse.quant.reference import quantize_input
from edgesparse.sparsity.figures import verify_pattern
from edgesparse.sparsity.importance import Importance, create_importance
from edgesparse.sparsity.pruner import DynamicPruner, PatternPlan, PruningSchedule


def prepare(model: nn.Module, pattern: str | Pattern = "1:16", total_steps: int = 1000, *,
            first_conv: str | Pattern | None = "dense", overrides: dict[str, str] | None = None,
            importance: str | Importance = "fisher", schedule: PruningSchedule | None = None,
            pruned_decay: float = 0.0) -> DynamicPruner:
    """Make ``model`` N:M-prunable: mask every Conv2d and Linear layer (the first conv ``first_conv``, layers
    matching an ``overrides`` glob their own pattern) and return the pruner. Call ``pruner.step()`` after every
    ``optimizer.step()``; over ``total_steps`` the masks follow ``schedule`` (default: pruned by 40% of the steps,
    frozen from 50%) and end exactly at the pattern. ``pruner.finalize()`` fixes them there at once."""
    score = create_importance(importance) if isinstance(importance, str) else importance
    plan = PatternPlan(pattern, first_conv, dict(overrides or {}))
    return DynamicPruner(model, plan, score, schedule or PruningSchedule(), total_steps, pruned_decay)


def export(model: nn.Module, calibration: torch.Tensor | Iterable[torch.Tensor],
           mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> IntGraph:
    """The int8 integer graph of a pruned model: BatchNorm folded, activation scales calibrated on
    ``calibration`` (a batch ``[N, C, H, W]`` of the images the model takes, or an iterable of such batches),
    weights per output channel. Any model whose ops map onto the integer graph exports; anything else raises
    :class:`~edgesparse.errors.QuantError` naming the first unsupported layer (path and type) or function.
    ``mean``/``std`` record the input normalization (for the report; the graph takes normalized images)."""
    batches = [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)
    if not batches or batches[0].dim() != 4:
        raise QuantError("calibration takes image batches [N, C, H, W]")
    verify_pattern(model)
    return export_model(model, batches, tuple(batches[0].shape[1:]), mean, std)


def graph_block(graph: IntGraph) -> tuple[int, int]:
    """(N, M) of the graph's most common N:M layer pattern, (1, 1) (dense) when it has none."""
    blocks = [parse_pattern(p) for p in graph.patterns.values()]
    counts = Counter((p.n, p.m) for p in blocks if isinstance(p, BlockPattern))
    return counts.most_common(1)[0][0] if counts else (1, 1)


def array_for(graph: IntGraph, rows: int = 16, cols: int = 16, **settings: object) -> AcceleratorConfig:
    """An array built for the graph's most common N:M (:func:`graph_block`), with ``settings`` (clock, buffers,
    ``pixels_per_cycle``, ...) as :class:`AcceleratorConfig` takes them."""
    n, m = graph_block(graph)
    return AcceleratorConfig(rows=rows, cols=cols, m=m, n=n, **settings)


def simulate(graph: IntGraph, config: AcceleratorConfig | None = None, mode: str = "fast",
             image: torch.Tensor | np.ndarray | None = None) -> SimulationResult:
    """Run one frame of ``graph`` on the array (default: :func:`array_for` the graph). ``mode``: ``fast`` (every
    output, bit-exact), ``stepped`` (clocked register by register: small models) or ``analytic`` (cycles only).
    ``image``: a float image ``[C, H, W]`` as the model takes it (quantized here), an int8 array, or None for a
    random int8 image (the pattern fixes the work, so the cycles do not depend on it)."""
    config = config or array_for(graph)
    if mode != "analytic":
        if image is None:
            image = np.random.default_rng(0).integers(-128, 128, tuple(graph.input_shape)).astype(np.int8)
        elif isinstance(image, torch.Tensor):
            image = quantize_input(graph, image.detach().cpu()[None])[0]
    return _simulate(graph, config, mode, image)


def hardware_figures(result: SimulationResult, model: str = "model") -> HardwareFigures:
    """The paper's figures of a simulated frame: cycles, FPS, PE utilization, effective and actual GOPS, DSPs and
    GOPS/DSP, and energy, W and GOPS/W from the 45 nm ASIC energy model (a model, not a measurement)."""
    return _figures_of(model, result, load_energy_table())
