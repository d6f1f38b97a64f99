"""Everything the report shows, measured and gathered into one JSON-ready dict.

Sections: the trained runs (accuracy, compression), the packed model (bytes, index overhead, int8 accuracy), the
trained model on the accelerator (bit-exact check against the integer reference, per-layer cycles, figures), the
paper's networks against the same-size dense array and published designs, the design-space sweep, and the
energy table with its sources. The printed summary and the report read the same dict, so they cannot disagree.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.energy import ENERGY_MODEL, frame_energy, load_energy_table
from edgesparse.accel.metrics import hardware_figures, pareto_front
from edgesparse.accel.simulate import simulate
from edgesparse.data import iterate_batches, load_dataset
from edgesparse.errors import ConfigError
from edgesparse.export_flow import int8_accuracy
from edgesparse.network_flow import compare_networks, sweep
from edgesparse.pack.inspect import stored_layers, total_stored
from edgesparse.pack.packed import load_packed
from edgesparse.quant import quantize_input, run_graph
from edgesparse.quant.graph import IntGraph
from edgesparse.report.published import comparison_rows
from edgesparse.sparsity import layer_figures
from edgesparse.trained import load_trained


def _run_summary(run: Path) -> dict[str, Any]:
    path = run / "summary.json"
    if not path.exists():
        raise ConfigError(f"{run} has no summary.json: is it a finished training run?")
    summary = json.loads(path.read_text())
    config = summary["config"]
    return {"run": str(run), "model": config["model"], "width": config["width"], "dataset": config["dataset"],
            "epochs": config["epochs"], "pattern": config["pattern"], "importance": config["importance"],
            "accuracy": summary["test_acc"], "compression": summary["compression"],
            "index_ratio": summary["index_ratio"]}


def _accuracy_points(runs: dict[str, dict[str, Any]], benchmark_csv: Path | None) -> list[dict[str, Any]]:
    points = [{"label": run["pattern"] if run["pattern"] != "dense" else "dense", "compression": run["compression"],
               "accuracy": run["accuracy"], "source": "this run"} for run in runs.values()]
    if benchmark_csv is not None and benchmark_csv.exists():
        with open(benchmark_csv, newline="") as handle:
            for row in csv.DictReader(handle):
                label = row["pattern"] + ("" if row["importance"] in ("none", "") else f" {row['importance']}")
                points.append({"label": f"{label} s{row['seed']}", "compression": float(row["compression"]),
                               "accuracy": float(row["test_acc"]), "source": "benchmark"})
    return points


def _plan_rows(trained_model: Any, demo_layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer of the trained model: its N:M, dense and kept weights, and cycles on the report's array."""
    cycles = {layer["name"]: layer["cycles"] for layer in demo_layers}
    return [{"name": row.name, "pattern": row.pattern, "dense_weights": row.dense_weights,
             "kept_weights": row.kept_weights, "cycles": cycles.get(row.name)} for row in layer_figures(trained_model)]


def _sibling_rows(benchmark_csv: Path | None, name: str) -> list[dict[str, str]]:
    """The rows of benchmark table ``name`` written beside the accuracy CSV (none when it is absent):
    ``accuracy_front.csv`` (``accuracy_patterns.py --recipes``), ``fpga.csv`` (``benchmarks/fpga.py``)."""
    path = benchmark_csv.with_name(name) if benchmark_csv is not None else None
    if path is None or not path.exists():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _packed_section(graph: IntGraph, path: Path, dataset: str, test_images: int,
                    progress: bool) -> dict[str, Any]:
    rows = stored_layers(graph)
    total = total_stored(rows)
    pruned = [r for r in rows if r.index_bytes]
    pruned_total = total_stored(pruned) if pruned else total
    test = load_dataset(dataset, "test").subset(test_images)
    return {"file": str(path), "file_bytes": path.stat().st_size,
            "weights_vs_dense": total.kept_weights / total.dense_weights,
            "compression": total.dense_weights / total.kept_weights,
            "pruned_layers_compression": pruned_total.dense_weights / pruned_total.kept_weights,
            "index_overhead": pruned_total.index_bytes / pruned_total.dense_weights,
            "bytes_vs_dense_int8": total.total_bytes / total.dense_weights,
            "int8_accuracy": int8_accuracy(graph, test, progress=progress), "int8_images": len(test)}


def _bit_exact(graph: IntGraph, config: AcceleratorConfig, dataset: str, images: int) -> dict[str, Any]:
    """Run ``images`` test images through the accelerator (fast view) and the integer reference, every tensor."""
    test = load_dataset(dataset, "test")
    batch, _ = next(iterate_batches(test, images, shuffle=False))
    exact, result = True, None
    for image in quantize_input(graph, batch):
        reference = run_graph(graph, image[None], keep=True)
        result = simulate(graph, config, "fast", image, keep=True)
        exact &= all(np.array_equal(result.tensors[op.name], reference[op.name]) for op in graph.ops)
    return {"images": images, "exact": bool(exact), "result": result}


def collect_report(sparse_run: Path, dense_run: Path | None, packed: Path, config: AcceleratorConfig, *,
                   networks: Sequence[str] = ("vgg16", "resnet50"), sweep_model: str | None = "vgg16",
                   sweep_arrays: Sequence[tuple[int, int]] = ((8, 8), (16, 16), (32, 32)),
                   sweep_patterns: Sequence[str] = ("dense", "1:4", "1:8", "1:16"),
                   network_pattern: str = "1:16",
                   test_images: int = 2000, exact_images: int = 4, benchmark_csv: Path | None = None,
                   energy_table: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure and gather every section of the report (see the module docstring)."""
    started = time.perf_counter()
    table = load_energy_table(energy_table)
    runs = {"sparse": _run_summary(sparse_run)}
    if dense_run is not None:
        runs["dense"] = _run_summary(dense_run)
    trained = load_trained(sparse_run)
    graph = load_packed(packed)
    packed_section = _packed_section(graph, packed, trained.config.dataset, test_images, progress)
    exact = _bit_exact(graph, config, trained.config.dataset, exact_images)
    demo_label = f"{trained.config.model} w{trained.config.width:g} ({graph.input_shape[1]}x{graph.input_shape[2]})"
    demo_result = exact.pop("result")
    demo = hardware_figures(demo_label, demo_result, table)
    demo_energy = [{"name": layer["name"], **{k: 1e6 * v for k, v in layer.items() if k != "name"}}
                   for layer in frame_energy(demo_result, table).layers]
    demo_layers = [layer.as_row(config) for layer in demo_result.layers if layer.weighted]
    pairs = compare_networks(networks, config, table, progress, network_pattern)
    network_rows = [{"sparse": p.sparse.as_row(), "dense": p.dense.as_row(), "speedup": p.dense.cycles / p.sparse.cycles,
                     "gops_per_w_ratio": p.sparse.gops_per_w / p.dense.gops_per_w,
                     "gops_per_dsp_ratio": p.sparse.gops_per_dsp / p.dense.gops_per_dsp, "layers": p.layers,
                     "dense_layers": p.dense_layers}
                    for p in pairs]
    synthesized = bool(pairs) and "synthesized" in pairs[0].sparse.resource_source
    resource_note = ("simulated; power not measured (a 45 nm ASIC model, see Energy); DSPs "
                     + ("synthesized" if synthesized else "estimated"))
    ours = [figure for pair in pairs for figure in (pair.sparse, pair.dense)]
    comparison = comparison_rows(ours, resource_note)
    sweep_rows: list[dict[str, Any]] = []
    if sweep_model:
        points = sweep(sweep_model, sweep_arrays, sweep_patterns, config, table, progress)
        front = pareto_front(points)
        sweep_rows = [{**p.as_row(), "pareto": on} for p, on in zip(points, front)]
    data = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S"), "accelerator": asdict(config),
        "accelerator_label": config.describe(), "runs": runs,
        "accuracy_points": _accuracy_points(runs, benchmark_csv), "packed": packed_section,
        "bit_exact": exact, "demo_figures": demo.as_row(), "demo_layers": demo_layers, "demo_energy_uj": demo_energy,
        "networks": network_rows, "comparison": comparison, "sweep": sweep_rows,
        "plan": _plan_rows(trained.model, demo_layers),
        "accuracy_front": _sibling_rows(benchmark_csv, "accuracy_front.csv"),
        "placed": _sibling_rows(benchmark_csv, "fpga.csv"),
        "energy_table": {"path": table.path, "sources": table.sources, "rows": table.rows(config)},
        "resource_source": demo.resource_source,
    }
    data["summary"] = summarize(data)
    data["seconds"] = round(time.perf_counter() - started, 1)
    return data


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """The few numbers the demo prints, taken from the report's own sections."""
    runs, packed, demo = data["runs"], data["packed"], data["demo_figures"]
    summary = {"accuracy_sparse": runs["sparse"]["accuracy"], "accuracy_dense": runs.get("dense", {}).get("accuracy"),
               "int8_accuracy": packed["int8_accuracy"], "compression": packed["compression"],
               "pruned_layers_compression": packed["pruned_layers_compression"],
               "index_overhead": packed["index_overhead"], "bit_exact": data["bit_exact"]["exact"],
               "demo_model": demo["model"], "demo_fps": demo["fps"], "demo_gops_per_w": demo["gops_per_w"],
               "demo_gops_per_dsp": demo["gops_per_dsp"], "accelerator": data["accelerator_label"]}
    for row in data["networks"]:
        sparse = row["sparse"]
        summary.setdefault("networks", []).append(
            {"model": sparse["model"], "fps": sparse["fps"], "gops_per_w": sparse["gops_per_w"],
             "gops_per_dsp": sparse["gops_per_dsp"], "speedup_vs_dense": row["speedup"],
             "gops_per_w_vs_dense": row["gops_per_w_ratio"]})
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The demo's closing lines."""
    dense = summary["accuracy_dense"]
    lines = [f"accuracy: dense {100 * dense:.2f}% vs sparse {100 * summary['accuracy_sparse']:.2f}% (float, gap "
             f"{100 * (summary['accuracy_sparse'] - dense):+.2f} pt), sparse int8 {100 * summary['int8_accuracy']:.2f}%"
             if dense is not None else
             f"accuracy: sparse {100 * summary['accuracy_sparse']:.2f}% (float), int8 "
             f"{100 * summary['int8_accuracy']:.2f}%",
             f"compression: {summary['compression']:.2f}x fewer weights ({summary['pruned_layers_compression']:.2f}x "
             f"on pruned layers), index overhead {summary['index_overhead']:.5f} of dense int8 "
             f"(1/{1 / summary['index_overhead']:.0f})" if summary["index_overhead"] else
             f"compression: {summary['compression']:.2f}x",
             f"accelerator {summary['accelerator']}: bit-exact vs integer reference: {summary['bit_exact']}",
             f"  {summary['demo_model']}: {summary['demo_fps']:,.0f} FPS, {summary['demo_gops_per_w']:,.0f} GOPS/W "
             f"({ENERGY_MODEL}), {summary['demo_gops_per_dsp']:.2f} GOPS/DSP"]
    for net in summary.get("networks", []):
        lines.append(f"  {net['model']}: {net['fps']:.2f} FPS ({net['speedup_vs_dense']:.2f}x dense), "
                     f"{net['gops_per_w']:,.0f} GOPS/W ({ENERGY_MODEL}; {net['gops_per_w_vs_dense']:.2f}x dense), "
                     f"{net['gops_per_dsp']:.2f} GOPS/DSP")
    return "\n".join(lines)
