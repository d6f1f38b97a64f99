"""Mutation check: small bugs planted in the hot code, each run against the tests that guard it.

Every mutation is (name, file, the exact original text, its replacement, the tests to run). For each, ``src/`` is
copied to a temporary folder, the one snippet is replaced there (the worktree is never touched), and pytest runs the
listed tests with that copy first on ``PYTHONPATH``. A mutation is ``caught`` when a test fails, ``survived`` when all
pass, ``timeout`` when the tests hang; a snippet that is not found exactly once is an ``error`` row. Before any
mutation, the same tests run on the unmutated copy: a failure there is reported, since it would make every
mutation look caught.

    python benchmarks/mutations.py [--only NAME ...] [--timeout 600]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import publish  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    """One planted bug: ``original`` (exact text, found once) in ``file`` becomes ``replacement``."""

    name: str
    file: str  # relative to the repository root
    original: str
    replacement: str
    tests: tuple[str, ...]  # pytest node ids or files


ACCEL_TESTS = ("tests/test_accel.py", "tests/test_edge_values.py", "tests/test_scalesim_reference.py")
MUTATIONS = (
    Mutation("fold length off by one", "src/edgesparse/accel/schedule.py",
             "return 2 * config.rows + config.cols + groups - 2",
             "return 2 * config.rows + config.cols + groups - 1", ACCEL_TESTS),
    Mutation("stall one cycle longer", "src/edgesparse/accel/schedule.py",
             "steps = np.maximum(lengths[tile, :-1], loads)",
             "steps = np.maximum(lengths[tile, :-1], loads + 1)", ACCEL_TESTS),
    Mutation("tile sizing uses the whole input buffer", "src/edgesparse/accel/geometry.py",
             "half = config.input_buffer_kib * 1024 / 2 if",
             "half = config.input_buffer_kib * 1024 if", ACCEL_TESTS),
    Mutation("pipelined: a stream starts one cycle before its shadows are loaded", "src/edgesparse/accel/schedule.py",
             "stream[f] = max(load[f] + R,", "stream[f] = max(load[f] + R - 1,", ACCEL_TESTS),
    Mutation("pipelined: a weight slot is freed one cycle early", "src/edgesparse/accel/schedule.py",
             "return load[index - slots] + R if", "return load[index - slots] + R - 1 if", ACCEL_TESTS),
    Mutation("pipelined: an input half is freed one cycle early", "src/edgesparse/accel/schedule.py",
             "return stream[last] + lengths[last] + R - 1", "return stream[last] + lengths[last] + R - 2",
             ACCEL_TESTS),
    Mutation("pipelined: an output moves before its unit has left the array", "src/edgesparse/accel/schedule.py",
             "return unit_last_output(index) + 1", "return unit_last_output(index)", ACCEL_TESTS),
    Mutation("pipelined: the partial-sum chain is not cut at a segment's top", "src/edgesparse/accel/array.py",
             "above[(rows.reshape(-1, 1) % pe_seg) == 0] = 0", "pass", ACCEL_TESTS),
    Mutation("requantization rounds halves down", "src/edgesparse/quant/fixedpoint.py",
             "return (value + (np.int64(1) << (shift - 1))) >> shift",
             "return (value + (np.int64(1) << (shift - 1)) - 1) >> shift", ("tests/test_fixedpoint.py",)),
    Mutation("index nibbles swapped in a byte", "src/edgesparse/pack/blocks.py",
             'return np.packbits(bits.astype(np.uint8).ravel(), bitorder="little")',
             'packed = np.packbits(bits.astype(np.uint8).ravel(), bitorder="little")\n'
             '    return ((packed << 4) | (packed >> 4)).astype(np.uint8) if width == 4 else packed',
             ("tests/test_packed.py",)),
    Mutation("mask keeps N + 1 in one block", "src/edgesparse/pattern.py",
             "group_mask &= group_score.isfinite()  # a padded channel is never kept",
             "group_mask &= group_score.isfinite()  # a padded channel is never kept\n"
             "        group_mask[0, 0, 0, (~group_mask[0, 0, 0] & group_score[0, 0, 0].isfinite())"
             ".nonzero()[:1, 0]] = True",
             ("tests/test_pattern.py", "tests/test_pruner.py")),
    Mutation("packed multiply without its sign fix (model)", "src/edgesparse/accel/packing.py",
             "high = (product >> LANE_SHIFT) + ((product >> (LANE_SHIFT - 1)) & 1)",
             "high = product >> LANE_SHIFT", ("tests/test_edge_values.py",)),
    Mutation("packed multiply without its sign fix (RTL PE)", "src/edgesparse/rtl/pe.py",
             "product[16:].as_signed() + product[15]]",
             "product[16:].as_signed()]", ("tests/test_edge_values.py",)),
    Mutation("post-processing applies ReLU before the bias", "src/edgesparse/accel/simulate.py",
             'acc = acc + op.arrays["bias"].astype(np.int64).reshape(1, -1)',
             'acc = (np.maximum(acc, 0) if op.attrs.get("relu") else acc) '
             '+ op.arrays["bias"].astype(np.int64).reshape(1, -1)', ACCEL_TESTS),
)


def _copy_source(into: Path) -> Path:
    src = into / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return src


def _pytest(src: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, list[str], float]:
    """Run ``tests`` against the source copy ``src``: (outcome, failing node ids, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_WAIT_POLICY="PASSIVE")
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", [], time.perf_counter() - started
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.M)
    outcome = "passed" if done.returncode == 0 else "failed" if failed or done.returncode == 1 else "error"
    return outcome, failed, time.perf_counter() - started


def _check_copy_is_imported(src: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(src))
    where = subprocess.run([sys.executable, "-c", "import edgesparse; print(edgesparse.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).is_relative_to(src):
        raise SystemExit(f"the tests would import {where}, not the mutated copy under {src}")


def run_mutation(mutation: Mutation, timeout: float) -> dict[str, object]:
    """Apply ``mutation`` in a fresh copy of ``src/`` and run its tests."""
    row: dict[str, object] = {"mutation": mutation.name, "file": mutation.file, "tests": " ".join(mutation.tests)}
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        src = _copy_source(Path(tmp))
        target = Path(tmp) / mutation.file
        text = target.read_text()
        found = text.count(mutation.original)
        if found != 1:
            return {**row, "result": "error", "caught_by": f"snippet found {found} times", "seconds": 0.0}
        target.write_text(text.replace(mutation.original, mutation.replacement))
        outcome, failed, seconds = _pytest(src, mutation.tests, timeout)
    result = {"passed": "survived", "failed": "caught", "timeout": "timeout", "error": "caught"}[outcome]
    return {**row, "result": result, "caught_by": " ".join(failed) or ("(collection or import error)"
                                                                      if outcome == "error" else ""),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="run only the mutations with these names")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation's test run")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    with tempfile.TemporaryDirectory(prefix="mutation-baseline-") as tmp:
        src = _copy_source(Path(tmp))
        _check_copy_is_imported(src)
        baseline, failed, _ = _pytest(src, tests, args.timeout)
    if baseline != "passed":
        raise SystemExit(f"the unmutated tests do not pass ({baseline}: {' '.join(failed)}): fix them first")
    rows = [run_mutation(m, args.timeout) for m in chosen]
    survivors = [r["mutation"] for r in rows if r["result"] != "caught"]
    publish("mutations", rows, baseline="passed", tests=list(tests), survivors=survivors)
    if survivors:
        print(f"NOT CAUGHT: {', '.join(map(str, survivors))}")


if __name__ == "__main__":
    main()
