"""The report's plots, each rendered to PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
import re
import textwrap
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: E402

ACTION_COLORS = {"mac": "#4c72b0", "select": "#8172b2", "registers": "#64b5cd", "weight_buffer": "#55a868",
                 "input_buffer": "#8c8c3c", "output_buffer": "#ccb974", "dram": "#c44e52", "clock": "#937860",
                 "static": "#999999"}
_NUMBER = re.compile(r"[\s${}^0-9.,+\-\u2212\u00d7e]*")  # a tick label that is a number (plain or mathtext)
PATTERN_COLORS = {"dense": "#333333", "1:": "#4c72b0", "unstructured": "#55a868", "channel": "#c44e52"}


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure whose constrained layout keeps every title, label and legend inside it."""
    return plt.subplots(figsize=(width, height), layout="constrained")


def _title(axes: Any, text: str, width_in: float, size: float = 11.0) -> None:
    """The figure's title, centred on the figure and wrapped to its width (about 0.55 em per character)."""
    per_line = max(20, int(width_in * 72 / (0.55 * size)) - 4)
    axes.figure.suptitle("\n".join(textwrap.wrap(text, per_line)), fontsize=size)


def _plain_log_ticks(axis: Any) -> None:
    """Label a log axis at 1, 2 and 5 per decade in plain numbers (not only at powers of the base)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda value, _: ""))


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def _family_color(label: str) -> str:
    return next((color for prefix, color in PATTERN_COLORS.items() if label.startswith(prefix)), "#8172b2")


def accuracy_by_pattern(points: Sequence[dict[str, Any]]) -> bytes:
    """Test accuracy of every model, one row each (pattern, importance, seed and compression in its label), so
    models at the same compression do not hide each other; stars: this run, circles: the accuracy benchmark."""
    ordered = sorted(points, key=lambda p: (p["compression"], p["accuracy"]))
    labels = [f"{p['label']} ({p['compression']:.3g}x fewer weights{', this run' if p['source'] == 'this run' else ''})"
              for p in ordered]
    figure, axes = _figure(8.4, 0.28 * len(ordered) + 1.6)
    for row, point in enumerate(ordered):
        star = point["source"] == "this run"
        axes.scatter(100 * point["accuracy"], row, marker="*" if star else "o", s=160 if star else 45,
                     color=_family_color(point["label"]), zorder=3)
    axes.set_yticks(range(len(ordered)), labels, fontsize=7)
    axes.set_xlabel("test accuracy (%)")
    axes.grid(alpha=0.3, axis="x")
    _title(axes, "Test accuracy per pattern and importance score, by compression (stars: this run; circles: the "
                 "committed accuracy benchmark)", 8.4)
    return _png(figure)


LAYERS_PER_ROW = 28  # a deeper network wraps onto more rows, so its layer names stay legible on a page


def layer_cycles(layers: Sequence[dict[str, Any]], title: str) -> bytes:
    """Cycles per weighted layer (bars) and PE utilization (line), at most ``LAYERS_PER_ROW`` layers per row."""
    rows = max(1, -(-len(layers) // LAYERS_PER_ROW))
    width = max(6.4, 0.42 * min(len(layers), LAYERS_PER_ROW))
    figure, grid = plt.subplots(rows, 1, figsize=(width, 4.2 * rows), layout="constrained", squeeze=False)
    for row, axes in enumerate(grid[:, 0]):
        chunk = layers[row * LAYERS_PER_ROW:(row + 1) * LAYERS_PER_ROW]
        positions = range(len(chunk))
        axes.bar(positions, [layer["cycles"] for layer in chunk], color="#4c72b0")
        axes.set_ylabel("cycles", color="#4c72b0")
        axes.set_xticks(list(positions), [layer["name"] for layer in chunk], rotation=60, ha="right", fontsize=7)
        axes.set_xlim(-0.6, LAYERS_PER_ROW - 0.4 if rows > 1 else len(chunk) - 0.4)
        twin = axes.twinx()
        twin.plot(list(positions), [100 * layer["pe_utilization"] for layer in chunk], color="#c44e52", marker="o")
        twin.set_ylabel("PE utilization (%)", color="#c44e52")
        twin.set_ylim(0, 105)
    _title(grid[0, 0], title, width)
    return _png(figure)


def cycles_vs_bound(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str) -> bytes:
    """Each weighted layer's achieved cycles (bars) against its bound (markers), one panel per array (sparse, dense),
    with the fraction of the frame bound each array reaches."""
    width = max(6.4, 0.3 * max(len(layers) for _, layers in runs))
    figure, grid = plt.subplots(len(runs), 1, figsize=(width, 3.6 * len(runs)), layout="constrained", squeeze=False)
    for axes, (label, layers) in zip(grid[:, 0], runs):
        positions = list(range(len(layers)))
        achieved = [layer["cycles"] for layer in layers]
        bound = [layer["bound_cycles"] for layer in layers]
        axes.bar(positions, achieved, color="#4c72b0", label="achieved (modelled cycles)")
        axes.plot(positions, bound, linestyle="none", marker="_", markersize=14, markeredgewidth=2.5,
                  color="#c44e52", label="bound: max(MACs at 100% of the PEs, minimum DRAM bytes / bandwidth)")
        axes.set_yscale("log")
        _plain_log_ticks(axes.yaxis)
        axes.set_ylabel("cycles (log)")
        axes.set_xticks(positions, [layer["name"] for layer in layers], rotation=70, ha="right", fontsize=6)
        axes.set_xlim(-0.6, len(layers) - 0.4)
        axes.set_title(f"{label}: {sum(bound) / max(1, sum(achieved)):.3f} of the frame bound", fontsize=9)
    grid[0, 0].legend(fontsize=7, loc="upper right", framealpha=0.95)
    _title(grid[0, 0], title, width)
    return _png(figure)


def energy_breakdown(rows: Sequence[dict[str, Any]]) -> bytes:
    """Share of each action in a frame's energy (stacked to 100%), one bar per (model, configuration); the
    frame's total in the label."""
    figure, axes = _figure(8.0, 0.5 * len(rows) + 2.0)
    labels = [f"{row['label']}\n{row['energy_mj']:.3g} mJ/frame" for row in rows]
    left = [0.0] * len(rows)
    for action, color in ACTION_COLORS.items():
        values = [100 * row.get(f"energy_mj_{action}", 0.0) / row["energy_mj"] for row in rows]
        axes.barh(labels, values, left=left, color=color, label=action)
        left = [a + b for a, b in zip(left, values)]
    axes.set_xlabel("share of the energy per frame (%)")
    axes.set_xlim(0, 100)
    _title(axes, "Energy breakdown per frame (45 nm ASIC model)", 8.0)
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    figure.legend(*axes.get_legend_handles_labels(), fontsize=7, ncol=len(ACTION_COLORS), loc="outside lower center")
    return _png(figure)


def density_comparison(rows: Sequence[dict[str, Any]]) -> bytes:
    """Calculation density (effective GOPS/DSP) of every design that has one; derived figures hatched."""
    chosen = [r for r in rows if r.get("gops_per_dsp_value") is not None]
    figure, axes = _figure(9.0, 0.4 * len(chosen) + 1.6)
    labels = [f"{r['design']} / {r['model']}" for r in chosen]
    bars = axes.barh(labels, [r["gops_per_dsp_value"] for r in chosen],
                     color=["#4c72b0" if r["ours"] else "#aaaaaa" for r in chosen])
    for bar, row in zip(bars, chosen):
        if "derived" in row["gops_per_dsp"] or "derived" in row["status"]:
            bar.set_hatch("//")
        axes.annotate(row["gops_per_dsp"].split(" (")[0] + (" derived" if "derived" in row["gops_per_dsp"] else ""),
                      (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                      textcoords="offset points", va="center", fontsize=6)
    axes.set_xlabel("effective GOPS per DSP\n(hatched: derived from other figures; >= : a lower bound)")
    axes.set_xlim(0, 1.15 * max(r["gops_per_dsp_value"] for r in chosen))  # room for the value labels
    _title(axes, "Calculation density: this work (blue) vs published", 9.0)
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    return _png(figure)


def sweep_pareto(points: Sequence[dict[str, Any]]) -> bytes:
    """FPS vs GOPS/W over the sweep, point size by GOPS/DSP; Pareto-front points (FPS, GOPS/W, GOPS/DSP) ringed."""
    figure, axes = _figure(7.2, 4.8)
    patterns = sorted({p["pattern"] for p in points}, key=lambda s: (s != "dense", s))
    for pattern in patterns:
        chosen = [p for p in points if p["pattern"] == pattern]
        axes.scatter([p["fps"] for p in chosen], [p["gops_per_w"] for p in chosen],
                     s=[40 + 30 * p["gops_per_dsp"] for p in chosen], alpha=0.75, label=pattern,
                     edgecolors=["black" if p["pareto"] else "none" for p in chosen], linewidths=1.8)
        for p in chosen:
            axes.annotate(f"{p['array']} ({p['gops_per_dsp']:.1f}/DSP)", (p["fps"], p["gops_per_w"]), fontsize=6,
                          xytext=(4, 4), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_yscale("log")
    _plain_log_ticks(axes.xaxis)
    _plain_log_ticks(axes.yaxis)
    axes.margins(0.15)  # room for the labels beside the points
    axes.set_xlabel("frames per second")
    axes.set_ylabel("effective GOPS/W (45 nm ASIC model)")
    _title(axes, "Design space: array size x pattern (ringed: Pareto front in FPS, GOPS/W, GOPS/DSP)", 7.2, 10.0)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, title="pattern", title_fontsize=7)
    return _png(figure)


def layout_problems(figure: Any) -> list[str]:
    """What would hide a plot's point from a reader: text (titles, labels, tick labels, legends, annotations)
    reaching outside the figure, or a visible axis without tick labels (a numeric one needs three or more)."""
    from matplotlib.text import Text

    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    shown: dict[int, bool] = {}  # a tick label is drawn only when its tick lies inside the axis' view
    tick_labels: dict[str, list[str]] = {}
    for number, axes in enumerate(figure.axes):
        for name, axis in (("x", axes.xaxis), ("y", axes.yaxis)):
            low, high = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(low), abs(high), 1.0)
            visible = []
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                inside = axis.get_visible() and low - slack <= tick.get_loc() <= high + slack
                for label in (tick.label1, tick.label2):
                    shown[id(label)] = inside
                    if inside and label.get_visible() and label.get_text().strip():
                        visible.append(label.get_text())
            if axis.get_visible() and any(t.label1.get_visible() or t.label2.get_visible()
                                          for t in axis.get_major_ticks()):
                numeric = all(_NUMBER.fullmatch(label.replace("\\mathdefault", "")) for label in visible)
                if len(visible) < (3 if numeric else 1):
                    tick_labels[f"{name} axis of plot {number}"] = visible
    problems = [f"{where} has {len(labels)} tick label(s): {labels}" for where, labels in tick_labels.items()]
    bounds = figure.bbox
    for text in figure.findobj(Text):
        if not text.get_visible() or not text.get_text().strip() or not shown.get(id(text), True):
            continue
        box = text.get_window_extent(renderer)
        if box.x0 < bounds.x0 - 1 or box.y0 < bounds.y0 - 1 or box.x1 > bounds.x1 + 1 or box.y1 > bounds.y1 + 1:
            problems.append(f"text {text.get_text()[:40]!r} reaches outside the figure")
    return problems


def accuracy_vs_cycles(points: Sequence[dict[str, Any]]) -> bytes:
    """int8 test accuracy (mean, with the seeds' half-range) against cycles per frame on the array, per model."""
    figure, axes = plt.subplots(figsize=(8.4, 4.2))
    for model in sorted({p["model"] for p in points}):
        chosen = sorted((p for p in points if p["model"] == model), key=lambda p: float(p["cycles"]))
        axes.errorbar([float(p["cycles"]) for p in chosen], [100 * float(p["test_int8_mean"]) for p in chosen],
                      yerr=[100 * float(p["test_int8_spread"]) for p in chosen], marker="o", capsize=3, label=model)
        for point in chosen:
            axes.annotate(f"{point['point']} ({float(point['compression']):.1f}x, M={point['array_m']})",
                          (float(point["cycles"]), 100 * float(point["test_int8_mean"])), fontsize=7,
                          xytext=(4, 4), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_xlabel("cycles per frame on the 16x16 array (analytic model, log)")
    axes.set_ylabel("int8 test accuracy (%)")
    _plain_log_ticks(axes.xaxis)
    _title(axes, "Accuracy vs cycles: dense, uniform 1:16, allocated at 16x, a 32x budget", 8.4)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)
