"""The generated RTL against the cycle-accurate simulator: value for value, cycle for cycle, in Amaranth's simulator
and in Icarus Verilog (cocotb 2): the classic fold unit against clock_fold, the pipelined layer unit against
clock_layer; the standalone testbench; synthesis counts."""

import dataclasses

import shutil
import subprocess

import numpy as np
import pytest

from edgesparse.accel import AcceleratorConfig, lower
from edgesparse.accel.simulate import simulate
from edgesparse.accel.array import accumulate_folds, clock_layer, run_stepped
from edgesparse.accel.memory_image import build_memory_image
from edgesparse.cli import main
from edgesparse.quant import quantize_input, run_graph
from edgesparse.rtl.cosim import (compare, compare_layer, layer_jobs, layer_outputs, layer_program, random_layer,
                                  run_amaranth, run_icarus, run_layer_amaranth, run_layer_icarus)

FAST_DRAM = 1e9  # bytes per cycle: the DMA never holds the pipelined array up, as in the layer unit


def _pipelined_cosim(tmp_path, layer, x, shape, config, folds=None, image=None, layout=None) -> int:
    """Run the first ``folds`` folds on the layer unit in both simulators; every final sum and its cycle must equal
    clock_layer's (aligned on the first weight load). Returns the sums compared."""
    acc, cycles, clock = clock_layer(layer, x, shape, config)
    program = layer_program(layer, x, shape, config, folds, image, layout)
    offset = int(clock.load_starts[0])
    checked = [compare_layer(program, layer_outputs(record, program, config, offset), (acc, cycles))
               for record in (run_layer_amaranth(program, config),
                              run_layer_icarus(program, config, tmp_path / "icarus"))]
    assert checked[0] == checked[1] > 0
    return checked[0]


def _layer_from_results(jobs, results, plan):
    """Accumulate the RTL's fold outputs into the layer's sums and the absolute cycle of each final sum."""
    return accumulate_folds(((job.inputs, out, when) for job, (out, when) in zip(jobs, results, strict=True)), plan)


@pytest.mark.parametrize("n, m, lanes", [(1, 16, 1), (1, 4, 2)])  # (2:16 at 2 lanes: the folds test below)
def test_a_padded_strided_random_layer_matches_in_amaranth_and_icarus(tmp_path, n, m, lanes):
    config = AcceleratorConfig(4, 4, m, n, pixels_per_cycle=lanes, classic=True)  # the RTL runs the classic fold
    layer, x, plan = random_layer(config, n, m, cin=2 * m + 3, cout=6, size=7, stride=2, padding=1, seed=m)
    jobs = layer_jobs(layer, x, plan, config)
    assert len(jobs) == plan.folds and any(np.any(job.expected_out) for job in jobs)
    for results in (run_amaranth(jobs, config), run_icarus(jobs, config, tmp_path / "icarus")):
        compare(jobs, results)  # every sum and the cycle it leaves the array, fold by fold
        acc, cycles = _layer_from_results(jobs, results, plan)
        stepped_acc, stepped_cycles = run_stepped(layer, x, plan, config)
        assert np.array_equal(acc, stepped_acc) and np.array_equal(cycles, stepped_cycles)


@pytest.mark.parametrize("n, m, lanes", [(2, 16, 2)])  # (one lane: the ECP5 multiplier test)
def test_consecutive_pipelined_folds_match_clock_layer(tmp_path, n, m, lanes):
    """Row folds, column folds and two tiles back to back: every switch-over between folds, both bounds of the
    recurrence (a stream longer than R, and one shorter: the next fold waits for its shadows)."""
    config = AcceleratorConfig(4, 4, m, n, pixels_per_cycle=lanes, dram_bytes_per_cycle=FAST_DRAM,
                               output_buffer_kib=4 * 4 * 10 / 1024)  # tiles of 10 pixels
    layer, x, plan = random_layer(config, n, m, cin=m + 3, cout=7, size=4, seed=m + lanes)
    geometry = plan.geometry
    assert geometry.tiles == 2 and geometry.row_folds >= 3 and geometry.col_folds == 2
    lengths = {geometry.stream_length(t, 0) for t in range(geometry.tiles)}
    assert min(lengths) < config.rows < max(lengths) or lanes == 1
    assert _pipelined_cosim(tmp_path, layer, x, plan.shape, config) == 16 * 7


@pytest.mark.parametrize("rows, n, cin, lanes, expected", [(4, 1, 8, 2, 4)])  # 4 segments (2 of 4: the model only)
def test_a_segmented_short_layer_matches_clock_layer(tmp_path, rows, n, cin, lanes, expected):
    """A 1x1 conv whose rows fit R/4 (4 segments side by side) or R/2 (2 of the 4 possible segments), with ragged
    last segments: the partial-sum cut, every output port, their valid bits."""
    config = AcceleratorConfig(rows, 4, 8, n, pixels_per_cycle=lanes, segments=4, dram_bytes_per_cycle=FAST_DRAM)
    layer, x, plan = random_layer(config, n, 8, cin=cin, cout=6, size=5, kernel=1, padding=0, seed=rows)
    assert plan.geometry.segments.tolist() == [expected]
    assert _pipelined_cosim(tmp_path, layer, x, plan.shape, config) == 25 * 6


def test_a_pipelined_mismatch_names_the_pixel_and_channel():
    config = AcceleratorConfig(4, 4, 4, 1, dram_bytes_per_cycle=FAST_DRAM)
    layer, x, plan = random_layer(config, 1, 4, cin=8, cout=4, size=3, seed=3)
    acc, cycles, clock = clock_layer(layer, x, plan.shape, config)
    program = layer_program(layer, x, plan.shape, config)
    record = run_layer_amaranth(program, config)
    assert compare_layer(program, layer_outputs(record, program, config, int(clock.load_starts[0])),
                         (acc, cycles)) == 9 * 4
    late = layer_outputs(record, program, config, int(clock.load_starts[0]) + 1)  # everything one cycle late
    with pytest.raises(AssertionError, match=r"unit 0: cycle of pixel 0, channel 0"):
        compare_layer(program, late, (acc, cycles))
    wrong = dataclasses.replace(record, sums=[(c, p, j, l, v + 1) for c, p, j, l, v in record.sums])
    with pytest.raises(AssertionError, match=r"unit 0: value of pixel 0, channel 0"):
        compare_layer(program, layer_outputs(wrong, program, config, int(clock.load_starts[0])), (acc, cycles))


def test_the_rtl_and_the_model_agree_on_the_product_stages():
    """The model's product stages are the PE's: a unit built one stage short puts every sum out a cycle early."""
    from edgesparse.rtl.layer_unit import LayerUnit
    from edgesparse.rtl.cosim import _run_amaranth, drive_layer

    config = AcceleratorConfig(4, 4, 4, 1, dram_bytes_per_cycle=FAST_DRAM)
    assert config.product_stages == 2 and dataclasses.replace(config, classic=True).product_stages == 0
    layer, x, plan = random_layer(config, 1, 4, cin=8, cout=4, size=3, seed=3)
    acc, cycles, clock = clock_layer(layer, x, plan.shape, config)
    program = layer_program(layer, x, plan.shape, config)
    short = LayerUnit(4, 4, 4, max_folds=program.folds, max_words=len(program.stream_words),
                      stages=config.product_stages - 1)
    record = _run_amaranth(short, lambda bus: drive_layer(bus, program, config))
    with pytest.raises(AssertionError, match=r"entered row 0|unit 0: (value|cycle)"):
        compare_layer(program, layer_outputs(record, program, config, int(clock.load_starts[0])), (acc, cycles))


def test_the_ecp5_multiplier_instance_runs_a_layer_like_the_model(tmp_path):
    """The layer unit placed on ECP5 (each PE's product stages inside a MULT18X18D instance), simulated in Icarus
    with a behavioural model of the primitive (tests/data), equals clock_layer value for value, cycle for cycle."""
    from pathlib import Path

    from amaranth.back import verilog

    from edgesparse.rtl.cosim import _run_icarus
    from edgesparse.rtl.layer_unit import LayerUnit

    config = AcceleratorConfig(4, 4, 16, 1, dram_bytes_per_cycle=FAST_DRAM)
    layer, x, plan = random_layer(config, 1, 16, cin=19, cout=7, size=4, seed=5)
    acc, cycles, clock = clock_layer(layer, x, plan.shape, config)
    program = layer_program(layer, x, plan.shape, config)
    unit = LayerUnit(4, 4, 16, max_folds=program.folds, max_words=len(program.stream_words), multiplier="ecp5")
    model = (Path(__file__).parent / "data" / "mult18x18d_model.v").read_text()
    record = _run_icarus(verilog.convert(unit, name="layer_unit") + model, "layer_unit", ("layer", program, config),
                         tmp_path)
    assert compare_layer(program, layer_outputs(record, program, config, int(clock.load_starts[0])),
                         (acc, cycles)) == 16 * 7


def test_a_mismatch_names_the_fold_pixel_and_column():
    config = AcceleratorConfig(4, 4, 4, 1, classic=True)
    layer, x, plan = random_layer(config, 1, 4, cin=8, cout=4, size=4, seed=3)
    jobs = layer_jobs(layer, x, plan, config)[:2]
    results = run_amaranth(jobs, config)
    out, when = results[1]
    broken = [results[0], (out, when + (np.arange(when.size).reshape(when.shape) == 5))]
    with pytest.raises(AssertionError, match=r"fold 1: cycle of pixel 1, column 1"):
        compare(jobs, broken)


@pytest.fixture(scope="module")
def trained_graph(tmp_path_factory):
    from edgesparse.config import load_config
    from edgesparse.export_flow import export_run
    from edgesparse.train import train

    run = tmp_path_factory.mktemp("rtl") / "run"
    train(load_config(epochs=1, train_limit=1024, test_limit=200, channels_last=False), run, progress=False)
    return export_run(run, calibration_batches=2)


def test_a_trained_fashion_mnist_layer_matches_from_the_memory_image(tmp_path, trained_graph):
    from edgesparse.data import iterate_batches, load_dataset

    graph = trained_graph
    config = AcceleratorConfig(4, 4, 16, 1, pixels_per_cycle=2, classic=True)
    images, _ = next(iterate_batches(load_dataset("fashion_mnist", "test"), 1, shuffle=False))
    image = quantize_input(graph, images)[0]
    tensors = run_graph(graph, image[None], keep=True)
    result = simulate(graph, config, "analytic")
    name = "features.34"  # 128 -> 128 channels, 3x3 padded, 2x2 pixels: 576 folds of 1:16
    op = graph.op(name)
    plan = next(layer.schedule for layer in result.layers if layer.name == name)
    layer = lower(op, graph.patterns[name], config)
    x = tensors[op.inputs[0]][0]
    memory, layout = build_memory_image(graph, config)
    jobs = layer_jobs(layer, x, plan, config, memory, layout)  # weights read back from the memory image
    assert graph.patterns[name] == "1:16" and any(np.any(job.expected_out) for job in jobs)
    for results in (run_amaranth(jobs, config), run_icarus(jobs, config, tmp_path / "icarus")):
        compare(jobs, results)
        acc, cycles = _layer_from_results(jobs, results, plan)
        stepped_acc, stepped_cycles = run_stepped(layer, x, plan, config)
        assert np.array_equal(acc, stepped_acc) and np.array_equal(cycles, stepped_cycles)


@pytest.mark.parametrize("lanes", [2])  # (one lane: test_the_ecp5_multiplier_instance_runs_a_layer_like_the_model)
def test_a_trained_fashion_mnist_layer_runs_on_the_pipelined_unit(tmp_path, trained_graph, lanes):
    """features.34 of the trained model (1:16, 18 row folds of 4 rows, streams of 4 or 2 groups: the next fold
    waits for its shadows) with one weight set to -128, its first four units (72 folds) back to back, weights
    checked against the memory image."""
    from edgesparse.data import iterate_batches, load_dataset

    graph = trained_graph
    config = AcceleratorConfig(4, 4, 16, 1, pixels_per_cycle=lanes, dram_bytes_per_cycle=FAST_DRAM)
    images, _ = next(iterate_batches(load_dataset("fashion_mnist", "test"), 1, shuffle=False))
    tensors = run_graph(graph, quantize_input(graph, images)[0][None], keep=True)
    name = "features.34"
    op = graph.op(name)
    plan = next(layer.schedule for layer in simulate(graph, config, "analytic").layers if layer.name == name)
    layer = lower(op, graph.patterns[name], config)
    values = layer.values.copy()
    values[np.argwhere(values != 0)[5][0], 1] = -128  # the edge weight, in the first column fold
    layer = dataclasses.replace(layer, values=values)
    memory, layout = build_memory_image(graph, config)
    with pytest.raises(AssertionError, match="memory image fold"):  # the image holds the trained weight there
        layer_program(layer, tensors[op.inputs[0]][0], plan.shape, config, 72, memory, layout)
    original = lower(op, graph.patterns[name], config)
    layer_program(original, tensors[op.inputs[0]][0], plan.shape, config, 72, memory, layout)  # matches the image
    assert plan.geometry.row_folds == 18 and plan.geometry.col_folds == 32
    assert _pipelined_cosim(tmp_path, layer, tensors[op.inputs[0]][0], plan.shape, config, folds=72) == 4 * 16


def test_the_generated_pipelined_testbench_passes_in_icarus_alone(tmp_path, capsys):
    """The default: the layer unit runs a whole padded 3x3 conv (5 row folds, the last one in 2 segments of the 4
    possible, 2 column folds) back to back and checks every final sum and its cycle."""
    assert main(["rtl", "--array", "4x4", "--pattern", "1:4", "--max-pixels", "15", "-o", str(tmp_path)]) == 0
    assert "layer_unit.v" in capsys.readouterr().out and (tmp_path / "sparse_pe_top.v").exists()
    subprocess.run(["iverilog", "-g2012", "-o", "tb", "tb_layer_unit.v", "layer_unit.v"], cwd=tmp_path, check=True)
    output = subprocess.run(["vvp", "tb"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "PASS: 45 sums" in output, output  # 9 pixels x 5 channels
    lines = (tmp_path / "expect_cycle.hex").read_text().splitlines()  # the testbench can fail: one cycle late
    lines[7] = f"{int(lines[7], 16) + 1:08x}"
    (tmp_path / "expect_cycle.hex").write_text("\n".join(lines) + "\n")
    output = subprocess.run(["vvp", "tb"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "FAIL: 1 mismatches" in output and "MISMATCH pixel 1 channel 2" in output, output


def test_the_generated_testbench_passes_in_icarus_alone(tmp_path, capsys):
    assert main(["rtl", "--array", "4x4", "--pattern", "1:4", "--max-pixels", "15", "--classic",
                 "-o", str(tmp_path)]) == 0
    assert "fold_unit.v" in capsys.readouterr().out
    assert shutil.which("iverilog"), "iverilog is missing: `make test` installs the Debian package"
    subprocess.run(["iverilog", "-g2012", "-o", "tb", "tb_fold_unit.v", "fold_unit.v"], cwd=tmp_path, check=True)
    output = subprocess.run(["vvp", "tb"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "PASS: 36 sums" in output, output  # a padded 3x3 conv on 3x3: 9 pixels x 4
    # The testbench can fail: corrupt one expected sum.
    lines = (tmp_path / "expect_sum.hex").read_text().splitlines()
    lines[20] = f"{(int(lines[20], 16) + 1) & 0xFFFFFFFF:08x}"
    (tmp_path / "expect_sum.hex").write_text("\n".join(lines) + "\n")
    output = subprocess.run(["vvp", "tb"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "FAIL: 1 mismatches" in output and "MISMATCH pixel 5 column 0" in output, output


def test_rtl_rejects_an_impossible_pattern(tmp_path, capsys):
    assert main(["rtl", "--array", "4x4", "--pattern", "1:6", "-o", str(tmp_path)]) == 2
    assert "power of two" in capsys.readouterr().err


def test_synthesis_counts_one_dsp_and_the_select_luts_per_sparse_pe():
    from edgesparse.rtl.synth import synthesize
    from edgesparse.rtl.verilog import pe_verilog

    sparse, dense = synthesize(pe_verilog(4), "sparse_pe"), synthesize(pe_verilog(1), "sparse_pe")
    assert sparse["dsp"] == dense["dsp"] == 1
    assert sparse["lut"] > 0 == dense["lut"]  # the 4:1 select costs LUTs, the dense PE none
    assert sparse["ff"] >= 4 * 8 > dense["ff"]  # the 4-wide activation pass-through
    paired = synthesize(pe_verilog(4, lanes=2), "sparse_pe")
    assert paired["dsp"] == 1 and paired["ff"] >= 2 * 4 * 8  # two pixels' products packed into one DSP48E1


def test_the_resource_model_quotes_the_synthesized_counts():
    """The table's PE counts are what yosys gives for today's generated RTL (synthesized again here), and a
    configuration without its own array entry is R x C of them."""
    from edgesparse.accel.resources import engine_logic, estimate_resources, load_calibration
    from edgesparse.rtl.synth import synthesize
    from edgesparse.rtl.verilog import pe_verilog

    calibration = load_calibration()
    assert calibration["status"] == "synthesized"
    for m, lanes in ((4, 1), (16, 2)):
        measured = synthesize(pe_verilog(m, lanes=lanes), "sparse_pe")
        quoted = calibration["pe"][f"M{m} L{lanes}"]
        keys = ("dsp", "lut", "ff")
        assert {k: measured[k] for k in keys} == {k: quoted[k] for k in keys}, (m, lanes)
    scaled = estimate_resources(AcceleratorConfig(4, 4, 16, 1, pixels_per_cycle=2, classic=True))
    ppu = scaled.post_processing  # the post-processing unit's synthesized lanes come on top
    assert (scaled.dsps - ppu["dsp"], scaled.luts - ppu["lut"], scaled.ffs - ppu["ff"]) == (
        16, 16 * quoted["lut"], 16 * quoted["ff"])
    assert "synthesized M16 L2 PE" in scaled.source
    pipelined = calibration["pe_pipelined"]["M16 L2"], calibration["pe_pipelined"]["M16 L2 top"]
    segmented = estimate_resources(AcceleratorConfig(4, 4, 16, 1, pixels_per_cycle=2, segments=2))
    # 16 PEs: the 4 of row 2 carry the segment cut
    assert (segmented.luts - ppu["lut"], segmented.ffs - ppu["ff"]) == (
        12 * pipelined[0]["lut"] + 4 * pipelined[1]["lut"], 12 * pipelined[0]["ff"] + 4 * pipelined[1]["ff"])
    config = AcceleratorConfig(16, 16, pixels_per_cycle=2, classic=True)
    array = estimate_resources(config)
    assert array.synthesized and "synthesized 16x16 array" in array.source
    ppu = array.post_processing
    engine = engine_logic(config, calibration) or dict.fromkeys(("dsp", "lut", "ff"), 0)  # feeders, DMA, control
    assert array.dsps - ppu["dsp"] - engine["dsp"] == 256
    assert array.luts - ppu["lut"] - engine["lut"] <= 256 * quoted["lut"]
    assert array.ffs - ppu["ff"] - engine["ff"] <= 256 * quoted["ff"]


def test_synthesis_counts_the_shadow_registers_and_the_segment_cut():
    """The pipelined PE adds exactly its shadow and active weight and index, the first bit and the lanes' valid
    bits to the classic PE's flip-flops (the staging register is the classic weight register; its product stages
    are the DSP48E1's own A/B and M registers); the segment-top PE adds the partial-sum cut's LUTs and the top bit
    with its product stages' delay (the first delay is the travelling top bit), and still one DSP."""
    from edgesparse.accel.config import PRODUCT_STAGES
    from edgesparse.rtl.pe import index_bits
    from edgesparse.rtl.synth import synthesize
    from edgesparse.rtl.verilog import pe_verilog

    m, lanes = 16, 2
    classic = synthesize(pe_verilog(m, lanes), "sparse_pe")
    pipelined = synthesize(pe_verilog(m, lanes, pipelined=True), "sparse_pe")
    top = synthesize(pe_verilog(m, lanes, pipelined=True, segment_top=True), "sparse_pe")
    assert classic["dsp"] == pipelined["dsp"] == top["dsp"] == 1
    assert pipelined["ff"] - classic["ff"] == 2 * (8 + index_bits(m)) + 1 + lanes
    assert top["ff"] == pipelined["ff"] + PRODUCT_STAGES and top["lut"] > pipelined["lut"] >= classic["lut"]
