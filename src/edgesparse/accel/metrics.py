"""The figures the paper reports, for one simulated frame: FPS, GOPS, power efficiency and calculation density.

- effective GOPS = 2 x the dense model's MACs x FPS (pruned MACs counted, as the literature does);
- actual GOPS = 2 x the MACs the PEs perform x FPS;
- power = energy per frame x FPS (static energy included, :mod:`edgesparse.accel.energy`);
- power efficiency = effective GOPS / W; calculation density = effective GOPS / DSP (:mod:`.resources`).

:func:`pareto_front` marks the design points no other point beats in every figure. The network experiments that
produce such points (comparisons with the dense twin, the design-space sweep) are in :mod:`edgesparse.network_flow`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from edgesparse.accel.energy import EnergyTable, frame_energy
from edgesparse.accel.resources import estimate_resources
from edgesparse.accel.simulate import SimulationResult


@dataclass(frozen=True)
class HardwareFigures:
    """One network on one configuration."""

    model: str
    array: str
    pattern: str
    clock_mhz: float
    cycles: int
    fps: float
    pe_utilization: float
    effective_gops: float
    actual_gops: float
    energy_mj: float
    power_w: float
    gops_per_w: float
    dsps: int
    luts: int
    ffs: int
    bram36: int
    gops_per_dsp: float
    dram_mb: float
    resource_source: str
    energy_mj_by_action: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.array} {self.pattern}"

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row.update({f"energy_mj_{k}": v for k, v in row.pop("energy_mj_by_action").items()})
        return row


def hardware_figures(model: str, result: SimulationResult, table: EnergyTable) -> HardwareFigures:
    """Every reported figure of one simulated frame."""
    config = result.config
    resources = estimate_resources(config)
    energy = frame_energy(result, table, resources)
    return HardwareFigures(
        model=model, array=f"{config.rows}x{config.cols}", pattern="dense" if config.m == 1 else f"{config.n}:{config.m}",
        clock_mhz=config.clock_mhz, cycles=result.total_cycles, fps=result.fps, pe_utilization=result.pe_utilization,
        effective_gops=result.effective_gops, actual_gops=result.actual_gops, energy_mj=energy.joules * 1e3,
        power_w=energy.power_w, gops_per_w=energy.gops_per_w, dsps=resources.dsps, luts=resources.luts,
        ffs=resources.ffs, bram36=resources.bram36, gops_per_dsp=result.effective_gops / resources.dsps,
        dram_mb=result.dram_bytes / 1e6, resource_source=resources.source,
        energy_mj_by_action={k: v * 1e3 for k, v in energy.by_action.items()})


PARETO_KEYS = ("fps", "gops_per_w", "gops_per_dsp")  # speed, energy efficiency, area (DSP) efficiency


def pareto_front(points: list[Any], keys: tuple[str, ...] = PARETO_KEYS) -> list[bool]:
    """Whether each point is on the Pareto front, maximizing every figure in ``keys`` (no other point is at least
    as good in all of them and better in one)."""
    values = [tuple(getattr(p, k) for k in keys) for p in points]
    return [not any(all(o >= v for o, v in zip(other, mine)) and other != mine for other in values)
            for mine in values]
