"""Verilog export of the generated hardware (Amaranth's built-in Yosys), and the files `edgesparse rtl` writes."""

from __future__ import annotations

from pathlib import Path

from amaranth.back import verilog

from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.rtl.array import FoldUnit, SparseArray
from edgesparse.rtl.pe import SparsePE


def fold_unit_verilog(rows: int, cols: int, m: int, max_pixels: int, lanes: int = 1, name: str = "fold_unit") -> str:
    """The fold unit (array, memories and control) as one Verilog module tree."""
    return verilog.convert(FoldUnit(rows, cols, m, max_pixels, lanes), name=name)


def array_verilog(rows: int, cols: int, m: int, lanes: int = 1, name: str = "sparse_array") -> str:
    """The bare R x C array, the unit synthesis counts."""
    return verilog.convert(SparseArray(rows, cols, m, lanes), name=name)


def pe_verilog(m: int, lanes: int = 1, name: str = "sparse_pe") -> str:
    return verilog.convert(SparsePE(m, lanes), name=name)


def write_verilog(text: str, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, text.encode())
    return path
