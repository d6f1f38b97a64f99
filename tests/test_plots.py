"""Plots a person can read: every text inside its figure, tick labels on every axis, no hidden points."""

import matplotlib.pyplot as plt
import pytest

from edgesparse.report import plots

LONG_TITLE = "vgg16_small w0.25 (32x32) on 16x16 1:16, 2 px/cycle @ 200 MHz: cycles and PE utilization"


@pytest.fixture
def checked(monkeypatch):
    """Every figure a plot function renders, checked instead of saved."""
    problems: list[str] = []

    def check(figure):
        problems.extend(plots.layout_problems(figure))
        plt.close(figure)
        return b""

    monkeypatch.setattr(plots, "_png", check)
    return problems


def _accuracy_points():
    labels = ["1:16 magnitude", "1:16 taylor", "1:16 fisher", "1:16/g4 fisher", "unstructured fisher",
              "channel fisher", "unstructured magnitude", "unstructured-layer magnitude", "channel magnitude"]
    points = [{"label": f"{label} s{seed}", "compression": 16.0, "accuracy": 0.8 + 0.01 * i, "source": "benchmark"}
              for seed in (0, 1) for i, label in enumerate(labels)]
    return points + [{"label": "dense", "compression": 1.0, "accuracy": 0.93, "source": "this run"},
                     {"label": "1:16", "compression": 15.2, "accuracy": 0.9, "source": "this run"}]


def test_every_plot_keeps_its_text_inside_and_labels_every_axis(checked):
    plots.accuracy_by_pattern(_accuracy_points())
    layers = [{"name": f"features.{i}", "cycles": 1000 + 37 * i, "pe_utilization": 0.5} for i in range(0, 45, 3)]
    plots.layer_cycles(layers, LONG_TITLE)
    plots.layer_cycles(layers[:2], LONG_TITLE)  # a narrow figure: the title wraps
    plots.layer_cycles(layers * 4, LONG_TITLE)  # ResNet50's 54 layers wrap onto rows
    actions = list(plots.ACTION_COLORS)
    rows = [{"label": f"resnet50-224 16x16 {p}", "energy_mj": 9.0, **{f"energy_mj_{a}": 1.0 for a in actions}}
            for p in ("1:16", "dense")]
    plots.energy_breakdown(rows)
    plots.density_comparison([{"design": "this work's baseline: the same 16x16 dense array", "model": "vgg16-224",
                               "gops_per_dsp": "0.42", "gops_per_dsp_value": 0.42, "status": "", "ours": True},
                              {"design": "Sense", "model": "VGG16", "gops_per_dsp": ">=0.42 (derived)",
                               "gops_per_dsp_value": 0.42, "status": "derived", "ours": False}])
    plots.sweep_pareto([{"array": a, "pattern": p, "fps": f, "gops_per_w": g, "gops_per_dsp": d, "pareto": d > 1}
                        for a, p, f, g, d in [("8x8", "dense", 1.0, 280, 0.4), ("32x32", "1:16", 78, 1815, 2.4),
                                              ("16x16", "1:8", 25, 1134, 3.1)]])
    assert checked == []


def test_models_at_one_compression_get_a_row_each(checked, monkeypatch):
    rows = []
    monkeypatch.setattr(plots.plt.Axes, "set_yticks", lambda self, ticks, labels, **kw: rows.extend(labels))
    plots.accuracy_by_pattern(_accuracy_points())
    assert len(rows) == len(set(rows)) == 20 and sum("16x fewer" in r for r in rows) == 18


def test_the_check_finds_a_cut_title_and_a_two_tick_log_axis():
    figure, axes = plt.subplots(figsize=(4.0, 3.0))  # what the demo's plots did
    axes.scatter([1, 16, 16], [90, 91, 92])  # every 16x point in one column
    axes.set_xscale("log", base=16)
    axes.set_title(LONG_TITLE)
    problems = plots.layout_problems(figure)
    plt.close(figure)
    assert any("reaches outside" in p and "vgg16_small" in p for p in problems), problems
    assert any(p.startswith("x axis") and "2 tick label(s)" in p for p in problems), problems


def test_a_deep_network_s_layers_wrap_onto_rows_of_a_page_wide_figure(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_png", lambda figure: figures.append(figure) or b"")
    plots.layer_cycles([{"name": f"layer{i}.conv2", "cycles": 10 + i, "pe_utilization": 0.5} for i in range(54)], "x")
    (figure,) = figures
    assert figure.get_figwidth() <= 12 and len(figure.axes) == 2 * 2  # two rows, each with its utilization twin
    plt.close(figure)
