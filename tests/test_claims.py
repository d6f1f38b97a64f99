"""The README's figures say what they are: each checked against the committed result file it quotes."""

import csv
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RESULTS = ROOT / "benchmarks" / "results"


def _rows(stem: str) -> list[dict]:
    return json.loads((RESULTS / f"{stem}.json").read_text())["rows"]


def _readme_row(label_start: str) -> tuple[str, str]:
    lines = [line for line in README.splitlines() if line.startswith(f"| {label_start}")]
    assert len(lines) == 1, f"expected one README row starting {label_start!r}"
    _, label, figure, _ = lines[0].split("|")
    return label.strip(), figure.strip()


def test_compression_is_said_in_weights_and_bytes_as_bytes():
    assert "16x smaller" not in README
    row = next(r for r in _rows("packed_sizes") if r["model"] == "vgg16-224" and r["layers"] == "all")
    _, figure = _readme_row("VGG16-224 packed file")
    assert f"{row['file_bytes']:,} bytes" in figure and f"{100 * float(row['total_vs_int8']):.2f}% of dense int8" \
        in figure and f"{1 / float(row['total_vs_int8']):.1f}x fewer bytes" in figure
    assert f"{row['file_bytes']:,} bytes" in README.split("##")[0]  # the introduction gives the bytes too


@pytest.mark.parametrize("importance", ["magnitude", "fisher"])
def test_each_accuracy_row_uses_one_importance_score(importance):
    rows = [r for r in _rows("accuracy_patterns") if r["seed"] == "0"]
    prefix = ("Fashion-MNIST, vgg16_small w1/4, 5 epochs, seed 0, magnitude" if importance == "magnitude"
              else "the same with fisher")
    label, figure = _readme_row(prefix)
    assert importance in label
    patterns = ["dense", "1:16", "unstructured", "channel"]
    figures = [float(v) for v in re.findall(r"[0-9]+\.[0-9]+", figure)]
    expected = [float(next(r["test_acc"] for r in rows if r["pattern"] == p and
                           (r["importance"] == importance or p == "dense"))) * 100 for p in patterns]
    assert figures == pytest.approx(expected, abs=0.005)


def test_missed_targets_are_reported_as_missed():
    payload = json.loads((RESULTS / "accel_networks.json").read_text())
    low = [r for r in payload["rows"] if float(r["conv_cin64_utilization"]) < 0.95]
    for row in payload["rows"]:
        missed = float(row["conv_cin64_utilization"]) < 0.95
        assert row["targets"].startswith("MISSED") == missed, row
    assert len(payload["missed"]) == len(low)
    _, figure = _readme_row("conv-layer PE utilization target")
    assert figure.startswith("missed") == bool(low), "the README's utilization row must say whether a row missed"
    for row in low:  # every miss is named in the README row
        assert f"{row['model'].split('-')[0].replace('vgg', 'VGG').replace('resnet', 'ResNet')}" in figure


def test_the_packed_multiply_claim_matches_the_simulator():
    stepped = (ROOT / "src" / "edgesparse" / "accel" / "array.py").read_text()
    models_packing = "pack_two" in stepped
    assert ("multiplies each lane separately" in README) != models_packing, \
        "the README's sentence on the stepped simulator and the packed multiply is out of date"


def test_every_energy_figure_in_the_readme_says_it_is_a_model():
    for line in README.splitlines():
        if "GOPS/W" in line and line.startswith("|"):
            assert "45 nm ASIC model" in line, line


def test_the_mutation_table_is_committed_and_every_mutation_caught():
    with open(RESULTS / "mutations.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 8 and {r["result"] for r in rows} == {"caught"}, [r for r in rows if r["result"] != "caught"]


def test_the_placed_engine_row_is_the_committed_fpga_table():
    """The README's first placed-engine row quotes fpga.csv's engine (measured, placed and routed): its Fmax, LUT4,
    FF and block RAMs; and the issue-12 summary quotes its VGG16 frame rate (modelled cycles x measured clock)."""
    engine = next(r for r in _rows("fpga") if r["design"].startswith("layer engine") and r["array"] == "4x4")
    lines = [line for line in README.splitlines() if line.startswith("| whole 4x4 1:16 layer engine")]
    assert len(lines) == 1
    cells = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    assert cells[3].startswith(f"{engine['fmax_min_mhz']:.1f} / {engine['fmax_median_mhz']:.1f} MHz"), cells[3]
    assert (cells[2], cells[4], cells[5], cells[7]) == (str(engine["seeds"]), f"{engine['lut4']:,}",
                                                       f"{engine['ff']:,}", str(engine["ebr"]))
    assert f"{engine['vgg16_fps']} FPS on the 4x4 engine at its minimum" in README.replace("\n", " ")
