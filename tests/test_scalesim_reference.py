"""Dense mode against SCALE-Sim v3's own output, committed under benchmarks/scalesim/ with its provenance
(written by benchmarks/scalesim_compare.py): the schedule's fold count is SCALE-Sim's, layer by layer."""

import configparser
import csv
import json
from pathlib import Path

import pytest

from edgesparse.accel import AcceleratorConfig
from edgesparse.accel.schedule import LayerShape, schedule_layer

KEPT = Path(__file__).resolve().parent.parent / "benchmarks" / "scalesim"
RUNS = sorted(path.parent for path in KEPT.glob("*/*/COMPUTE_REPORT.csv"))


def _row(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        return {k.strip(): v.strip() for k, v in next(csv.DictReader(handle)).items() if k and k.strip()}


def test_scalesim_output_is_committed_with_its_provenance():
    assert {run.name for run in RUNS} >= {"conv1_2@32", "conv2_2@16", "conv3_2@8", "conv5_1@14", "conv1_2@224"}
    report = KEPT / "32x32" / "conv1_2@224" / "COMPUTE_REPORT.csv"
    assert int(float(_row(report)["Total Cycles"])) == 1_809_719  # the figure tests/test_accel.py quotes
    for run in RUNS:
        provenance = json.loads((run / "provenance.json").read_text())
        assert provenance["scalesim"] == "3.0.0" and provenance["date"] and provenance["machine"], run
        assert {"scale.cfg", "topology.csv", "COMPUTE_REPORT.csv"} <= {p.name for p in run.iterdir()}


@pytest.mark.parametrize("run", RUNS, ids=[f"{r.parent.name}/{r.name}" for r in RUNS])
def test_dense_mode_cycles_equal_scalesim_s_own_report(run):
    config_file = configparser.ConfigParser()
    config_file.read(run / "scale.cfg")
    arch = config_file["architecture_presets"]
    assert arch["Dataflow"].strip() == "ws"
    layer = _row(run / "topology.csv")
    height, width = int(layer["IFMAP Height"]), int(layer["IFMAP Width"])  # padded: SCALE-Sim does not pad
    kh, kw, cin, cout = (int(layer[k]) for k in ("Filter Height", "Filter Width", "Channels", "Num Filter"))
    stride = int(layer["Strides"])
    out_hw = ((height - kh) // stride + 1, (width - kw) // stride + 1)
    config = AcceleratorConfig(int(arch["ArrayHeight"]), int(arch["ArrayWidth"]), m=1, n=1, classic=True, input_buffer_kib=1e9,
                               output_buffer_kib=1e9, weight_buffer_kib=1e9, dram_bytes_per_cycle=1e12)
    shape = LayerShape(layer["Layer name"], kh * kw * cin, cout, out_hw, (cin, height, width), (kh, kw),
                       (stride, stride), 0)
    plan = schedule_layer(shape, config)
    assert plan.tiles == 1  # one tile: compute cycles are the folds alone (SCALE-Sim models no DRAM here)
    # SCALE-Sim reports the index of the last compute cycle: our count minus one.
    assert plan.compute_cycles - 1 == int(float(_row(run / "COMPUTE_REPORT.csv")["Total Cycles"]))
