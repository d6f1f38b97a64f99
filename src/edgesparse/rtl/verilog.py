"""Verilog export of the generated hardware (Amaranth's built-in Yosys), and the files `edgesparse rtl` writes."""

from __future__ import annotations

from pathlib import Path

from amaranth.back import verilog

from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.rtl.array import FoldUnit, PipelinedArray, SparseArray
from edgesparse.rtl.engine import EngineSize, LayerEngine
from edgesparse.rtl.layer_unit import LayerUnit
from edgesparse.rtl.pe import SparsePE


def fold_unit_verilog(rows: int, cols: int, m: int, max_pixels: int, lanes: int = 1, name: str = "fold_unit") -> str:
    """The classic fold unit (array, memories and control) as one Verilog module tree."""
    return verilog.convert(FoldUnit(rows, cols, m, max_pixels, lanes), name=name)


def layer_unit_verilog(rows: int, cols: int, m: int, lanes: int = 1, segments: int = 1, max_folds: int = 8,
                       max_words: int = 64, name: str = "layer_unit") -> str:
    """The pipelined layer unit (array, weight, length and stream memories, fold controller)."""
    return verilog.convert(LayerUnit(rows, cols, m, lanes, segments, max_folds, max_words), name=name)


def array_verilog(rows: int, cols: int, m: int, lanes: int = 1, name: str = "sparse_array",
                  pipelined: bool = False, segments: int = 1) -> str:
    """The bare R x C array, the unit synthesis counts (classic, or pipelined with ``segments``)."""
    array = PipelinedArray(rows, cols, m, lanes, segments) if pipelined else SparseArray(rows, cols, m, lanes)
    return verilog.convert(array, name=name)


def engine_verilog(size: EngineSize, name: str = "layer_engine") -> str:
    """The whole layer engine with its DRAM outside (the DMA's DRAM ports are the engine's)."""
    return verilog.convert(LayerEngine(size), name=name)


def pe_verilog(m: int, lanes: int = 1, name: str = "sparse_pe", pipelined: bool = False,
               segment_top: bool = False) -> str:
    return verilog.convert(SparsePE(m, lanes, pipelined, segment_top), name=name)


def write_verilog(text: str, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_bytes(path, text.encode())
    return path
