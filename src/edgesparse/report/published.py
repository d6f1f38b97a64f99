"""Published accelerators for the comparison table, kept with their quoted/derived marks.

``data/published_accelerators.csv`` is a copy of ``shared/reference/published_accelerators.csv`` (its README beside
it). Figures stay the strings the file gives ("1.22 (derived)", ">=0.42 (derived; 2520 device DSPs)", "2.17x best
prior (relative)"); :func:`leading_number` reads the number of an absolute figure for plots, never of a relative one.
"""

from __future__ import annotations

import csv
import io
import re
from importlib import resources
from typing import Any

from edgesparse.accel.metrics import HardwareFigures

COLUMNS = ("design", "model", "platform", "clock_mhz", "dsps", "fps", "gops", "gops_kind", "power_w", "gops_per_w",
           "gops_per_dsp", "status", "source")
_NUMBER = re.compile(r"^\s*(?:>=|<=|~)?\s*([0-9]+(?:\.[0-9]+)?)")


def load_published() -> list[dict[str, str]]:
    """Rows of the packaged reference file, as strings."""
    text = resources.files("edgesparse.report").joinpath("data", "published_accelerators.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def leading_number(text: str) -> float | None:
    """The absolute number a figure states (``">=0.42 (derived...)"`` -> 0.42); None for relative or blank ones."""
    if not text or "best prior" in text or "relative" in text:
        return None
    match = _NUMBER.match(text)
    return float(match.group(1)) if match else None


def ours_row(figures: HardwareFigures, note: str) -> dict[str, Any]:
    """This work's figures in the reference file's columns; its power is modelled, not measured on a board, so
    the power columns (which hold board measurements of the published designs) say so instead of a number."""
    design = (f"this work: {figures.array} {figures.pattern} sparse array" if figures.pattern != "dense" else
              f"this work's baseline: the same {figures.array} dense array")
    return {"design": design, "model": figures.model,
            "platform": f"simulated, {figures.dsps} DSPs", "clock_mhz": f"{figures.clock_mhz:g}",
            "dsps": str(figures.dsps), "fps": f"{figures.fps:.2f}", "gops": f"{figures.effective_gops:.1f}",
            "gops_kind": "effective (2 x dense MACs x FPS)", "power_w": "not measured",
            "gops_per_w": "not measured (45 nm ASIC model only: see Energy)",
            "gops_per_dsp": f"{figures.gops_per_dsp:.2f}",
            "status": note, "source": "edgesparse report"}


def comparison_rows(ours: list[HardwareFigures], note: str) -> list[dict[str, Any]]:
    """This work's rows first, then every published row; ``gops_per_dsp_value`` and ``ours`` added for plots."""
    rows = [{**ours_row(f, note), "ours": True} for f in ours]
    rows += [{**{c: row.get(c, "") for c in COLUMNS}, "ours": False} for row in load_published()]
    for row in rows:
        row["gops_per_dsp_value"] = leading_number(row["gops_per_dsp"])
    return rows
