"""What an array built for M = 32 costs per PE against M = 16: the select, the registers and the wires.

Issue 13's allocation lets a layer go below 1/16 (1:32) only on an array whose PEs select from 32 activations
(a 32:1 select, a 5-bit index, a 32 x 8-bit activation row passed from PE to PE). The PE is synthesized with
Debian's yosys (`synth_xilinx -family xc7 -flatten -noiopad`) for M = 16 and 32, at one and two pixels per cycle;
wires per PE are the activation bits that enter it (M x 8 per pixel lane) plus the 8-bit weight and the index.
The accuracy that M = 32 buys is in ``accuracy_recipes.json``.

    python benchmarks/array_m_cost.py
"""

from __future__ import annotations

import argparse
import math

from _common import publish

from edgesparse.rtl.synth import synthesize, yosys_version
from edgesparse.rtl.verilog import pe_verilog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--lanes", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = []
    for lanes in args.lanes:
        for m in args.m:
            counts = synthesize(pe_verilog(m, lanes), "sparse_pe")
            rows.append({"m": m, "lanes": lanes, "select": f"{m}:1", "index_bits": int(math.log2(m)),
                         "lut": counts["lut"], "ff": counts["ff"], "dsp": counts["dsp"], "muxf": counts["muxf"],
                         "wires_in": m * 8 * lanes + 8 + int(math.log2(m))})
    publish("array_m_cost", rows, yosys=yosys_version())


if __name__ == "__main__":
    main()
