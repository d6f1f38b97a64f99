"""The figures the paper reports, VGG16-224 and ResNet50-224 with 1:16: FPS, effective and actual GOPS, power,
effective GOPS/W and GOPS/DSP, each against the same-size dense array, for the classic array (1 pixel per cycle) and
the design (2 pixels per cycle, both products in one DSP48E1); then the design-space sweep with its Pareto front.
Power comes from the energy table (printed with its sources): a 45 nm ASIC model (Horowitz, ISSCC 2014) with static
power and clock energy from each design's own resources, not a measurement of the FPGA, so every energy column says
"45nm_asic_model". DSPs come from the synthesized RTL. Last, how the sparse/dense GOPS/W ratio moves when the
per-resource static and clock figures are halved or quadrupled (hardware_sensitivity.csv).

    python benchmarks/hardware_figures.py --array 16x16 --clock-mhz 200
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from dataclasses import replace  # noqa: E402

from _common import RESULTS, print_table, publish, write_csv  # noqa: E402

from edgesparse.accel import AcceleratorConfig, parse_array  # noqa: E402
from edgesparse.accel.energy import ENERGY_MODEL, load_energy_table  # noqa: E402
from edgesparse.accel.metrics import pareto_front  # noqa: E402
from edgesparse.network_flow import compare_networks, resource_sensitivity, sweep  # noqa: E402

MODELLED = ("energy_mj", "power_w", "gops_per_w", "gops_per_w_vs_dense")  # from the 45 nm ASIC energy model
COLUMNS = ["model", "array", "pattern", "pixels_per_cycle", "fps", "speedup_vs_dense", "pe_utilization",
           "effective_gops", "actual_gops", "energy_mj", "power_w", "gops_per_w", "gops_per_w_vs_dense", "dsps",
           "gops_per_dsp", "gops_per_dsp_vs_dense", "luts", "ffs", "resource_source"]


def _row(figures, dense, lanes: int) -> dict:
    row = {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.as_row().items()}
    return {**{k: row[k] for k in COLUMNS if k in row}, "pixels_per_cycle": lanes,
            "speedup_vs_dense": round(dense.cycles / figures.cycles, 3),
            "gops_per_w_vs_dense": round(figures.gops_per_w / dense.gops_per_w, 3),
            "gops_per_dsp_vs_dense": round(figures.gops_per_dsp / dense.gops_per_dsp, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--array", default="16x16")
    parser.add_argument("--clock-mhz", type=float, default=200.0)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--sweep-arrays", nargs="+", default=["8x8", "16x16", "32x32"])
    parser.add_argument("--sweep-patterns", nargs="+", default=["dense", "1:4", "1:8", "1:16"])
    args = parser.parse_args()
    rows_, cols = parse_array(args.array)
    table = load_energy_table()
    base = AcceleratorConfig(rows_, cols, 16, 1, args.clock_mhz)
    print(f"energy table {table.path}:")
    print_table(["action", "energy", "status", "source"], table.rows(base))
    rows = []
    designs = [("classic", replace(base, pixels_per_cycle=1, classic=True)),
               ("classic", replace(base, pixels_per_cycle=2, classic=True)),
               ("pipelined, 4 segments", replace(base, pixels_per_cycle=2, segments=4))]
    for name, config in designs:
        for pair in compare_networks(args.models, config, table, progress=True):
            rows += [{"design": name, **_row(figures, pair.dense, config.pixels_per_cycle)}
                     for figures in (pair.sparse, pair.dense)]
    design = designs[-1][1]
    points = sweep(args.models[0], [parse_array(a) for a in args.sweep_arrays], args.sweep_patterns, design, table,
                   progress=True)
    sweep_rows = [{"model": p.model, "array": p.array, "pattern": p.pattern, "fps": round(p.fps, 3),
                   "gops_per_w_45nm_asic_model": round(p.gops_per_w, 1), "gops_per_dsp": round(p.gops_per_dsp, 3), "dsps": p.dsps,
                   "pareto": on} for p, on in zip(points, pareto_front(points))]
    write_csv(RESULTS / "hardware_sweep.csv", list(sweep_rows[0]), sweep_rows)
    print_table(list(sweep_rows[0]), sweep_rows)
    sensitivity = [row for name in args.models for row in resource_sensitivity(name, design, table)]
    publish("hardware_sensitivity", sensitivity, energy_model=ENERGY_MODEL,
            note="per-resource static power and clock energy (energy.toml [resource.*]) scaled by resource_factor")
    rows = [{"design": row["design"], **{f"{k}_45nm_asic_model" if k in MODELLED else k: row[k] for k in COLUMNS}}
            for row in rows]
    publish("hardware_figures", rows, energy_model=ENERGY_MODEL, energy_table=table.rows(base),
            energy_sources=table.sources, sweep=sweep_rows,
            targets="VGG16-224 1:16 on 16x16 @ 200 MHz: effective GOPS/DSP >= 5")


if __name__ == "__main__":
    main()
