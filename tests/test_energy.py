"""The energy model, the resource model and the reported figures."""

import math

import numpy as np
import pytest
from dataclasses import replace

from edgesparse.accel import AcceleratorConfig
from edgesparse.accel.simulate import simulate
from edgesparse.accel.energy import ACTIONS, frame_energy, layer_actions, load_energy_table
from edgesparse.accel.metrics import hardware_figures, pareto_front
from edgesparse.accel.resources import engine_logic, estimate_resources, estimated_pe, load_calibration
from edgesparse.accel.schedule import LayerShape, schedule_layer
from edgesparse.errors import ConfigError
from edgesparse.export_flow import export_random, shape_graph
from edgesparse.report.published import comparison_rows, leading_number, load_published


def test_every_energy_has_a_status_and_a_source():
    table = load_energy_table()
    for row in table.rows(AcceleratorConfig()):
        assert row["status"] in ("quoted", "derived", "assumed") and row["source"], row
    assert table.pj("mac") == pytest.approx(table.pj("int8_multiply") + table.pj("int32_add"))  # its derivation
    assert table.sources["horowitz2014"].startswith("M. Horowitz")


def test_sram_energy_meets_the_quoted_points_and_grows_with_size():
    table = load_energy_table()
    for kib, pj in zip([8, 32, 1024], [10.0, 20.0, 100.0]):
        assert table.sram_pj_per_byte(kib) == pytest.approx(pj / 8)
    sizes = [1, 8, 20, 64, 512, 1024, 4096]
    energies = [table.sram_pj_per_byte(k) for k in sizes]
    assert all(a < b for a, b in zip(energies, energies[1:]))


@pytest.mark.parametrize("text, words", [
    ("[mac]\npj = 0.3\n", "needs a source"),
    ("[mac\n", "not valid TOML"),
    ("", "has no [mac] entry"),
])
def test_a_bad_energy_table_is_named(tmp_path, text, words):
    path = tmp_path / "energy.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        load_energy_table(path)


def test_a_negative_energy_is_refused(tmp_path):
    text = load_energy_table().path
    from importlib import resources

    original = resources.files("edgesparse.accel").joinpath("data", text).read_text()
    path = tmp_path / "energy.toml"
    path.write_text(original.replace("[dram_byte]\npj = 162.5", "[dram_byte]\npj = -1"))
    with pytest.raises(ConfigError, match=r"\[dram_byte\] pj must be non-negative"):
        load_energy_table(path)


def test_layer_actions_count_what_the_hardware_does():
    # A 1x1 conv, 16 -> 4 channels, 2x2 pixels, on a 4x4 array built for 1:16: one slot row, one fold.
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=1)
    shape = LayerShape("conv", rows_needed=1, cout=4, out_hw=(2, 2), in_chw=(16, 2, 2), kernel=(1, 1),
                       stride=(1, 1), dense_macs=4 * 16 * 4)
    actions = layer_actions(schedule_layer(shape, config), config)
    assert actions["mac"] == 4 * 4  # 4 filters x 4 pixels on the one used row
    assert actions["select"] == actions["mac"]
    # activation vectors (1 row x 4 columns x 4 pixels x 16 bytes) + int32 partial sums + weights shifting 4 rows
    assert actions["registers"] == 1 * 4 * 4 * 16 + 4 * 16 + 4 * math.ceil(16 * 12 / 8)
    assert actions["input_buffer"] == 1 * 4 * 16  # one row, 4 pixels, a 16-byte vector each
    dense = AcceleratorConfig(rows=4, cols=4, m=1, n=1)
    dense_shape = LayerShape("conv", 16, 4, (2, 2), (16, 2, 2), (1, 1), (1, 1), 4 * 16 * 4)
    dense_actions = layer_actions(schedule_layer(dense_shape, dense), dense)
    assert dense_actions["select"] == 0 and dense_actions["mac"] == 16 * 4 * 4


def test_frame_energy_adds_up_and_power_is_energy_times_fps():
    graph = export_random("vgg16_small", "1:16", width=0.25, num_classes=10, in_chans=1, calibration_images=1)
    table = load_energy_table()
    result = simulate(graph, AcceleratorConfig(8, 8), "analytic")
    energy = frame_energy(result, table)
    assert set(energy.by_action) == set(ACTIONS)
    per_layer = sum(sum(v for k, v in layer.items() if k != "name") for layer in energy.layers)
    assert energy.joules == pytest.approx(per_layer + energy.by_action["clock"] + energy.by_action["static"])
    assert energy.power_w == pytest.approx(energy.joules * result.fps)
    assert energy.gops_per_w == pytest.approx(result.effective_gops / energy.power_w)
    figures = hardware_figures("vgg16_small", result, table)
    assert figures.gops_per_dsp == pytest.approx(result.effective_gops / figures.dsps)
    assert figures.energy_mj == pytest.approx(1e3 * energy.joules)


def test_the_sparse_array_spends_less_energy_per_frame_than_the_dense_one():
    graph = export_random("vgg16_small", "1:16", width=0.5, num_classes=10, in_chans=1, calibration_images=1)
    table = load_energy_table()
    config = AcceleratorConfig(8, 8)
    sparse = frame_energy(simulate(graph, config, "analytic"), table)
    dense = frame_energy(simulate(graph, config.dense_twin(), "analytic"), table)
    assert sparse.joules < dense.joules and sparse.by_action["mac"] < dense.by_action["mac"] / 8
    assert sparse.by_action["select"] > 0 == dense.by_action["select"]


def test_static_and_clock_energy_come_from_each_design_s_own_resources():
    graph = shape_graph("vgg16", "1:16")
    table = load_energy_table()
    sparse_config = AcceleratorConfig(16, 16, pixels_per_cycle=2, classic=True)
    sparse_result = simulate(graph, sparse_config, "analytic")
    dense_result = simulate(graph, sparse_config.dense_twin(), "analytic")
    sparse, dense = (frame_energy(r, table) for r in (sparse_result, dense_result))
    res = estimate_resources(sparse_config)
    ppu = res.post_processing  # 32 output lanes of requantizer, max pool and residual add, 16 average-pool lanes
    assert ppu["dsp"] == 32 * (4 + 0 + 4) + 16 * 4 and ppu["lut"] > 0 and ppu["ff"] > 0
    engine = engine_logic(sparse_config, load_calibration())  # the synthesized 16x16 engine's feeders, DMA, control
    assert engine is not None and engine["dsp"] == 0
    assert (res.luts - ppu["lut"] - engine["lut"], res.ffs - ppu["ff"] - engine["ff"], res.dsps - ppu["dsp"],
            res.bram36) == (34_910, 79_694, 256, 208)
    pipelined = estimate_resources(replace(sparse_config, classic=False, segments=4))
    assert pipelined.post_processing == ppu  # the same output lanes
    assert (pipelined.luts - ppu["lut"] - engine["lut"], pipelined.ffs - ppu["ff"] - engine["ff"],
            pipelined.dsps - ppu["dsp"]) == (38_096, 87_851, 256)  # its own synthesis, S = 4; 16+128+64 RAMB36
    static_w = res.luts * 2e-8 + res.ffs * 5e-8 + res.dsps * 2e-6 + 208 * 2e-5  # the table's per-resource figures
    clock_pj = res.ffs * 0.002 + res.dsps * 0.2
    assert sparse.by_action["static"] * sparse_result.fps == pytest.approx(static_w)
    assert sparse.by_action["clock"] == pytest.approx(sparse_result.total_cycles * clock_pj * 1e-12)
    dense_res = estimate_resources(sparse_config.dense_twin())
    assert dense_res.post_processing == ppu  # the same post-processing unit; the arrays differ:
    assert (dense_res.ffs - ppu["ff"]) * 3 < res.ffs - ppu["ff"] and (dense_res.luts - ppu["lut"]) * 2 < res.luts - ppu[
        "lut"]  # the sparse array's select and pass-through
    sparse_static_w, dense_static_w = (e.by_action["static"] * r.fps for e, r in
                                       ((sparse, sparse_result), (dense, dense_result)))
    # It pays for them, not one constant for both designs: the difference is exactly the arrays' LUTs and FFs.
    assert sparse_static_w - dense_static_w == pytest.approx((res.luts - dense_res.luts) * 2e-8
                                                             + (res.ffs - dense_res.ffs) * 5e-8)
    assert sparse_static_w > 1.3 * dense_static_w
    doubled = frame_energy(sparse_result, table.scaled_resources(2.0))
    for action in ("static", "clock"):
        assert doubled.by_action[action] == pytest.approx(2 * sparse.by_action[action])
    assert doubled.by_action["mac"] == sparse.by_action["mac"]


def test_resources_scale_with_the_array_and_name_their_source():
    small, large = (estimate_resources(AcceleratorConfig(r, r)) for r in (8, 16))
    array_dsps = [r.dsps - r.post_processing["dsp"] for r in (small, large)]
    assert array_dsps[1] == 4 * array_dsps[0] and array_dsps[1] >= 256
    assert large.post_processing["dsp"] > small.post_processing["dsp"] > 0  # twice the output lanes
    assert large.luts > small.luts and large.ffs > small.ffs
    assert ("synthesized" in large.source) == large.synthesized
    assert "estimate" in large.source or "yosys" in large.source
    assert estimated_pe(1)["lut"] == 0 and estimated_pe(16)["ff"] > estimated_pe(4)["ff"]


def test_pareto_front_keeps_only_undominated_points():
    class P:
        def __init__(self, fps, gops_per_w, gops_per_dsp=1.0):
            self.fps, self.gops_per_w, self.gops_per_dsp = fps, gops_per_w, gops_per_dsp

    points = [P(1, 10), P(2, 5), P(1.5, 4), P(3, 1), P(2, 5)]
    assert pareto_front(points, ("fps", "gops_per_w")) == [True, True, False, True, True]
    points[2].gops_per_dsp = 9.0  # better in the third figure: no longer dominated
    assert pareto_front(points) == [True, True, True, True, True]


def test_published_rows_keep_their_marks():
    published = load_published()
    assert len(published) >= 10 and all(row["status"] for row in published)
    assert leading_number(">=0.42 (derived; 2520 device DSPs)") == 0.42
    assert leading_number("1.22 (derived)") == 1.22
    assert leading_number("2.17x best prior (relative)") is None and leading_number("") is None
    rows = comparison_rows([], "simulated")
    assert [r["status"] for r in rows] == [r["status"] for r in published]
    assert [r["gops_per_dsp"] for r in rows] == [r["gops_per_dsp"] for r in published]
    assert not np.any([r["ours"] for r in rows])


def test_the_sweep_refuses_a_pattern_it_cannot_build_before_any_work():
    from edgesparse.network_flow import sweep
    from edgesparse.errors import PatternError

    with pytest.raises(PatternError, match="'unstructured'"):
        sweep("vgg16_small", [(4, 4)], ["1:16", "unstructured"], AcceleratorConfig(4, 4), load_energy_table())


def test_modelled_power_never_sits_in_a_column_of_measured_board_power():
    graph = shape_graph("vgg16_small", "1:16", in_chans=1, num_classes=10, width=0.25)
    figures = hardware_figures("vgg16_small", simulate(graph, AcceleratorConfig(8, 8), "analytic"), load_energy_table())
    ours = [row for row in comparison_rows([figures], "simulated") if row["ours"]]
    assert ours and all(leading_number(row[c]) is None for row in ours for c in ("power_w", "gops_per_w"))
    assert all("45 nm ASIC model" in row["gops_per_w"] for row in ours)
