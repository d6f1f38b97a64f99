"""Shared helpers of the benchmark scripts: machine description and atomic result files."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from edgesparse.checkpoint import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__}


def command() -> str:
    """The command line that produced the results."""
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])


def source_revision(*paths: str) -> str:
    """The last commit that changed ``paths`` (short hash), "+changes" when the working tree differs there: which
    source a measured row ran on, for tables whose rows are measured at different times."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args, "--", *paths], capture_output=True, text=True, check=True,
                              cwd=RESULTS.parent.parent).stdout.strip()
    return git("log", "-1", "--format=%h") + ("+changes" if git("status", "--porcelain") else "")


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: row[c] for c in columns} for row in rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def print_table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


def publish(stem: str, rows: list[dict[str, Any]], **extra: Any) -> None:
    """Print ``rows`` as a table and write ``results/<stem>.csv`` and ``.json`` (with command and machine)."""
    columns = list(rows[0])
    print_table(columns, rows)
    write_csv(RESULTS / f"{stem}.csv", columns, rows)
    write_json(RESULTS / f"{stem}.json", {"command": command(), "machine": machine(), "rows": rows, **extra})
