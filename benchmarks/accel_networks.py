"""Whole-network figures: VGG16-224 and ResNet50-224, 1:16 vs the same-size dense array.

The pattern (1:16, first conv dense) fixes the work, so the networks are shapes only (no weights; see
tests/test_accel.py: cycles do not depend on the values). Cycles come from the shared schedule (the analytic view;
the fast and stepped views give the same counts, which the tests check). Every target is checked and a missed one is
reported as missed: in its row (``targets``) and in the JSON's ``missed`` list.

    python benchmarks/accel_networks.py --array 16x16 --clock-mhz 200
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import asdict  # noqa: E402

from _common import RESULTS, publish, write_csv  # noqa: E402

from edgesparse.accel import AcceleratorConfig, parse_array  # noqa: E402
from edgesparse.accel.simulate import simulate  # noqa: E402
from edgesparse.export_flow import shape_graph  # noqa: E402

SPEEDUP_TARGET = 14.0  # VGG16, 1:16 over the same dense array
UTILIZATION_TARGET = 0.95  # MAC-weighted PE utilization of conv layers with Cin >= 64
TARGETS = (f"VGG16 speedup >= {SPEEDUP_TARGET:g}x; utilization >= {UTILIZATION_TARGET:.0%} on conv layers with "
           f"Cin >= 64")


def conv_utilization(result, config, min_cin: int = 64) -> tuple[float, float]:
    """MAC-weighted and lowest PE utilization over conv layers with at least ``min_cin`` input channels."""
    layers = [layer for layer in result.layers if layer.kind == "conv" and layer.schedule is not None
              and layer.schedule.shape.in_chw[0] >= min_cin]
    weighted = sum(layer.real_macs for layer in layers) / (config.pes * config.pixels_per_cycle
                                                          * sum(layer.cycles for layer in layers))
    return weighted, min(layer.pe_utilization(config) for layer in layers)


def missed_targets(model: str, label: str, speedup: float, utilization: float) -> list[str]:
    """The targets this row misses, each with its figure (empty when all are met)."""
    missed = []
    if utilization < UTILIZATION_TARGET:
        missed.append(f"conv utilization {utilization:.3f} < {UTILIZATION_TARGET}")
    if model == "vgg16" and label == "1:16" and speedup < SPEEDUP_TARGET:
        missed.append(f"speedup {speedup:.2f}x < {SPEEDUP_TARGET:g}x")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--array", default="16x16")
    parser.add_argument("--clock-mhz", type=float, default=200.0)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    args = parser.parse_args()
    rows, cols = parse_array(args.array)
    designs = {"classic 1 px/cycle": AcceleratorConfig(rows, cols, 16, 1, args.clock_mhz, classic=True),
               "pipelined 2 px/cycle, 4 segments": AcceleratorConfig(rows, cols, 16, 1, args.clock_mhz,
                                                                     pixels_per_cycle=2, segments=4)}

    summary, per_layer = [], []
    for (name, (design, sparse_config)) in ((n, d) for n in args.models for d in designs.items()):
        dense_config = sparse_config.dense_twin()
        graph = shape_graph(name, "1:16")
        results = {label: simulate(graph, config, "analytic")
                   for label, config in (("dense", dense_config), ("1:16", sparse_config))}
        for label, result in results.items():
            config = result.config
            weighted, lowest = conv_utilization(result, config)
            speedup = results["dense"].total_cycles / result.total_cycles
            missed = missed_targets(name, label, speedup, weighted)
            summary.append({
                "model": f"{name}-224", "design": design, "array": f"{args.array} {label}",
                "clock_mhz": args.clock_mhz,
                "cycles": result.total_cycles, "fps": f"{result.fps:.2f}",
                "pe_utilization": f"{result.pe_utilization:.3f}", "conv_cin64_utilization": f"{weighted:.3f}",
                "conv_cin64_lowest": f"{lowest:.3f}",
                "speedup_vs_dense": f"{speedup:.2f}",
                "effective_gops": f"{result.effective_gops:.1f}", "actual_gops": f"{result.actual_gops:.1f}",
                "dram_mb": f"{result.dram_bytes / 1e6:.1f}",
                "targets": "MISSED: " + "; ".join(missed) if missed else "met"})
        dense_layers = {layer.name: layer for layer in results["dense"].layers}
        for layer in results["1:16"].layers:
            if layer.schedule is None:
                continue
            shape = layer.schedule.shape
            per_layer.append({
                "model": f"{name}-224", "design": design, "layer": layer.name, "kind": layer.kind, "cin": shape.in_chw[0],
                "cout": shape.cout, "pixels": shape.pixels, "rows_needed": shape.rows_needed,
                "folds": layer.schedule.folds, "tiles": layer.schedule.tiles, "cycles_1of16": layer.cycles,
                "stall_cycles": layer.schedule.stall_cycles, "cycles_dense": dense_layers[layer.name].cycles,
                "speedup": f"{dense_layers[layer.name].cycles / layer.cycles:.2f}",
                "pe_utilization": f"{layer.pe_utilization(sparse_config):.3f}"})
    write_csv(RESULTS / "accel_layers.csv", list(per_layer[0]), per_layer)
    missed = [f"{row['model']} {row['design']} {row['array']}: {row['targets'][len('MISSED: '):]}" for row in summary
              if row["targets"] != "met"]
    publish("accel_networks", summary, configs={d: asdict(c) for d, c in designs.items()}, targets=TARGETS,
            missed=missed)
    for line in missed:
        print(f"MISSED {line}")


if __name__ == "__main__":
    main()
