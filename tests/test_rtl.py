"""The generated RTL against the cycle-accurate simulator: value for value, cycle for cycle, in Amaranth's simulator
and in Icarus Verilog (cocotb 2); the standalone testbench; synthesis counts."""

import shutil
import subprocess

import numpy as np
import pytest

from edgesparse.accel import AcceleratorConfig, lower, simulate
from edgesparse.accel.array import accumulate_folds, run_stepped
from edgesparse.accel.memory_image import build_memory_image
from edgesparse.cli import main
from edgesparse.quant import quantize_input, run_graph
from edgesparse.rtl.cosim import compare, layer_jobs, random_layer, run_amaranth, run_icarus


def _layer_from_results(jobs, results, plan):
    """Accumulate the RTL's fold outputs into the layer's sums and the absolute cycle of each final sum."""
    return accumulate_folds(((job.inputs, out, when) for job, (out, when) in zip(jobs, results, strict=True)), plan)


@pytest.mark.parametrize("n, m, lanes", [(1, 4, 1), (1, 16, 1), (1, 4, 2), (2, 16, 2)])
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


def test_the_generated_testbench_passes_in_icarus_alone(tmp_path, capsys):
    assert main(["rtl", "--array", "4x4", "--pattern", "1:4", "--max-pixels", "15", "-o", str(tmp_path)]) == 0
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
    from edgesparse.accel.resources import estimate_resources, load_calibration
    from edgesparse.rtl.synth import synthesize
    from edgesparse.rtl.verilog import pe_verilog

    calibration = load_calibration()
    assert calibration["status"] == "synthesized"
    for m, lanes in ((4, 1), (16, 2)):
        measured = synthesize(pe_verilog(m, lanes=lanes), "sparse_pe")
        quoted = calibration["pe"][f"M{m} L{lanes}"]
        keys = ("dsp", "lut", "ff")
        assert {k: measured[k] for k in keys} == {k: quoted[k] for k in keys}, (m, lanes)
    scaled = estimate_resources(AcceleratorConfig(4, 4, 16, 1, pixels_per_cycle=2))
    assert (scaled.dsps, scaled.luts, scaled.ffs) == (16, 16 * quoted["lut"], 16 * quoted["ff"])
    assert "synthesized M16 L2 PE" in scaled.source
    array = estimate_resources(AcceleratorConfig(16, 16, pixels_per_cycle=2))
    assert array.synthesized and "synthesized 16x16 array" in array.source
    assert array.dsps == 256 and array.luts <= 256 * quoted["lut"] and array.ffs <= 256 * quoted["ff"]
