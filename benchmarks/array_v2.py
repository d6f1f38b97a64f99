"""The pipelined array (shadow weights, segments, on-chip maps, batch) against the classic array, and both against
the frame bound, for VGG16-224 and ResNet50-224 at the report's headline configuration.

Headline: 16x16, 1:16 (first conv dense), 2 pixels per cycle, 200 MHz (assumed, not placed and routed), 16 DRAM
bytes per cycle, buffers 64 / 512 / 256 KiB. "before" is the classic array (what main ran before issue 10);
"after" the pipelined array with 4 segments. Cycles are modelled (the analytic schedule, which the stepped array
equals on every tested layer); the bound comes from layer shapes alone (:mod:`edgesparse.accel.bound`).

    python benchmarks/array_v2.py            # array_v2.csv / .json and array_v2_layers.csv
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from _common import RESULTS, publish, write_csv  # noqa: E402

from edgesparse.accel import AcceleratorConfig  # noqa: E402
from edgesparse.accel.simulate import simulate  # noqa: E402
from edgesparse.accel.bound import layer_bound  # noqa: E402
from edgesparse.export_flow import export_random  # noqa: E402


def designs(batch: int) -> dict[str, AcceleratorConfig]:
    base = dict(rows=16, cols=16, m=16, n=1, clock_mhz=200.0, pixels_per_cycle=2, batch=batch)
    return {"before (classic)": AcceleratorConfig(**base, classic=True),
            "after (pipelined)": AcceleratorConfig(**base, segments=4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--vgg16-batch", type=int, default=4, help="the extra batch run of VGG16 [4]")
    args = parser.parse_args()
    rows, layers = [], []
    runs = [(name, 1) for name in args.models] + ([("vgg16", args.vgg16_batch)] if "vgg16" in args.models else [])
    for name, batch in runs:
        graph = export_random(name, "1:16", input_size=224, calibration_images=1)
        for design, config in designs(batch).items():
            figures = {}
            for array, chosen in (("1:16", config), ("dense twin", config.dense_twin())):
                result = simulate(graph, chosen, "analytic")
                bounds = {layer.name: layer_bound(layer.schedule.shape, chosen) for layer in result.layers
                          if layer.schedule is not None}
                bound = sum(b.cycles for b in bounds.values())
                figures[array] = result
                rows.append({"model": f"{name}-224", "batch": batch, "design": design, "array": array,
                             "cycles": result.total_cycles, "fps": round(result.fps, 2),
                             "dram_mb_per_frame": round(result.dram_bytes / 1e6, 2),
                             "bound_fps": round(chosen.batch * chosen.clock_mhz * 1e6 / bound, 2),
                             "fraction_of_bound": round(bound / result.total_cycles, 3), "speedup_vs_dense": ""})
                if design.startswith("after") and batch == 1:
                    layers += [{"model": f"{name}-224", "array": array, "layer": layer.name,
                                "cycles": layer.cycles, "bound_cycles": round(bounds[layer.name].cycles),
                                "compute_bound": round(bounds[layer.name].compute_cycles),
                                "dram_bound": round(bounds[layer.name].dram_cycles),
                                "dram_bytes": layer.dram_bytes,
                                "input_resident": layer.schedule.shape.input_resident}
                               for layer in result.layers if layer.schedule is not None]
            rows[-2]["speedup_vs_dense"] = round(figures["1:16"].fps / figures["dense twin"].fps, 2)
    publish("array_v2", rows, clock="200 MHz assumed (modelled cycles x assumed clock)",
            buffers_kib={"weight": 64, "input": 512, "output": 256}, dram_bytes_per_cycle=16)
    write_csv(RESULTS / "array_v2_layers.csv", list(layers[0]), layers)


if __name__ == "__main__":
    main()
