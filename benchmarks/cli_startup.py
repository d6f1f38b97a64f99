"""How long ``edgesparse --help`` takes: before issue 15 (the package's ``__init__`` files imported torch eagerly)
and now, beside a bare ``python -c pass``, alternated in one run so that machine noise hits all alike.

The "before" tree is ``--before`` (default: the last commit before issue 15) unpacked with ``git archive`` into a
temporary folder; each command runs ``--repeats`` times in fresh interpreters, and the table gives min and median.

    python benchmarks/cli_startup.py --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from _common import publish

ROOT = Path(__file__).resolve().parents[1]
HELP = "import sys; from edgesparse.cli import main; sys.exit(main(['--help']))"


def unpack_source(revision: str, into: Path) -> Path:
    """``src/`` of ``revision``, unpacked under ``into``."""
    archive = subprocess.run(["git", "archive", revision, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def seconds(code: str, source: Path | None) -> float:
    """Wall time of one fresh interpreter running ``code`` with ``source`` first on the path."""
    env = {"PYTHONPATH": str(source)} if source else {}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "PASSIVE"}, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--before", default="828b17b", help="the revision before issue 15 [828b17b]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {"python -c pass": ("pass", None),
                 f"edgesparse --help at {args.before} (before)": (HELP, unpack_source(args.before, Path(tmp))),
                 "edgesparse --help now": (HELP, ROOT / "src")}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, (code, source) in cases.items():
                times[name].append(seconds(code, source))
    rows = [{"command": name, "runs": len(t), "min_s": round(min(t), 3), "median_s": round(statistics.median(t), 3)}
            for name, t in times.items()]
    publish("cli_startup", rows, python=sys.executable)


if __name__ == "__main__":
    main()
