"""Network experiments on the accelerator: a registered network with random weights that follow a pattern (the
pattern fixes the work) on an array and on its same-size dense twin, the resource-figure sensitivity, and the
design-space sweep over array sizes and patterns. Shapes only (:func:`edgesparse.export_flow.shape_graph`): the
analytic model needs no values."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from edgesparse.accel.config import AcceleratorConfig, array_block
from edgesparse.accel.energy import EnergyTable
from edgesparse.accel.metrics import HardwareFigures, hardware_figures
from edgesparse.accel.simulate import simulate
from edgesparse.errors import PatternError
from edgesparse.export_flow import shape_graph
from edgesparse.progress import progress_bar
from edgesparse.quant.graph import IntGraph


def network_shapes(name: str, pattern: str) -> IntGraph:
    """A registered network at its own input size under ``pattern`` (first conv dense), shapes only: what the
    analytic model needs (see :func:`edgesparse.export_flow.shape_graph`)."""
    return shape_graph(name, pattern)


@dataclass(frozen=True)
class NetworkComparison:
    """A network on the sparse array and on its same-size dense twin, with both runs' per-layer rows."""

    sparse: HardwareFigures
    dense: HardwareFigures
    layers: list[dict[str, Any]]  # weighted layers on the sparse array: cycles, bound, utilization, traffic
    dense_layers: list[dict[str, Any]]  # the same on the dense twin


def compare_networks(names: Iterable[str], config: AcceleratorConfig, table: EnergyTable,
                     progress: bool = False, pattern: str | None = None) -> list[NetworkComparison]:
    """Each network on ``config`` and on its dense twin; the sparse model follows ``pattern`` (default: the array's
    N:M; a 1:16 network runs on an array built for M = 32 as two slots per block of 32)."""
    pattern = pattern or f"{config.n}:{config.m}"
    comparisons = []
    for name in progress_bar(list(names), desc=f"networks on {config.describe()}", unit="net", disable=not progress):
        graph = network_shapes(name, pattern)
        label = f"{name}-{graph.input_shape[1]}"
        sparse = simulate(graph, config, "analytic")
        dense = simulate(graph, config.dense_twin(), "analytic")
        comparisons.append(NetworkComparison(
            hardware_figures(label, sparse, table), hardware_figures(label, dense, table),
            *[[layer.as_row(run.config) for layer in run.layers if layer.weighted]
              for run in (sparse, dense)]))
    return comparisons


RESOURCE_FACTORS = (0.5, 1.0, 4.0)  # the per-resource static and clock figures: halved, as given, quadrupled


def resource_sensitivity(name: str, config: AcceleratorConfig, table: EnergyTable,
                         factors: Iterable[float] = RESOURCE_FACTORS) -> list[dict[str, Any]]:
    """The sparse/dense effective GOPS/W ratio of ``name`` on ``config`` and its dense twin when the table's
    per-resource static and clock figures are scaled by each factor (one simulation per array)."""
    graph = network_shapes(name, f"{config.n}:{config.m}")
    label = f"{name}-{graph.input_shape[1]}"
    results = simulate(graph, config, "analytic"), simulate(graph, config.dense_twin(), "analytic")
    rows = []
    for factor in factors:
        scaled = table.scaled_resources(factor)
        sparse, dense = (hardware_figures(label, result, scaled) for result in results)
        rows.append({"model": label, "array": sparse.array, "pattern": sparse.pattern,
                     "pixels_per_cycle": config.pixels_per_cycle, "resource_factor": factor,
                     "sparse_gops_per_w": round(sparse.gops_per_w, 1), "dense_gops_per_w": round(dense.gops_per_w, 1),
                     "gops_per_w_vs_dense": round(sparse.gops_per_w / dense.gops_per_w, 3),
                     "sparse_static_clock_share": round(sum(sparse.energy_mj_by_action[k] for k in ("static", "clock"))
                                                        / sparse.energy_mj, 4)})
    return rows


def sweep(name: str, arrays: Iterable[tuple[int, int]], patterns: Iterable[str], base: AcceleratorConfig,
          table: EnergyTable, progress: bool = False) -> list[HardwareFigures]:
    """Figures of ``name`` for every array size x pattern (``"dense"``: the classic array) on ``base``'s clock and
    memories. The dense array runs the 1:M model with every weight stored, as the comparisons do."""
    arrays, patterns = list(arrays), list(patterns)
    for spec in patterns:
        _block(spec)  # a bad pattern fails before any network is built
    graphs: dict[str, IntGraph] = {}
    rows = []
    steps = [(a, p) for p in patterns for a in arrays]
    for (rows_, cols), spec in progress_bar(steps, desc=f"sweep {name}", unit="point", disable=not progress):
        key = "1:16" if spec == "dense" else spec
        if key not in graphs:
            graphs[key] = network_shapes(name, key)
        graph = graphs[key]
        n, m = _block(spec)
        config = AcceleratorConfig(**{**asdict(base), "rows": rows_, "cols": cols, "m": m, "n": n})
        rows.append(hardware_figures(f"{name}-{graph.input_shape[1]}", simulate(graph, config, "analytic"), table))
    return rows


def _block(spec: str) -> tuple[int, int]:
    """(N, M) of a sweep pattern: ``dense`` or ``N:M``."""
    block = array_block(spec)
    if block is None:
        raise PatternError(f"the sweep takes 'dense' or N:M patterns, got {spec!r}")
    return block
