"""Synthesized resources of the generated RTL: the sparse PE at M = 4, 8, 16 against the dense PE (M = 1), and whole
8x8 and 16x16 arrays, each with one and two pixels per cycle (L = 2 packs both products into one DSP48E1), with
Debian's yosys (`synth_xilinx -family xc7 -flatten -noiopad`). Beside the classic PE and array (``design`` =
classic): the pipelined PE (staging, shadow and active weights; ``pipelined``), the pipelined PE of a row that may
start a segment (the partial-sum cut; ``pipelined+top``), and pipelined arrays with 1 and 4 segments, so the cost
of the shadow registers and of the segment logic shows. The post-processing units (``unit`` = PPU, one lane each:
requantizer, 3x3-capable max pool, residual add, global average pool; :mod:`edgesparse.rtl.ppu`) too.

    python benchmarks/synthesis.py --calibrate
    python benchmarks/synthesis.py --ppu-only --calibrate    # only the PPU rows, merged into the existing results
    python benchmarks/synthesis.py --engine-only --calibrate   # only the whole layer engine, merged likewise

The whole engine (``unit`` = engine; :mod:`edgesparse.rtl.engine`) is the pipelined array (1:16, one pixel lane,
one segment) with its DMA, buffers, one activation feeder per row (each holding its own copy of the tile buffer:
the R read ports), output stage (accumulation, requantizers, max pool, residual add, global average pool, output
buffer) and controller, its DRAM outside; its memories are sized by :data:`ENGINE_BUFFERS`. With ``--resident``, the
engine built for resident maps instead (``design`` = "pipelined, resident maps": the output buffer holds the maps the
residency plan keeps, with a read port per array row and one for the add, each a copy of its block RAM; an output
buffer of :data:`RESIDENT_OUT_WORDS`): its own rows, which the resource model does not take.

    python benchmarks/synthesis.py --engine-only --resident --arrays 8x8 16x16

``--calibrate`` also rewrites src/edgesparse/accel/data/resources.toml, which the resource model (and so the
report's GOPS/DSP) reads: the classic units under ``pe`` / ``array``, the pipelined ones under ``pe_pipelined`` /
``array_pipelined`` (keys ``M<m> L<l>`` with `` top`` for the segment-top PE; ``RxC M<m> L<l> S<s>``), the
post-processing units under ``ppu`` (keys: the unit names).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import publish

from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.rtl.ppu import PPU_UNITS, ppu_verilog
from edgesparse.rtl.synth import SYNTH_SCRIPT, synthesize, yosys_version
from edgesparse.rtl.verilog import array_verilog, pe_verilog

RESOURCES = Path(__file__).resolve().parents[1] / "src/edgesparse/accel/data/resources.toml"
RESULTS_JSON = Path(__file__).resolve().parent / "results/synthesis.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pe-m", type=int, nargs="+", default=[1, 4, 8, 16], help="PE block sizes (1 = dense)")
    parser.add_argument("--arrays", nargs="+", default=["8x8", "16x16"], help="array sizes")
    parser.add_argument("--array-m", type=int, nargs="+", default=[16, 1], help="M of the synthesized arrays")
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 2], help="pixels per cycle")
    parser.add_argument("--pipelined-arrays", nargs="+", default=["16x16"], help="pipelined array sizes")
    parser.add_argument("--pipelined-m", type=int, nargs="+", default=[16], help="M of the pipelined arrays")
    parser.add_argument("--segments", type=int, nargs="+", default=[1, 4], help="segments of the pipelined arrays")
    parser.add_argument("--calibrate", action="store_true", help="rewrite the resource model's table")
    parser.add_argument("--engine-only", action="store_true",
                        help="synthesize only the whole layer engine at --arrays; keep the other rows")
    parser.add_argument("--resident", action="store_true",
                        help="with --engine-only: the engine built for resident maps, as rows of its own")
    parser.add_argument("--ppu-only", action="store_true",
                        help="synthesize only the post-processing units; keep the other rows and table entries")
    args = parser.parse_args()
    version = yosys_version()
    if args.engine_only:
        design = ENGINE_DESIGNS[args.resident]
        engine_rows = [_engine_row(size, version, args.resident) for size in args.arrays]
        # The rows kept are read once these are done: another run may have added its own meanwhile.
        kept = [row for row in json.loads(RESULTS_JSON.read_text())["rows"]
                if row["unit"] != "engine" or row["array"] not in args.arrays or row["design"] != design]
        publish("synthesis", kept + engine_rows, yosys=version,
                script=SYNTH_SCRIPT.format(source="<generated>.v", top="<top>"), engine_buffers=ENGINE_BUFFERS,
                part="xc7 (7-series primitives; no place and route)")
        if args.calibrate:  # the resource model takes the engine without resident maps
            _calibrate_engine([row for row in kept + engine_rows
                               if row["unit"] == "engine" and row["design"] == ENGINE_DESIGNS[False]])
        return
    ppu_rows = [_ppu_row(name, version) for name in PPU_UNITS]
    if args.ppu_only:
        kept = [row for row in json.loads(RESULTS_JSON.read_text())["rows"] if row["unit"] != "PPU"]
        publish("synthesis", kept + ppu_rows, yosys=version,
                script=SYNTH_SCRIPT.format(source="<generated>.v", top="<top>"),
                part="xc7 (7-series primitives; no place and route)")
        if args.calibrate:
            _calibrate_ppu(ppu_rows)
        return
    rows = []
    dense_pe = None
    pe_designs = {"classic": {}, "pipelined": {"pipelined": True},
                  "pipelined+top": {"pipelined": True, "segment_top": True}}
    for design, options in pe_designs.items():
        for lanes in args.lanes:
            for m in args.pe_m:
                started = time.perf_counter()
                counts = synthesize(pe_verilog(m, lanes, **options), "sparse_pe")
                if m == 1 and lanes == 1 and design == "classic":
                    dense_pe = counts
                rows.append(_row("PE", design, "1x1", m, lanes, 1, counts, 1, started))
    arrays = [(size, "classic", m, 1) for size in args.arrays for m in args.array_m]
    arrays += [(size, "pipelined", m, s) for size in args.pipelined_arrays for m in args.pipelined_m
               for s in args.segments]
    for size, design, m, segments in arrays:
        r, c = (int(x) for x in size.split("x"))
        for lanes in args.lanes:
            started = time.perf_counter()
            text = array_verilog(r, c, m, lanes, pipelined=design == "pipelined", segments=segments)
            rows.append(_row("array", design, size, m, lanes, segments, synthesize(text, "sparse_array"), r * c,
                             started))
    for row in rows:
        row["ff_vs_dense_pe"] = round(row["ff_per_pe"] / dense_pe["ff"], 2) if dense_pe else ""
        row["yosys"] = version.split(" (")[0]
    rows += ppu_rows
    publish("synthesis", rows, yosys=version, script=SYNTH_SCRIPT.format(source="<generated>.v", top="<top>"),
            part="xc7 (7-series primitives; no place and route)")
    if args.calibrate:
        lines = ["# Written by benchmarks/synthesis.py --calibrate: resources of the generated RTL, synthesized with",
                 f"# {version}, script: {SYNTH_SCRIPT.format(source='<generated>.v', top='<top>')}",
                 "# pe.\"M<m> L<l>\": one PE (l pixels per cycle); array.\"RxC M<m> L<l>\": a whole array (synthesis",
                 "# prunes the last column's unused pass-through registers, so an array is a little under R x C PEs).",
                 "# pe_pipelined / array_pipelined: the pipelined array's PE (\" top\": a row that may start a segment)",
                 "# and whole arrays with S<s> segments.",
                 'status = "synthesized"',
                 f'source = "{version}, synth_xilinx -family xc7 -flatten -noiopad, benchmarks/results/synthesis.csv"',
                 ""]
        for row in rows:
            if row["unit"] == "PPU":
                continue
            unit, table = f"M{row['m']} L{row['lanes']}", "" if row["design"] == "classic" else "_pipelined"
            if row["unit"] == "PE":
                key = f'pe{table}."{unit}{" top" if row["design"] == "pipelined+top" else ""}"'
            else:
                segments = "" if row["design"] == "classic" else f" S{row['segments']}"
                key = f'array{table}."{row["array"]} {unit}{segments}"'
            lines += [f"[{key}]", f"dsp = {row['dsp']}", f"lut = {row['lut']}", f"ff = {row['ff']}",
                      f"carry4 = {row['carry4']}", f"muxf = {row['muxf']}", ""]
        atomic_write_bytes(RESOURCES, "\n".join(lines).encode())
        _calibrate_ppu(ppu_rows)
        print(f"calibrated {RESOURCES}")


ENGINE_BUFFERS = {"weight_slots": 16, "tile_words": 512, "out_words": 4096, "max_tile_pixels": 1024,
                  "max_col_folds": 32, "max_width": 224, "queue": 512, "tables": 256, "max_tiles": 64,
                  "param_words": 64, "max_layers": 16}
"""The synthesized engine's capacities: 16 weight folds, a tile buffer of 2 x 512 M-byte words per row (16 KiB at
M = 16), an output buffer of 4096 words (64 KiB), tiles of up to 1024 pixels; host tables for 512 transfers, 256
feeder entries per row, 64 tiles, 64 column folds of parameters and 16 layers (the tables are read
combinationally: distributed RAM, so they are kept small here)."""

RESIDENT_OUT_WORDS = 1024
"""The output buffer of the engine built for resident maps: 1024 words (16 KiB at M = 16, what the demo model's
program needs), copied once per array row and once for the add. On the 16x16 engine yosys 0.23 runs out of this
machine's 24 GB at 4096 words and at 1024 alike (killed at 23.6 GB while mapping memories; each byte lane of the
output buffer is one memory with 18 read ports there, 10 at 8x8), so only 8x8 is measured."""

ENGINE_DESIGNS = {False: "pipelined", True: "pipelined, resident maps"}


def _engine_row(size: str, version: str, resident: bool = False) -> dict:
    """One CSV row of the whole engine at ``size`` (1:16, one lane, one segment, a 2x2 max pool, the global average
    pool, the residual add with its operand buffer; ``resident``: and resident maps)."""
    from edgesparse.rtl.engine import EngineSize
    from edgesparse.rtl.verilog import engine_verilog

    r, c = (int(x) for x in size.split("x"))
    started = time.perf_counter()
    buffers = {**ENGINE_BUFFERS, "out_words": RESIDENT_OUT_WORDS} if resident else ENGINE_BUFFERS
    engine = EngineSize(rows=r, cols=c, m=16, rate=4.0, dram_bytes=1 << 26, pool_kernel=2, global_average=True,
                        residual_add=True, resident_maps=resident, **buffers)
    row = _row("engine", ENGINE_DESIGNS[resident], size, 16, 1, 1, synthesize(engine_verilog(engine), "layer_engine"),
               r * c, started)
    return {**row, "ff_vs_dense_pe": "", "yosys": version.split(" (")[0]}


def _ppu_row(name: str, version: str) -> dict:
    """One CSV row of a post-processing unit (one lane; the per-PE columns hold the unit's own counts)."""
    started = time.perf_counter()
    row = _row("PPU", name, "1 lane", 0, 1, 1, synthesize(ppu_verilog(name), name), 1, started)
    return {**row, "m": "", "segments": "", "pattern": "", "ff_vs_dense_pe": "", "yosys": version.split(" (")[0]}


def _calibrate_ppu(rows: list[dict]) -> None:
    """Replace the table's ``ppu`` entries (the rest of the file stays as it is)."""
    entries = []
    for row in rows:
        entries += [f"[ppu.{row['design']}]", *_counts(row, ("dsp", "lut", "ff", "carry4", "muxf", "lutram"))]
    _replace_entries("ppu", ["# ppu.<unit>: one lane of a post-processing unit (src/edgesparse/rtl/ppu.py), synthesized "
                             "as", "# above; the resource model counts C x P lanes of requantizer, max_pool and "
                             "residual_add, and C", "# of avgpool."], entries)


def _calibrate_engine(rows: list[dict]) -> None:
    """Replace the table's ``engine`` entries: the whole layer engine per size (M16, one lane, one segment)."""
    entries = []
    for row in rows:
        entries += [f'[engine."{row["array"]} M{row["m"]}"]', *_counts(row, ("dsp", "lut", "ff", "carry4", "muxf",
                                                                            "bram", "lutram"))]
    _replace_entries("engine", [
        "# engine.\"RxC M<m>\": the whole layer engine (src/edgesparse/rtl/engine.py; one pixel lane, one",
        "# segment, a 2x2 max pool, the residual add and the global average pool, buffers of",
        "# benchmarks/synthesis.py's ENGINE_BUFFERS); the resource model adds its logic beyond the array",
        "# and the post-processing lanes to every configuration of that size and M."], entries)


def _counts(row: dict, keys: tuple[str, ...]) -> list[str]:
    return [f"{key} = {row[key]}" for key in keys] + [""]


def _replace_entries(prefix: str, comment: list[str], entries: list[str]) -> None:
    """Replace the table's ``prefix`` entries and their comment (the rest of the file stays as it is)."""
    kept, skipping = [], False
    for line in RESOURCES.read_text().splitlines():
        if line.startswith(f"[{prefix}.") or line.startswith(f"# {prefix}."):
            skipping = True
        elif skipping and not line.strip():
            skipping = False
            continue
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    atomic_write_bytes(RESOURCES, "\n".join(kept + [""] + comment + [""] + entries).encode())
    print(f"calibrated the {prefix} entries of {RESOURCES}")


def _row(unit: str, design: str, size: str, m: int, lanes: int, segments: int, counts: dict[str, int], pes: int,
         started: float) -> dict:
    """One CSV row: the counts, per PE, and the seconds since ``started``."""
    return {"unit": unit, "design": design, "array": size, "m": m, "lanes": lanes, "segments": segments,
            "pattern": "dense" if m == 1 else f"1:{m}", **counts,
            **{f"{key}_per_pe": round(counts[key] / pes, digits) if pes > 1 else counts[key]
               for key, digits in (("lut", 2), ("ff", 2), ("dsp", 3))},
            "seconds": round(time.perf_counter() - started, 1)}


if __name__ == "__main__":
    main()
