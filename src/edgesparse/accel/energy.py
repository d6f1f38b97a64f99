"""Energy and power of a frame: action counts from the schedule times the per-action energies of a sourced table.

The table is a 45 nm ASIC model (Horowitz, ISSCC 2014; see ``data/energy.toml``), not a measurement of the FPGA the
RTL is synthesized for: every figure derived from it is labelled :data:`ENERGY_MODEL`.

Actions per weighted layer (see :func:`layer_actions`):

- ``mac``: the multiply-accumulates the PEs perform on stored slots;
- ``select``: one M:1 activation select per MAC (log2(M) mux levels; none on the dense array);
- ``registers``: bytes latched by pipeline registers: the M-wide activation vector passing every PE of a row, the
  int32 partial sum of every MAC, and every fold's weights and indices shifting down R rows;
- ``weight_buffer`` / ``input_buffer`` / ``output_buffer``: bytes read and written (the schedule's buffer
  traffic), each at the per-byte energy of an SRAM of that buffer's size;
- ``dram``: bytes moved to and from DRAM (a residual add's second operand included);
- ``clock``: every cycle of the frame, the clock energy of the design's flip-flops, DSPs, LUTs and block RAMs
  (their counts from :mod:`edgesparse.accel.resources`, a per-resource figure from the table);
- ``static``: the same resources' static power times the frame's duration.

Energy per frame includes clock and static energy, so power = energy per frame x FPS.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.resources import Resources, estimate_resources
from edgesparse.accel.schedule import LayerSchedule
from edgesparse.accel.simulate import SimulationResult
from edgesparse.errors import ConfigError

ENERGY_MODEL = "45 nm ASIC model"  # the label every energy, power and GOPS/W figure carries
ACTIONS = ("mac", "select", "registers", "weight_buffer", "input_buffer", "output_buffer", "dram", "clock", "static")
_ENTRIES = ("mac", "select_level", "register_byte", "sram_64bit_read", "dram_byte")
RESOURCES = ("lut", "ff", "dsp", "bram36")  # the [resource.*] entries: static_w and clock_pj per unit
_STATUSES = ("quoted", "derived", "assumed")


@dataclass(frozen=True)
class EnergyTable:
    """The per-action energies, with the source of each (``entries`` keeps the file's text)."""

    entries: dict[str, dict[str, Any]]
    sources: dict[str, str]
    path: str

    def pj(self, name: str) -> float:
        return float(self.entries[name]["pj"])

    def per_resource(self, key: str) -> dict[str, float]:
        """``key`` (``static_w`` or ``clock_pj``) of one LUT, FF, DSP and RAMB36."""
        return {name: float(self.entries["resource"][name][key]) for name in RESOURCES}

    def scaled_resources(self, factor: float) -> "EnergyTable":
        """This table with every per-resource static and clock figure times ``factor`` (for sensitivity)."""
        scaled = {name: {**entry, "static_w": entry["static_w"] * factor, "clock_pj": entry["clock_pj"] * factor}
                  for name, entry in self.entries["resource"].items()}
        return EnergyTable({**self.entries, "resource": scaled}, self.sources, f"{self.path} (resources x{factor:g})")

    def sram_pj_per_byte(self, kib: float) -> float:
        """Per-byte access energy of a ``kib`` SRAM: log-log interpolation of the quoted 64-bit read points."""
        points = self.entries["sram_64bit_read"]
        sizes, energies = np.log(points["kib"]), np.log(points["pj"])
        x = math.log(kib)
        # np.interp clamps; extend the end segments instead, so a bigger buffer always costs more per byte.
        segment = int(np.clip(np.searchsorted(sizes, x) - 1, 0, len(sizes) - 2))
        slope = (energies[segment + 1] - energies[segment]) / (sizes[segment + 1] - sizes[segment])
        return math.exp(energies[segment] + slope * (x - sizes[segment])) / 8

    def rows(self, config: AcceleratorConfig) -> list[dict[str, str]]:
        """The table as printed in reports: action, energy, status, source (derived per-buffer values included)."""
        out = [{"action": "MAC (int8 x int8 + int32)", "energy": f"{self.pj('mac'):g} pJ", **self._mark("mac")},
               {"action": f"M:1 select, per mux level (x{config.index_bits} at M={config.m})",
                "energy": f"{self.pj('select_level'):g} pJ", **self._mark("select_level")},
               {"action": "register, per byte latched", "energy": f"{self.pj('register_byte'):g} pJ",
                **self._mark("register_byte")}]
        for buffer in ("weight", "input", "output"):
            kib = getattr(config, f"{buffer}_buffer_kib")
            out.append({"action": f"{buffer} buffer ({kib:g} KiB), per byte",
                        "energy": f"{self.sram_pj_per_byte(kib):.3g} pJ", "status": "derived",
                        "source": f"{self.entries['sram_64bit_read']['source']}; log-log interpolation by size, "
                                  f"/ 8 bytes"})
        out.append({"action": "DRAM, per byte", "energy": f"{self.pj('dram_byte'):g} pJ", **self._mark("dram_byte")})
        for name in RESOURCES:
            entry = self.entries["resource"][name]
            out.append({"action": f"per {name.upper()}: static power; clock energy per cycle",
                        "energy": f"{entry['static_w'] * 1e9:g} nW; {entry['clock_pj']:g} pJ",
                        **self._mark(name, entry)})
        return out

    def _mark(self, name: str, entry: dict[str, Any] | None = None) -> dict[str, str]:
        entry = self.entries[name] if entry is None else entry
        text = entry["source"]
        if entry.get("derivation"):
            text += f"; {entry['derivation']}"
        return {"status": entry["status"], "source": text}


DEFAULT_TABLE = "energy.toml"


def load_energy_table(path: str | Path | None = None) -> EnergyTable:
    """Read and check an energy table (the packaged one by default): every entry needs a number, a status and a
    source."""
    if path is None:
        text, label = resources.files("edgesparse.accel").joinpath("data", DEFAULT_TABLE).read_text(), DEFAULT_TABLE
    else:
        try:
            text, label = Path(path).read_text(), str(path)
        except OSError as error:
            raise ConfigError(f"cannot read energy table {path}: {error.strerror}") from error
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"energy table {label} is not valid TOML: {error}") from error
    per_resource = data.get("resource") if isinstance(data.get("resource"), dict) else {}
    checks = [(name, data.get(name), ("pj",)) for name in _ENTRIES]
    checks += [(f"resource.{name}", per_resource.get(name), ("static_w", "clock_pj")) for name in RESOURCES]
    for name, entry, keys in checks:
        if not isinstance(entry, dict):
            raise ConfigError(f"energy table {label} has no [{name}] entry")
        if entry.get("status") not in _STATUSES or not entry.get("source"):
            raise ConfigError(f"energy table {label}: [{name}] needs a source and a status of {', '.join(_STATUSES)}")
        for key in keys:
            values = entry.get(key)
            values = values if isinstance(values, list) else [values]
            if not values or not all(isinstance(v, (int, float)) and v >= 0 for v in values):
                raise ConfigError(f"energy table {label}: [{name}] {key} must be non-negative numbers, got "
                                  f"{entry.get(key)!r}")
    sram = data["sram_64bit_read"]
    if not isinstance(sram.get("kib"), list) or len(sram["kib"]) != len(sram["pj"]) or len(sram["kib"]) < 2 \
            or sorted(sram["kib"]) != sram["kib"] or min(sram["kib"]) <= 0 or min(sram["pj"]) <= 0:
        raise ConfigError(f"energy table {label}: [sram_64bit_read] needs two or more increasing kib sizes and as many "
                          f"positive pj values")
    return EnergyTable({k: v for k, v in data.items() if k != "sources"}, dict(data.get("sources", {})), label)


def layer_actions(schedule: LayerSchedule, config: AcceleratorConfig) -> dict[str, int]:
    """How many times each action happens in one weighted layer (bytes for memories and registers)."""
    shape = schedule.shape
    buffers = schedule.buffer_bytes or {}
    activation_bytes = shape.rows_needed * schedule.col_folds * config.cols * shape.pixels * config.m
    weight_shift_bytes = schedule.folds * config.rows * config.fold_weight_bytes
    return {
        "mac": schedule.real_macs,
        "select": schedule.real_macs if config.m > 1 else 0,
        "registers": activation_bytes + 4 * schedule.real_macs + weight_shift_bytes,
        "weight_buffer": buffers.get("weight_buffer_reads", 0),
        "input_buffer": buffers.get("input_buffer_reads", 0),
        "output_buffer": buffers.get("output_buffer_writes", 0) + buffers.get("output_buffer_reads", 0),
        "dram": schedule.dram_bytes,
    }


def _action_pj(table: EnergyTable, config: AcceleratorConfig) -> dict[str, float]:
    return {"mac": table.pj("mac"), "select": table.pj("select_level") * config.index_bits,
            "registers": table.pj("register_byte"),
            "weight_buffer": table.sram_pj_per_byte(config.weight_buffer_kib),
            "input_buffer": table.sram_pj_per_byte(config.input_buffer_kib),
            "output_buffer": table.sram_pj_per_byte(config.output_buffer_kib),
            "dram": table.pj("dram_byte")}


@dataclass(frozen=True)
class FrameEnergy:
    """Energy of one frame: per layer and per action (joules), and what follows from it."""

    layers: list[dict[str, Any]]  # name, then one joule figure per action (clock and static excluded)
    by_action: dict[str, float]  # joules per frame, clock and static included
    fps: float
    effective_gops: float

    @property
    def joules(self) -> float:
        return sum(self.by_action.values())

    @property
    def power_w(self) -> float:
        return self.joules * self.fps

    @property
    def gops_per_w(self) -> float:
        return self.effective_gops / self.power_w


def resource_counts(resources: Resources) -> dict[str, int]:
    """The design's LUT, FF, DSP and RAMB36 counts, keyed as the table's [resource.*] entries."""
    return {"lut": resources.luts, "ff": resources.ffs, "dsp": resources.dsps, "bram36": resources.bram36}


def frame_energy(result: SimulationResult, table: EnergyTable, resources: Resources | None = None) -> FrameEnergy:
    """Energy per frame of a simulated network, per layer and per action, with the clock energy of every cycle and
    the static energy over the frame, both from the design's resources (estimated for the config by default)."""
    config = result.config
    counts_of = resource_counts(estimate_resources(config) if resources is None else resources)
    per_action = _action_pj(table, config)
    layers, totals = [], dict.fromkeys(ACTIONS, 0.0)
    for layer in result.layers:
        if layer.schedule is not None:
            counts = layer_actions(layer.schedule, config)
        elif layer.dram_bytes:
            counts = {"dram": layer.dram_bytes}
        else:
            continue
        joules = {action: counts.get(action, 0) * per_action[action] * 1e-12 for action in per_action}
        layers.append({"name": layer.name, **joules})
        for action, value in joules.items():
            totals[action] += value
    clock_pj = sum(counts_of[name] * pj for name, pj in table.per_resource("clock_pj").items())
    totals["clock"] = result.total_cycles * clock_pj * 1e-12
    totals["static"] = sum(counts_of[name] * w for name, w in table.per_resource("static_w").items()) / result.fps
    return FrameEnergy(layers, totals, result.fps, result.effective_gops)
