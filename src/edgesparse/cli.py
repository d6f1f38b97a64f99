"""The ``edgesparse`` command line: train, figures, export, inspect, simulate, report and rtl.

A command is one ``_add_<command>_parser(commands)`` that declares its flags and one ``_cmd_<command>(args)`` that runs
it; :func:`build_parser` calls each adder. The array's flags are declared once (:func:`_add_array_flags`). Every
command that prints figures takes ``--json`` and prints the same figures as JSON (:func:`_emit`). Modules are
imported inside the commands, so ``edgesparse --help`` loads neither torch nor the hardware tools.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # torch's busy-waiting starves shared CPUs; set before import

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

from edgesparse.config import config_fields, load_config  # noqa: E402
from edgesparse.errors import EdgesparseError  # noqa: E402
from edgesparse.fpga_flow import add_parser as add_fpga_parser  # noqa: E402


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)
    parse.__name__ = kind.__name__
    return parse


def _override_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected LAYER_GLOB=PATTERN, got {text!r}")
    glob, pattern = text.split("=", 1)
    return glob.strip(), pattern.strip()


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per TrainConfig field, with the field's help text; unset flags leave the config alone."""
    group = parser.add_argument_group("training settings (override the config file; defaults in brackets)")
    for f in config_fields():
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if callable(f.default_factory) else f.default
        helptext = f"{f.metadata['help']} [{default}]"
        if f.name == "overrides":
            group.add_argument("--override", dest="overrides", action="append", type=_override_pair,
                               metavar="GLOB=PATTERN", help=helptext)
            continue
        kinds = [t for t in getattr(f.type, "__args__", (f.type,)) if t is not type(None)]
        kind = kinds[0]
        parse = _bool if kind is bool else (_optional(kind) if len(kinds) < len(getattr(f.type, "__args__", ())) else kind)
        group.add_argument(flag, dest=f.name, type=parse, default=None, metavar=kind.__name__.upper(), help=helptext)


def _config_from_args(args: argparse.Namespace) -> Any:
    values = {f.name: getattr(args, f.name) for f in config_fields()}
    if values.get("overrides") is not None:
        values["overrides"] = dict(values["overrides"])
    return load_config(args.config, **values)


def _emit(args: argparse.Namespace, figures: dict[str, Any], text: str) -> None:
    """Print ``figures`` as JSON under ``--json``, else ``text`` (which the command renders from the same figures)."""
    print(json.dumps(figures, indent=2) if args.json else text)


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of text")


PIXELS_HELP = ("pixels each PE takes per cycle: 2 selects both with its one index and packs both int8 products into "
               "one DSP48 multiplier (the design's default); 1 is the classic array SCALE-Sim models [2]")


def _add_array_flags(parser: argparse.ArgumentParser, *, array: str, pattern: str | None, pattern_help: str,
                     clock: bool = True, memories: bool = False, batch: bool = True) -> None:
    """The array's flags, declared once for every command that builds an array (simulate, report, rtl)."""
    from edgesparse.accel.config import AcceleratorConfig

    defaults = AcceleratorConfig()
    group = parser.add_argument_group("the array")
    group.add_argument("--array", default=array, help=f"array size RxC [{array}]")
    group.add_argument("--pattern", default=pattern, help=pattern_help)
    if clock:
        group.add_argument("--clock-mhz", type=float, default=defaults.clock_mhz,
                           help=f"clock [{defaults.clock_mhz:g}]")
    group.add_argument("--pixels-per-cycle", type=int, choices=[1, 2], default=2, help=PIXELS_HELP)
    group.add_argument("--classic", action="store_true",
                       help="the classic weight-stationary array (SCALE-Sim's): every fold loads its weights, "
                            "streams, fills and drains; no shadow registers, segments or on-chip maps")
    group.add_argument("--segments", type=int, default=None,
                       help="cut the partial-sum chain every R/S rows, so folds of few rows run S segments side "
                            "by side on their own pixels [4, or the largest power of two up to 4 dividing R; 1 "
                            "with --classic]")
    if batch:
        group.add_argument("--batch", type=int, default=1,
                           help="images per frame; every fold of weights serves all of them [1]")
    if memories:
        for name, text in (("weight_buffer_kib", "weight buffer (double-buffered folds)"),
                           ("input_buffer_kib", "input buffer (double-buffered tiles)"),
                           ("output_buffer_kib", "output buffer (a tile's int32 partial sums)"),
                           ("dram_bytes_per_cycle", "DRAM bandwidth")):
            default = getattr(defaults, name)
            group.add_argument("--" + name.replace("_", "-"), type=float, default=default,
                               help=f"{text} [{default:g}]")


def _array_config(args: argparse.Namespace, n: int, m: int, **fixed: Any) -> Any:
    """The AcceleratorConfig the flags of :func:`_add_array_flags` describe, for an array built for N:M; ``fixed``
    sets what a command does not take as a flag."""
    from edgesparse.accel.config import AcceleratorConfig, parse_array

    rows, cols = parse_array(args.array)
    segments = args.segments
    if segments is None:
        segments = 1 if args.classic else next(s for s in (4, 2, 1) if rows % s == 0)
    flags = {name: getattr(args, name) for name in ("clock_mhz", "batch", "weight_buffer_kib", "input_buffer_kib",
                                                    "output_buffer_kib", "dram_bytes_per_cycle") if hasattr(args, name)}
    return AcceleratorConfig(rows=rows, cols=cols, m=m, n=n, pixels_per_cycle=args.pixels_per_cycle,
                             classic=args.classic, segments=segments, **{**flags, **fixed})


def _add_train_parser(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a model from scratch with dynamic fine-grained pruning",
        description="Train from scratch with dynamic N:M pruning (masks recomputed on a cubic schedule, pruned "
                    "weights can return), then freeze the masks for a final fine-tune. Runs under torchrun for "
                    "DDP. Writes checkpoint.pt, metrics.jsonl, final.pt and summary.json into --out.")
    train.add_argument("--config", type=Path, help="TOML file of training settings (keys as the flags below, "
                                                   "with underscores)")
    train.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder of the run [runs/train]")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_json_flag(train)
    _add_config_flags(train)
    train.set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from edgesparse.sparsity.figures import format_figures, total_figures
    from edgesparse.train import train

    config = _config_from_args(args)
    result = train(config, args.out, resume=args.resume, progress=not args.no_progress and not args.json)
    if int(os.environ.get("RANK", "0")) == 0:
        figures = {"run": str(result.out_dir), "test_accuracy": result.test_accuracy,
                   "compression": result.compression, "index_ratio": result.index_ratio, "steps": result.steps,
                   "seconds": result.seconds, "layers": [r.as_row() for r in result.figures],
                   "total": total_figures(result.figures).as_row()}
        _emit(args, figures, f"{format_figures(result.figures)}\n"
                             f"test accuracy {figures['test_accuracy']:.4f}; weights {figures['compression']:.2f}x "
                             f"fewer; index {figures['index_ratio']:.5f} of dense int8; {figures['steps']} steps in "
                             f"{figures['seconds']:.0f} s; run in {figures['run']}")
    return 0


def _add_figures_parser(commands: Any) -> None:
    figures = commands.add_parser(
        "figures", help="per-layer compression figures of a trained run",
        description="Kept weights, compression, index bits and index bytes over dense int8 bytes, per layer and "
                    "in total, for a run folder or its final.pt / checkpoint.pt.")
    figures.add_argument("run", type=Path, help="run folder, final.pt or checkpoint.pt")
    _add_json_flag(figures)
    figures.set_defaults(handler=_cmd_figures)


def _cmd_figures(args: argparse.Namespace) -> int:
    from edgesparse.sparsity.figures import format_figures, layer_figures, total_figures
    from edgesparse.trained import load_trained

    rows = layer_figures(load_trained(args.run).model)
    _emit(args, {"layers": [r.as_row() for r in rows], "total": total_figures(rows).as_row()}, format_figures(rows))
    return 0


def _add_export_parser(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="quantize a trained run (or a random sparse model) to int8 and write the packed model",
        description="Fold BatchNorm, calibrate activation scales, quantize to int8 (weights per output channel, "
                    "activations per tensor) and write the packed model: kept int8 values, log2(M)-bit indices, "
                    "biases, requantization parameters and the integer graph, in a checksummed safetensors file.")
    export.add_argument("run", type=Path, nargs="?", help="run folder or final.pt of a trained model")
    export.add_argument("-o", "--output", type=Path, required=True, help="packed model file to write")
    export.add_argument("--calibration-batches", type=int, default=8, help="training batches used to calibrate [8]")
    export.add_argument("--batch-size", type=int, default=128, help="calibration batch size [128]")
    export.add_argument("--data-dir", help="dataset folder, if not the run's own")
    _add_json_flag(export)
    random = export.add_argument_group("random pattern-following weights instead of a run (hardware figures)")
    random.add_argument("--model", help="registered model name, e.g. vgg16 or resnet50")
    random.add_argument("--pattern", default="1:16", help="sparsity pattern of the masked layers")
    random.add_argument("--first-conv", default="dense", help="pattern of the first convolution")
    random.add_argument("--input-size", type=int, help="input height and width (default: the model's own)")
    random.add_argument("--num-classes", type=int, default=1000)
    random.add_argument("--in-chans", type=int, default=3)
    random.add_argument("--width", type=float, default=1.0)
    random.add_argument("--seed", type=int, default=0)
    export.set_defaults(handler=_cmd_export)


def _stored_figures(graph: Any) -> tuple[dict[str, Any], str]:
    """Per-layer and total stored bytes of a packed graph: the figures and their table."""
    from edgesparse.pack.inspect import format_stored, stored_layers, total_stored

    rows = stored_layers(graph)
    totals = {p: total_stored(rows, p).as_row() for p in sorted({r.pattern for r in rows})}
    figures = {"input_shape": list(graph.input_shape), "ops": len(graph.ops), "layers": [r.as_row() for r in rows],
               "totals_by_pattern": totals, "total": total_stored(rows).as_row()}
    return figures, format_stored(rows)


def _cmd_export(args: argparse.Namespace) -> int:
    from edgesparse.errors import ConfigError
    from edgesparse.export_flow import export_random, export_run
    from edgesparse.pack.packed import save_packed

    if (args.run is None) == (args.model is None):
        raise ConfigError("give either a trained RUN or --model NAME (random weights following --pattern)")
    if args.run is not None:
        graph = export_run(args.run, args.calibration_batches, args.batch_size, args.data_dir)
    else:
        graph = export_random(args.model, args.pattern, args.first_conv, args.input_size,
                              args.num_classes, args.in_chans, args.width, args.seed)
    size = save_packed(graph, args.output)
    figures, table = _stored_figures(graph)
    figures = {"model": str(args.output), "file_bytes": size, **figures}
    _emit(args, figures, f"{table}\nwrote {figures['model']}: {figures['file_bytes']:,} bytes, "
                         f"{figures['ops']} integer ops")
    return 0


def _add_inspect_parser(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect", help="what a packed model stores, per layer and in total",
        description="Validate a packed model and list, per layer and in total: kept weights, value bytes, index "
                    "bytes, scale bytes, and the ratios to the dense int8 and dense fp32 weights.")
    inspect.add_argument("model", type=Path, help="packed model file")
    _add_json_flag(inspect)
    inspect.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from edgesparse.pack.packed import load_packed

    figures, table = _stored_figures(load_packed(args.model))
    figures = {"model": str(args.model), "file_bytes": args.model.stat().st_size, **figures}
    _emit(args, figures, f"{table}\n{figures['model']}: {figures['file_bytes']:,} bytes, {figures['ops']} integer ops")
    return 0


def _add_simulate_parser(commands: Any) -> None:
    sim = commands.add_parser(
        "simulate", help="run a model on the sparse systolic array: cycles, FPS, utilization, DRAM traffic",
        description="Map every layer onto an R x C weight-stationary array whose PEs select their activation by "
                    "index, and report cycles, FPS, PE utilization, effective GOPS (2 x dense MACs x FPS: pruned "
                    "MACs counted, as the literature does) and actual GOPS. Modes: stepped (register level, "
                    "clock by clock: small layers), fast (every output computed bit-exact, cycles from the "
                    "schedule), analytic (closed form, no values).")
    sim.add_argument("packed", type=Path, nargs="?", metavar="MODEL", help="packed model file")
    sim.add_argument("--model", help="registered model with random weights that follow --pattern (e.g. vgg16)")
    sim.add_argument("--input-size", type=int, help="input height and width for --model (default: its own)")
    sim.add_argument("--first-conv", default="dense", help="pattern of the first convolution of --model")
    sim.add_argument("--mode", choices=["stepped", "fast", "analytic"], default="fast", help="simulation view [fast]")
    _add_array_flags(sim, array="16x16", pattern=None, memories=True,
                     pattern_help="N:M the array is built for (and --model's pattern); 'dense' is the classic "
                                  "array [the model's most common N:M]")
    sim.add_argument("--image-seed", type=int, default=0, help="seed of the random int8 input (stepped, fast)")
    sim.add_argument("--memory-image", type=Path, help="also write weights.bin and layout.json into this folder")
    _add_json_flag(sim)
    sim.set_defaults(handler=_cmd_simulate)


def _cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from edgesparse.accel.config import array_block
    from edgesparse.accel.energy import ENERGY_MODEL, load_energy_table
    from edgesparse.accel.memory_image import write_memory_image
    from edgesparse.accel.metrics import hardware_figures
    from edgesparse.accel.simulate import simulate
    from edgesparse.api import graph_block
    from edgesparse.errors import ConfigError
    from edgesparse.export_flow import export_random, shape_graph
    from edgesparse.pack.packed import load_packed

    if (args.packed is None) == (args.model is None):
        raise ConfigError("give either a packed MODEL file or --model NAME (random weights following --pattern)")
    if args.packed is not None:
        graph, label = load_packed(args.packed), str(args.packed)
    else:
        if args.mode == "analytic":  # cycles follow from shapes and the pattern: build no weights or activations
            graph = shape_graph(args.model, args.pattern or "1:16", args.first_conv, args.input_size)
        else:
            graph = export_random(args.model, args.pattern or "1:16", args.first_conv, args.input_size,
                                  calibration_images=1)
        label = f"{args.model}-{graph.input_shape[1]}"
    n, m = (array_block(args.pattern) or (1, 1)) if args.pattern else graph_block(graph)
    config = _array_config(args, n, m)
    image = None
    if args.mode != "analytic":
        images = (config.batch, *graph.input_shape) if config.batch > 1 else tuple(graph.input_shape)
        image = np.random.default_rng(args.image_seed).integers(-128, 128, images).astype(np.int8)
    result = simulate(graph, config, args.mode, image, progress=not args.json)
    figures = hardware_figures(label, result, load_energy_table())
    if args.memory_image:
        write_memory_image(graph, config, args.memory_image)
    rows_out = [layer.as_row(config) for layer in result.layers if layer.weighted]
    s = {"model": label, "pattern": "dense" if m == 1 else f"{n}:{m}", "array": f"{config.rows}x{config.cols}",
         "clock_mhz": config.clock_mhz, "mode": args.mode, "total_cycles": result.total_cycles,
         "fps": result.fps, "pe_utilization": result.pe_utilization, "effective_gops": result.effective_gops,
         "actual_gops": result.actual_gops, "dram_bytes": result.dram_bytes, "buffer_bytes": result.buffer_bytes(),
         "dense_macs": result.dense_macs, "real_macs": result.real_macs, "energy_model": ENERGY_MODEL,
         "energy_mj": figures.energy_mj, "power_w": figures.power_w, "gops_per_w": figures.gops_per_w,
         "dsps": figures.dsps, "gops_per_dsp": figures.gops_per_dsp, "resource_source": figures.resource_source,
         "layers": rows_out}
    header = f"{'layer':<28} {'kind':<6} {'folds':>7} {'cycles':>12} {'stalls':>10} {'util':>6} {'DRAM bytes':>12}"
    lines = [header, "-" * len(header)]
    for row in rows_out:
        lines.append(f"{row['name']:<28} {row['kind']:<6} {row['folds']:>7,} {row['cycles']:>12,} "
                     f"{row['stall_cycles']:>10,} {row['pe_utilization']:>6.3f} {row['dram_bytes']:>12,}")
    lines.append(f"{s['model']} on {config.describe()} ({s['mode']}): {s['total_cycles']:,} cycles, {s['fps']:.2f} FPS, "
                 f"PE utilization {s['pe_utilization']:.3f}, effective {s['effective_gops']:.1f} GOPS, actual "
                 f"{s['actual_gops']:.1f} GOPS, DRAM {s['dram_bytes'] / 1e6:.1f} MB per frame")
    lines.append(f"{s['energy_model']} (not a measurement): {s['energy_mj']:.3f} mJ per frame, {s['power_w']:.3f} W, "
                 f"{s['gops_per_w']:,.0f} effective GOPS/W; {s['dsps']} DSPs ({s['resource_source'].split(' (')[0]}), "
                 f"{s['gops_per_dsp']:.2f} effective GOPS/DSP")
    _emit(args, s, "\n".join(lines))
    return 0


def _add_report_parser(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="measure everything and write the report (Markdown + self-contained HTML with plots)",
        description="From a sparse training run (and optionally its dense baseline) and its packed model: accuracy "
                    "and compression, int8 accuracy on the test set, a bit-exact check of the accelerator against the "
                    "integer reference, the trained model's cycles and energy, VGG16/ResNet50 at 224 against the "
                    "same-size dense array and published designs, and a design-space sweep with its Pareto front. "
                    "Needs the [report] extra (matplotlib).")
    report.add_argument("sparse_run", type=Path, help="the sparse training run folder")
    report.add_argument("packed", type=Path, help="its packed model (edgesparse export)")
    report.add_argument("--dense-run", type=Path, help="a dense baseline run of the same model, for the comparison")
    report.add_argument("-o", "--output", type=Path, default=Path("runs/report"), help="report folder [runs/report]")
    _add_array_flags(report, array="16x16", pattern="1:16", pattern_help="N:M the array is built for [1:16]")
    report.add_argument("--networks", nargs="*", default=["vgg16", "resnet50"],
                        help="registered networks compared with the dense array and published designs [vgg16 resnet50]")
    report.add_argument("--network-pattern", default="1:16",
                        help="N:M of those networks (random weights that follow it; the first conv dense) [1:16]")
    report.add_argument("--sweep-model", default="vgg16", help="network of the design-space sweep [vgg16]")
    report.add_argument("--sweep-arrays", nargs="+", default=["8x8", "16x16", "32x32"], help="array sizes swept")
    report.add_argument("--sweep-patterns", nargs="+", default=["dense", "1:4", "1:8", "1:16"], help="patterns swept")
    report.add_argument("--no-sweep", action="store_true", help="skip the design-space sweep")
    report.add_argument("--test-images", type=int, default=2000, help="test images for the int8 accuracy [2000]")
    report.add_argument("--accuracy-csv", type=Path, default=Path("benchmarks/results/accuracy_patterns.csv"),
                        help="committed accuracy benchmark to plot beside this run (skipped if missing)")
    report.add_argument("--energy-table", type=Path, help="per-action energy table (TOML) [the packaged one]")
    report.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_json_flag(report)
    report.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from edgesparse.extras import require_extra

    require_extra("report", "edgesparse report")
    from edgesparse.accel.config import array_block, parse_array
    from edgesparse.report.collect import collect_report, format_summary
    from edgesparse.report.render import write_report

    n, m = array_block(args.pattern) or (1, 1)
    data = collect_report(args.sparse_run, args.dense_run, args.packed, _array_config(args, n, m),
                          networks=args.networks, network_pattern=args.network_pattern,
                          sweep_model=None if args.no_sweep else args.sweep_model,
                          sweep_arrays=[parse_array(a) for a in args.sweep_arrays],
                          sweep_patterns=args.sweep_patterns, test_images=args.test_images,
                          benchmark_csv=args.accuracy_csv, energy_table=args.energy_table,
                          progress=not args.no_progress and not args.json)
    paths = write_report(data, args.output)
    figures = {**data["summary"], "files": {kind: str(path) for kind, path in paths.items()}}
    _emit(args, figures, f"{format_summary(data['summary'])}\nreport: {paths['html']} (self-contained), "
                         f"{paths['markdown']}, {paths['json']}")
    return 0


def _add_rtl_parser(commands: Any) -> None:
    rtl = commands.add_parser(
        "rtl", help="generate the sparse array as synthesizable Verilog, with a self-checking testbench",
        description="Generate (Amaranth HDL) the sparse PE, the R x C array and a unit that runs it as Verilog, "
                    "plus a self-checking testbench on a random padded conv with expected sums and cycles from the "
                    "cycle-accurate simulator. Default: the pipelined array (shadow weights, segments) in the layer "
                    "unit (weight, length and stream memories and the controller that runs a layer's folds back to "
                    "back), checked on the whole layer; --classic: the classic fold unit, checked on one fold. "
                    "Needs the [hw] extra (Amaranth).")
    _add_array_flags(rtl, array="4x4", pattern="1:16", clock=False, batch=False,
                     pattern_help="N:M the PEs select for; 'dense' for the classic PE [1:16]")
    rtl.add_argument("--max-pixels", type=int, default=64,
                     help="pixels of the testbench layer (and, --classic, the fold unit's activation memory) [64]")
    rtl.add_argument("--seed", type=int, default=0, help="seed of the testbench's random layer [0]")
    rtl.add_argument("--engine", action="store_true",
                     help="the whole layer engine instead (DMA, buffers, feeders, array, output stage, controller; "
                          "one pixel lane, one segment), checked in Amaranth's simulator on three random layers "
                          "chained through DRAM against the integer reference and the cycle model")
    rtl.add_argument("-o", "--output", type=Path, required=True, help="folder for the Verilog and testbench")
    _add_json_flag(rtl)
    rtl.set_defaults(handler=_cmd_rtl)


def _cmd_rtl(args: argparse.Namespace) -> int:
    from edgesparse.extras import require_extra

    require_extra("hw", "edgesparse rtl")
    from edgesparse.accel.config import array_block
    from edgesparse.errors import ConfigError
    from edgesparse.rtl.cosim import random_layer

    n, m = array_block(args.pattern) or (1, 1)
    if m & (m - 1):
        raise ConfigError(f"the PE selects by a log2(M)-bit index: M must be a power of two, got {args.pattern}")
    if args.engine:
        return _write_engine_rtl(args, n, m)
    if args.max_pixels < 1:
        raise ConfigError(f"--max-pixels must be at least 1, got {args.max_pixels}")
    # The DMA is not part of the generated units: the pipelined one runs with every fold's weights present.
    config = _array_config(args, n, m, dram_bytes_per_cycle=1e9)
    size = max(3, min(8, int(args.max_pixels ** 0.5)))  # a padded 3x3 conv whose output fits the fold unit
    layer, x, plan = random_layer(config, n, m, cin=2 * m, cout=config.cols + 1, size=size, seed=args.seed)
    written = (_write_classic_rtl if config.classic else _write_pipelined_rtl)(args, config, layer, x, plan)
    bench = "tb_fold_unit.v fold_unit.v" if config.classic else "tb_layer_unit.v layer_unit.v"
    figures = {"design": config.describe(), "index_bits": config.index_bits, "files": [str(p) for p in written],
               "check": f"cd {args.output} && iverilog -g2012 -o tb {bench} && vvp tb"}
    _emit(args, figures, "\n".join(figures["files"]) + f"\n{figures['design']} (index {figures['index_bits']} bits). "
                                                        f"Check: {figures['check']}")
    return 0


def _write_engine_rtl(args: argparse.Namespace, n: int, m: int) -> int:
    """The layer engine sized for three random layers chained through DRAM, its Verilog (DRAM outside), and its
    co-simulation against the integer reference and the cycle model."""
    import time

    from edgesparse.accel.config import AcceleratorConfig, parse_array
    from edgesparse.rtl.engine_driver import check_engine, engine_program, random_chain, run_engine
    from edgesparse.rtl.verilog import engine_verilog, write_verilog

    rows, cols = parse_array(args.array)
    config = AcceleratorConfig(rows=rows, cols=cols, m=m, n=n, weight_buffer_kib=0.25, input_buffer_kib=2.0,
                               output_buffer_kib=0.5, dram_bytes_per_cycle=1.5)
    graph, image = random_chain(n, m, seed=args.seed)
    program = engine_program(graph, config, image)
    path = write_verilog(engine_verilog(program.size), args.output / "layer_engine.v")
    started = time.perf_counter()
    record = run_engine(program)
    check_engine(program, record)
    figures = {"design": f"{config.describe()}, layer engine", "files": [str(path)], "layers": program.names,
               "cycles": record.cycles, "writes": len(record.writes),
               "map_bytes": sum(len(output) for output in record.outputs),
               "cosim_seconds": round(time.perf_counter() - started, 1)}
    _emit(args, figures, f"{path}\n{figures['design']}: {len(program.names)} layers chained through DRAM, "
                         f"{figures['map_bytes']} map bytes and {figures['writes']} output writes equal to the "
                         f"integer reference and the cycle model; {record.cycles} cycles "
                         f"(co-simulated in {figures['cosim_seconds']} s)")
    return 0


def _write_classic_rtl(args: argparse.Namespace, config, layer, x, plan) -> list[Path]:
    """The classic fold unit (up to --max-pixels pixels per fold), its array and PE, and a one-fold testbench."""
    from edgesparse.rtl.cosim import layer_jobs
    from edgesparse.rtl.testbench import write_testbench
    from edgesparse.rtl.verilog import array_verilog, fold_unit_verilog, pe_verilog, write_verilog

    out, lanes = args.output, config.pixels_per_cycle
    written = [write_verilog(fold_unit_verilog(config.rows, config.cols, config.m, args.max_pixels, lanes),
                             out / "fold_unit.v"),
               write_verilog(array_verilog(config.rows, config.cols, config.m, lanes), out / "sparse_array.v"),
               write_verilog(pe_verilog(config.m, lanes), out / "sparse_pe.v")]
    return written + write_testbench(layer_jobs(layer, x, plan, config)[0], config, out, args.max_pixels)


def _write_pipelined_rtl(args: argparse.Namespace, config, layer, x, plan) -> list[Path]:
    """The pipelined layer unit (sized for the testbench layer's folds), its array and PE (the segment-top PE
    too when segments > 1), and a testbench running the whole layer back to back against clock_layer."""
    from edgesparse.accel.array import clock_layer
    from edgesparse.rtl.cosim import layer_program
    from edgesparse.rtl.testbench import write_layer_testbench
    from edgesparse.rtl.verilog import array_verilog, layer_unit_verilog, pe_verilog, write_verilog

    out, lanes, S = args.output, config.pixels_per_cycle, config.segments
    acc, cycles, clock = clock_layer(layer, x, plan.shape, config)
    program = layer_program(layer, x, plan.shape, config)
    written = [write_verilog(layer_unit_verilog(config.rows, config.cols, config.m, lanes, S, program.folds,
                                                len(program.stream_words)), out / "layer_unit.v"),
               write_verilog(array_verilog(config.rows, config.cols, config.m, lanes, pipelined=True, segments=S),
                             out / "sparse_array.v"),
               write_verilog(pe_verilog(config.m, lanes, pipelined=True), out / "sparse_pe.v")]
    if S > 1:
        written.append(write_verilog(pe_verilog(config.m, lanes, "sparse_pe_top", True, True),
                                     out / "sparse_pe_top.v"))
    return written + write_layer_testbench(program, config, (acc, cycles), int(clock.load_starts[0]), out)


def build_parser() -> argparse.ArgumentParser:
    """The ``edgesparse`` parser: one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="edgesparse",
        description="Fine-grained sparse int8 CNNs for a sparse systolic-array accelerator.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in (_add_train_parser, _add_figures_parser, _add_export_parser, _add_inspect_parser,
                       _add_simulate_parser, _add_report_parser, _add_rtl_parser, add_fpga_parser):
        add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except EdgesparseError as error:
        print(f"edgesparse: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesparse: interrupted (the last checkpoint is intact; --resume continues)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
