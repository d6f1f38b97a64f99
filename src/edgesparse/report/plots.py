"""The report's plots, each rendered to PNG bytes (matplotlib, no display needed)."""

from __future__ import annotations

import io
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

ACTION_COLORS = {"mac": "#4c72b0", "select": "#8172b2", "registers": "#64b5cd", "weight_buffer": "#55a868",
                 "input_buffer": "#8c8c3c", "output_buffer": "#ccb974", "dram": "#c44e52", "static": "#999999"}


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def accuracy_vs_compression(points: Sequence[dict[str, Any]]) -> bytes:
    """Test accuracy against weight compression; one marker per pattern, filled for this run's models."""
    figure, axes = plt.subplots(figsize=(8.4, 4.2))
    for source, marker in (("benchmark", "o"), ("this run", "*")):
        chosen = [p for p in points if p["source"] == source]
        for point in chosen:
            axes.scatter(point["compression"], 100 * point["accuracy"], marker=marker, s=140 if marker == "*" else 50,
                         alpha=0.85, label=f"{point['label']} ({source})")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("weights: x fewer than dense (log2)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Accuracy vs compression per pattern")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def layer_cycles(layers: Sequence[dict[str, Any]], title: str) -> bytes:
    """Cycles per weighted layer (bars) and PE utilization (line)."""
    figure, axes = plt.subplots(figsize=(max(6.4, 0.42 * len(layers)), 4.0))
    names = [layer["name"] for layer in layers]
    positions = range(len(layers))
    axes.bar(positions, [layer["cycles"] for layer in layers], color="#4c72b0")
    axes.set_ylabel("cycles", color="#4c72b0")
    axes.set_xticks(list(positions), names, rotation=60, ha="right", fontsize=7)
    twin = axes.twinx()
    twin.plot(list(positions), [100 * layer["pe_utilization"] for layer in layers], color="#c44e52", marker="o")
    twin.set_ylabel("PE utilization (%)", color="#c44e52")
    twin.set_ylim(0, 105)
    axes.set_title(title)
    return _png(figure)


def energy_breakdown(rows: Sequence[dict[str, Any]]) -> bytes:
    """Share of each action in a frame's energy (stacked to 100%), one bar per (model, configuration); the
    frame's total in the label."""
    figure, axes = plt.subplots(figsize=(8.0, 0.5 * len(rows) + 1.8))
    labels = [f"{row['label']}\n{row['energy_mj']:.3g} mJ/frame" for row in rows]
    left = [0.0] * len(rows)
    for action, color in ACTION_COLORS.items():
        values = [100 * row.get(f"energy_mj_{action}", 0.0) / row["energy_mj"] for row in rows]
        axes.barh(labels, values, left=left, color=color, label=action)
        left = [a + b for a, b in zip(left, values)]
    axes.set_xlabel("share of the energy per frame (%)")
    axes.set_xlim(0, 100)
    axes.set_title("Energy breakdown per frame")
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    axes.legend(fontsize=7, ncol=8, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(rows) > 3 else -0.35))
    return _png(figure)


def density_comparison(rows: Sequence[dict[str, Any]]) -> bytes:
    """Calculation density (effective GOPS/DSP) of every design that has one; derived figures hatched."""
    chosen = [r for r in rows if r.get("gops_per_dsp_value") is not None]
    figure, axes = plt.subplots(figsize=(9.0, 0.4 * len(chosen) + 1.4))
    labels = [f"{r['design']} / {r['model']}" for r in chosen]
    bars = axes.barh(labels, [r["gops_per_dsp_value"] for r in chosen],
                     color=["#4c72b0" if r["ours"] else "#aaaaaa" for r in chosen])
    for bar, row in zip(bars, chosen):
        if "derived" in row["gops_per_dsp"] or "derived" in row["status"]:
            bar.set_hatch("//")
        axes.annotate(row["gops_per_dsp"].split(" (")[0] + (" derived" if "derived" in row["gops_per_dsp"] else ""),
                      (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                      textcoords="offset points", va="center", fontsize=6)
    axes.set_xlabel("effective GOPS per DSP (hatched: derived from other figures; >= : a lower bound)")
    axes.set_title("Calculation density: this work (blue) vs published")
    axes.invert_yaxis()
    axes.tick_params(axis="y", labelsize=7)
    return _png(figure)


def sweep_pareto(points: Sequence[dict[str, Any]]) -> bytes:
    """FPS vs GOPS/W over the sweep, point size by GOPS/DSP; Pareto-front points (FPS, GOPS/W, GOPS/DSP) ringed."""
    figure, axes = plt.subplots(figsize=(7.2, 4.8))
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
    axes.set_xlabel("frames per second")
    axes.set_ylabel("effective GOPS/W")
    axes.set_title("Design space: array size x pattern (ringed: Pareto front in FPS, GOPS/W, GOPS/DSP)")
    axes.title.set_fontsize(9)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=7, title="pattern", title_fontsize=7)
    return _png(figure)


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
    axes.set_title("Accuracy vs cycles: dense, uniform 1:16, allocated at 16x, a 32x budget")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure)
