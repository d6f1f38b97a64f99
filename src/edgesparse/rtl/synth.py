"""Synthesis of generated Verilog with Debian's yosys (``synth_xilinx -family xc7``) into resource counts.

Amaranth's built-in Yosys only converts; this calls the system ``yosys`` (0.23 on Debian 12), which maps onto
7-series primitives: LUT1-6, MUXF7/8, CARRY4, flip-flops (FD*), DSP48E1, block and distributed RAM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgesparse.errors import EdgesparseError

SYNTH_SCRIPT = "read_verilog {source}; synth_xilinx -family xc7 -flatten -noiopad -top {top}; stat"
_CELL = re.compile(r"^\s+(\S+)\s+(\d+)\s*$")


def yosys_version() -> str:
    binary = shutil.which("yosys")
    if binary is None:
        raise EdgesparseError("yosys is not installed: `apt-get install yosys` (make test installs it)")
    return subprocess.run([binary, "-V"], capture_output=True, text=True, check=True).stdout.strip()


def cell_counts(log: str) -> dict[str, int]:
    """The cells of the last ``stat`` in a yosys log."""
    section = log[log.rindex("Number of cells:"):]
    counts = {}
    for line in section.splitlines()[1:]:
        match = _CELL.match(line)
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


def summarize(cells: dict[str, int]) -> dict[str, int]:
    """LUT, FF, DSP, CARRY4, MUXF and RAM totals from 7-series cell counts."""
    def total(prefixes: tuple[str, ...]) -> int:
        return sum(n for name, n in cells.items() if name.startswith(prefixes))

    return {"lut": total(("LUT",)), "ff": total(("FD",)), "dsp": total(("DSP48",)), "carry4": total(("CARRY",)),
            "muxf": total(("MUXF",)), "bram": total(("RAMB",)), "lutram": total(("RAM32", "RAM64", "RAM128", "RAM256"))}


def synthesize(verilog: str, top: str) -> dict[str, int]:
    """Synthesize ``verilog`` (module ``top``) and return :func:`summarize`'s counts."""
    yosys_version()
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / f"{top}.v"
        source.write_text(verilog)
        run = subprocess.run(["yosys", "-q", "-l", str(Path(folder) / "yosys.log"), "-p",
                              SYNTH_SCRIPT.format(source=source, top=top)], capture_output=True, text=True)
        log = (Path(folder) / "yosys.log").read_text() if (Path(folder) / "yosys.log").exists() else ""
    if run.returncode != 0:
        raise EdgesparseError(f"yosys failed on {top}: {(run.stderr or log)[-2000:]}")
    return summarize(cell_counts(log))
