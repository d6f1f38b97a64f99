"""Dense mode vs SCALE-Sim v3: weight-stationary compute cycles of VGG16 layers, side by side.

SCALE-Sim (PyPI ``scalesim==3.0.0``) runs in its own virtual environment (it needs ``numpy<2.4``), created on
first use in ``--venv``. It has no padding, so each layer is given its padded input. Our figure is the dense
array's (M = N = 1) schedule with buffers and bandwidth large enough for one tile and no stalls; SCALE-Sim
reports the index of the last cycle, i.e. our count minus one. SCALE-Sim simulates about 3,300 cycles per
second with full traces (less with ``-s N``, as here), so the default layers are VGG16's at a 32x32 input plus
the 224-input conv5_1 (14x14), and the 224x224 conv1_2 (about 10 minutes alone).

SCALE-Sim's own output is kept: ``benchmarks/scalesim/<array>/<layer>/`` holds the config and topology it was given,
the ``COMPUTE_REPORT.csv`` it wrote, and ``provenance.json`` (SCALE-Sim and numpy versions, command, date, machine).
``tests/test_scalesim_reference.py`` checks the schedule against those files.

    python benchmarks/scalesim_compare.py --array 32x32 [--layers NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import command, machine, publish

from edgesparse.accel import AcceleratorConfig, parse_array
from edgesparse.accel.schedule import LayerShape, schedule_layer

# name, output size, input channels, filters (3x3, stride 1, padding 1)
LAYERS = [("conv1_2@32", 32, 64, 64), ("conv2_2@16", 16, 128, 128), ("conv3_2@8", 8, 256, 256),
          ("conv5_1@14", 14, 512, 512), ("conv1_2@224", 224, 64, 64)]
KEPT = Path(__file__).resolve().parent / "scalesim"

CONFIG = """[general]
run_name = edgesparse_dense_ws

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 100000
FilterSramSzkB: 100000
OfmapSramSzkB: 100000
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth: 10
Dataflow: ws
MemoryBanks: 1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
FilterCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def ensure_venv(venv: Path) -> Path:
    python = venv.absolute() / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "scalesim==3.0.0", "numpy<2.4"], check=True)
    return python


def ours(rows: int, cols: int, size: int, cin: int, cout: int) -> int:
    config = AcceleratorConfig(rows, cols, m=1, n=1, input_buffer_kib=1e9, output_buffer_kib=1e9, classic=True,
                               dram_bytes_per_cycle=1e12, weight_buffer_kib=1e9)
    shape = LayerShape("layer", 9 * cin, cout, (size, size), (cin, size + 2, size + 2), (3, 3), (1, 1), 0)
    plan = schedule_layer(shape, config)
    assert plan.tiles == 1
    return plan.compute_cycles


def _versions(python: Path) -> dict[str, str]:
    code = "import importlib.metadata as m; print(m.version('scalesim'), m.version('numpy'))"
    scalesim_version, numpy_version = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                                                     check=True).stdout.split()
    return {"scalesim": scalesim_version, "numpy": numpy_version}


def scalesim(python: Path, rows: int, cols: int, name: str, size: int, cin: int, cout: int, keep: Path) -> int:
    """Run SCALE-Sim on one layer; keep its inputs, its COMPUTE_REPORT.csv and their provenance under ``keep``."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        (work / "scale.cfg").write_text(CONFIG.format(rows=rows, cols=cols))
        header = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
        row = f"{name.split('@')[0]}, {size + 2}, {size + 2}, 3, 3, {cin}, {cout}, 1,\n"
        for file in ("topology.csv", "layout.csv"):
            (work / file).write_text(header + row)
        run = subprocess.run([str(python), "-m", "scalesim.scale", "-c", str(work / "scale.cfg"), "-t",
                              str(work / "topology.csv"), "-l", str(work / "layout.csv"), "-p", str(work / "out"),
                              "-s", "N"], cwd=work, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"SCALE-Sim failed on {name}:\n{run.stderr[-2000:]}")
        report = next((work / "out").rglob("COMPUTE_REPORT.csv"))
        keep.mkdir(parents=True, exist_ok=True)
        for file in (work / "scale.cfg", work / "topology.csv", report):
            shutil.copyfile(file, keep / file.name)
        provenance = {"tool": "SCALE-Sim v3 (PyPI scalesim)", **_versions(python),
                      "invocation": "python -m scalesim.scale -c scale.cfg -t topology.csv -l layout.csv -p out -s N",
                      "files": {"scale.cfg": "the config given to SCALE-Sim", "topology.csv": "its topology (padded "
                                "input: SCALE-Sim has no padding)", "COMPUTE_REPORT.csv": "SCALE-Sim's own output, "
                                "copied unchanged"},
                      "command": command(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                      "machine": machine()}
        (keep / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        with open(report) as handle:
            record = next(csv.DictReader(handle, skipinitialspace=True))
        return int(float(record["Total Cycles"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--array", default="32x32")
    parser.add_argument("--venv", type=Path, default=Path(".venv-scalesim"))
    parser.add_argument("--layers", nargs="+", default=[name for name, *_ in LAYERS],
                        choices=[name for name, *_ in LAYERS])
    args = parser.parse_args()
    rows, cols = parse_array(args.array)
    python = ensure_venv(args.venv)
    table = []
    for name, size, cin, cout in (layer for layer in LAYERS if layer[0] in args.layers):
        started = time.perf_counter()
        theirs = scalesim(python, rows, cols, name, size, cin, cout, KEPT / args.array / name)
        mine = ours(rows, cols, size, cin, cout)
        table.append({"layer": name, "array": args.array, "scalesim_cycles": theirs, "edgesparse_cycles": mine,
                      "edgesparse_minus_1": mine - 1, "equal": theirs == mine - 1, "source": f"benchmarks/scalesim/{args.array}/{name}",
                      "scalesim_seconds": f"{time.perf_counter() - started:.0f}"})
        print(table[-1], flush=True)
    publish("scalesim_compare", table)


if __name__ == "__main__":
    main()
