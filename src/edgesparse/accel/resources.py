"""FPGA resources of an accelerator configuration: DSPs, LUTs, FFs (per PE, from synthesis or an estimate) and
block RAMs (from the buffer sizes).

The figures live in ``data/resources.toml``. ``benchmarks/synthesis.py --calibrate`` synthesizes the generated RTL
with yosys and rewrites that file with the measured counts (``status = "synthesized"``): per PE for each M, and
whole arrays for the sizes it synthesized. A configuration falls back from its synthesized array to R x C
synthesized PEs (an upper bound: synthesis prunes the last column's unused pass-through registers) to the estimate
formula, and the result says which.

The rest of the layer engine (feeders, DMA, the buffers' byte-lane logic, the output stage's accumulation and writes,
the controller) is counted from the synthesized whole engine of the same size and M (``engine.<RxC M<m>>`` entries,
one pixel lane and one segment: :func:`engine_logic`), where there is one.

The post-processing unit is counted from its own synthesis (``ppu.<unit>`` entries, one lane each): every output
lane of the array (C columns x P pixels a cycle, the rate of an unsegmented fold's final sums) has a requantizer,
a max pool and a residual add, so the stream is never held up; the global average pool has a lane per column, as
the engine's output stage builds it (:class:`~edgesparse.rtl.ppu.GlobalAvgPool` of C lanes: a pixel's C channels
a cycle; with P = 2 a lane would also add the two pixels, an adder this count leaves out). A table without those
entries leaves the post-processing unit out, and the source says so.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.pattern import BlockPattern

BRAM36_KIB = 4.0  # a RAMB36 holds 32 Kib of data (36 Kib with parity) at 32-bit width


@dataclass(frozen=True)
class Resources:
    """Resource counts of one configuration, and where the PE figures come from."""

    dsps: int
    luts: int
    ffs: int
    bram36: int
    source: str
    synthesized: bool
    post_processing: dict[str, int] | None = None  # its share of dsps, luts and ffs; None: not counted

    def as_row(self) -> dict[str, Any]:
        return {"dsps": self.dsps, "luts": self.luts, "ffs": self.ffs, "bram36": self.bram36,
                "resource_source": self.source}


def estimated_pe(m: int, lanes: int = 1) -> dict[str, int]:
    """The formula used where a PE of this M and lanes was not synthesized: one DSP (two lanes share it), FFs of
    the pass-through, weight, index and partial sums, LUTs of the M:1 selects (about M/4 LUT6 per bit)."""
    index_bits = BlockPattern(1, m).index_width
    return {"dsp": 1, "ff": lanes * (8 * m + 32) + 8 + index_bits, "lut": lanes * 8 * math.ceil(m / 4) if m > 1 else 0}


PPU_STREAM_UNITS = ("requantizer", "max_pool", "residual_add")  # one of each per output lane
PPU_COLUMN_UNITS = ("avgpool",)  # one per column


def post_processing_lanes(config: AcceleratorConfig) -> int:
    """Output lanes the post-processing unit serves: C columns x P pixels a cycle."""
    return config.cols * config.pixels_per_cycle


def post_processing(config: AcceleratorConfig, calibration: dict[str, Any]) -> dict[str, int] | None:
    """DSP, LUT and FF counts of ``config``'s post-processing unit from the synthesized units, or None when the
    table has none of them."""
    table = calibration.get("ppu", {}) if calibration.get("status") == "synthesized" else {}
    if not all(unit in table for unit in PPU_STREAM_UNITS + PPU_COLUMN_UNITS):
        return None
    lanes = post_processing_lanes(config)
    return {key: lanes * sum(int(table[unit][key]) for unit in PPU_STREAM_UNITS)
            + config.cols * sum(int(table[unit][key]) for unit in PPU_COLUMN_UNITS) for key in ("dsp", "lut", "ff")}


ENGINE_PPU_UNITS = ("requantizer", "residual_add", "avgpool")
"""The post-processing units the synthesized engine holds a lane of per column (``benchmarks/synthesis.py`` builds it
with the residual add and the global average pool), which :func:`post_processing` counts instead."""


def engine_logic(config: AcceleratorConfig, calibration: dict[str, Any]) -> dict[str, int] | None:
    """DSP, LUT and FF counts of the layer engine beyond its array and post-processing lanes (the feeders, the DMA,
    the buffers' byte-lane logic, the output stage's accumulation, pool and writes, the controller), from the
    synthesized engine of this size and M (one lane, one segment): the engine less its pipelined array and C lanes of
    each of :data:`ENGINE_PPU_UNITS`. None when no engine of this size and M was synthesized."""
    if calibration.get("status") != "synthesized":
        return None
    engine = calibration.get("engine", {}).get(f"{config.rows}x{config.cols} M{config.m}")
    units = [calibration.get("ppu", {}).get(unit) for unit in ENGINE_PPU_UNITS]
    array = calibration.get("array_pipelined", {}).get(f"{config.rows}x{config.cols} M{config.m} L1 S1")
    pe = calibration.get("pe_pipelined", {}).get(f"M{config.m} L1")
    if engine is None or None in units or (array is None and pe is None):
        return None
    array_counts = {key: int(array[key]) if array is not None else round(config.pes * float(pe[key]))
                    for key in ("dsp", "lut", "ff")}
    return {key: max(0, int(engine[key]) - array_counts[key] - config.cols * sum(int(unit[key]) for unit in units))
            for key in ("dsp", "lut", "ff")}


def load_calibration() -> dict[str, Any]:
    """The packaged per-PE table (``status``, ``source`` and, once synthesized, ``pe.M<m>`` entries)."""
    return tomllib.loads(resources.files("edgesparse.accel").joinpath("data", "resources.toml").read_text())


def _pipelined_pe(table: dict[str, Any], unit: str, config: AcceleratorConfig) -> dict[str, float] | None:
    """The average pipelined PE of ``config``: rows that may start a segment carry the cut ("top" entries)."""
    plain, top = table.get(unit), table.get(f"{unit} top")
    if plain is None or (config.segments > 1 and top is None):
        return None
    share = (config.segments - 1) / config.rows  # rows 0 needs no cut: its partial sum starts at 0 anyway
    return {key: (1 - share) * float(plain[key]) + share * float(top[key] if top else plain[key])
            for key in ("dsp", "lut", "ff")}


def estimate_resources(config: AcceleratorConfig, calibration: dict[str, Any] | None = None) -> Resources:
    """DSP, LUT, FF and RAMB36 counts of ``config``: the synthesized array when this size and M was synthesized,
    else R x C synthesized PEs of this M, else the estimate formula; plus the post-processing unit
    (:func:`post_processing`); block RAM from the buffer sizes."""
    calibration = load_calibration() if calibration is None else calibration
    synthesized = calibration.get("status") == "synthesized"
    unit = f"M{config.m} L{config.pixels_per_cycle}"
    if config.classic:
        array = calibration.get("array", {}).get(f"{config.rows}x{config.cols} {unit}") if synthesized else None
        pe = calibration.get("pe", {}).get(unit) if synthesized else None
    else:  # the pipelined array: shadow and staging registers, and the segment cut in every R/S-th row
        array = calibration.get("array_pipelined", {}).get(f"{config.rows}x{config.cols} {unit} S{config.segments}") \
            if synthesized else None
        pe = _pipelined_pe(calibration.get("pe_pipelined", {}), unit, config) if synthesized else None
    if array is not None:
        counts = {key: int(array[key]) for key in ("dsp", "lut", "ff")}
        kind = "" if config.classic else f"pipelined S={config.segments} "
        source = f"synthesized {config.rows}x{config.cols} {kind}array ({calibration['source']})"
    elif pe is not None:
        counts = {key: round(config.pes * float(pe[key])) for key in ("dsp", "lut", "ff")}
        kind = "" if config.classic else "pipelined "
        source = f"{config.pes} x the synthesized {kind}{unit} PE ({calibration['source']})"
    else:
        counts = {key: config.pes * value for key, value in estimated_pe(config.m, config.pixels_per_cycle).items()}
        source = f"estimate ({calibration.get('source', 'formula')})"
        synthesized = False
    ppu = post_processing(config, calibration)
    parts = ((ppu, "post-processing unit not counted (not synthesized)",
              f"post-processing: {post_processing_lanes(config)} synthesized lanes"),
             (engine_logic(config, calibration),
              "the engine's control, feeders and DMA not counted (no synthesized engine of this size)",
              f"the engine's control, feeders and DMA: the synthesized {config.rows}x{config.cols} engine's"))
    for part, missing, counted in parts:
        if part is None:
            source += f"; {missing}"
        else:
            counts = {key: counts[key] + part[key] for key in ("dsp", "lut", "ff")}
            source += f"; {counted}"
    bram = sum(math.ceil(kib / BRAM36_KIB) for kib in
               (config.weight_buffer_kib, config.input_buffer_kib, config.output_buffer_kib))
    return Resources(dsps=counts["dsp"], luts=counts["lut"], ffs=counts["ff"], bram36=bram,
                     source=source + f"; block RAM estimated at {BRAM36_KIB:g} KiB per RAMB36", synthesized=synthesized,
                     post_processing=ppu)
