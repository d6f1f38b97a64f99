"""Synthesized resources of the generated RTL: the sparse PE at M = 4, 8, 16 against the dense PE (M = 1), and whole
8x8 and 16x16 arrays, each with one and two pixels per cycle (L = 2 packs both products into one DSP48E1), with
Debian's yosys (`synth_xilinx -family xc7 -flatten -noiopad`).

    python benchmarks/synthesis.py --calibrate

``--calibrate`` also rewrites src/edgesparse/accel/data/resources.toml, which the resource model (and so the
report's GOPS/DSP) reads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import publish

from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.rtl.synth import SYNTH_SCRIPT, synthesize, yosys_version
from edgesparse.rtl.verilog import array_verilog, pe_verilog

RESOURCES = Path(__file__).resolve().parents[1] / "src/edgesparse/accel/data/resources.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pe-m", type=int, nargs="+", default=[1, 4, 8, 16], help="PE block sizes (1 = dense)")
    parser.add_argument("--arrays", nargs="+", default=["8x8", "16x16"], help="array sizes")
    parser.add_argument("--array-m", type=int, nargs="+", default=[16, 1], help="M of the synthesized arrays")
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 2], help="pixels per cycle")
    parser.add_argument("--calibrate", action="store_true", help="rewrite the resource model's table")
    args = parser.parse_args()
    version = yosys_version()
    rows = []
    dense_pe = None
    for lanes in args.lanes:
        for m in args.pe_m:
            started = time.perf_counter()
            counts = synthesize(pe_verilog(m, lanes), "sparse_pe")
            if m == 1 and lanes == 1:
                dense_pe = counts
            rows.append({"unit": "PE", "array": "1x1", "m": m, "lanes": lanes,
                         "pattern": "dense" if m == 1 else f"1:{m}", **counts, "lut_per_pe": counts["lut"],
                         "ff_per_pe": counts["ff"], "dsp_per_pe": counts["dsp"],
                         "seconds": round(time.perf_counter() - started, 1)})
    for size in args.arrays:
        r, c = (int(x) for x in size.split("x"))
        for lanes in args.lanes:
            for m in args.array_m:
                started = time.perf_counter()
                counts = synthesize(array_verilog(r, c, m, lanes), "sparse_array")
                pes = r * c
                rows.append({"unit": "array", "array": size, "m": m, "lanes": lanes,
                             "pattern": "dense" if m == 1 else f"1:{m}", **counts,
                             "lut_per_pe": round(counts["lut"] / pes, 2), "ff_per_pe": round(counts["ff"] / pes, 2),
                             "dsp_per_pe": round(counts["dsp"] / pes, 3),
                             "seconds": round(time.perf_counter() - started, 1)})
    for row in rows:
        row["ff_vs_dense_pe"] = round(row["ff_per_pe"] / dense_pe["ff"], 2) if dense_pe else ""
        row["yosys"] = version.split(" (")[0]
    publish("synthesis", rows, yosys=version, script=SYNTH_SCRIPT.format(source="<generated>.v", top="<top>"),
            part="xc7 (7-series primitives; no place and route)")
    if args.calibrate:
        lines = ["# Written by benchmarks/synthesis.py --calibrate: resources of the generated RTL, synthesized with",
                 f"# {version}, script: {SYNTH_SCRIPT.format(source='<generated>.v', top='<top>')}",
                 "# pe.\"M<m> L<l>\": one PE (l pixels per cycle); array.\"RxC M<m> L<l>\": a whole array (synthesis",
                 "# prunes the last column's unused pass-through registers, so an array is a little under R x C PEs).",
                 'status = "synthesized"',
                 f'source = "{version}, synth_xilinx -family xc7 -flatten -noiopad, benchmarks/results/synthesis.csv"',
                 ""]
        for row in rows:
            unit = f"M{row['m']} L{row['lanes']}"
            key = f'pe."{unit}"' if row["unit"] == "PE" else f'array."{row["array"]} {unit}"'
            lines += [f"[{key}]", f"dsp = {row['dsp']}", f"lut = {row['lut']}", f"ff = {row['ff']}",
                      f"carry4 = {row['carry4']}", f"muxf = {row['muxf']}", ""]
        atomic_write_bytes(RESOURCES, "\n".join(lines).encode())
        print(f"calibrated {RESOURCES}")


if __name__ == "__main__":
    main()
