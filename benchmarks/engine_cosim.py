"""The layer engine (:mod:`edgesparse.rtl.engine`) co-simulated in Amaranth's simulator on chains of layers, against
the integer reference (every byte of every map written to DRAM) and the cycle model (the absolute cycle of every
output-buffer write from the first DMA request, and the run's last cycle), at two DRAM rates.

- ``trained``: the first weighted layers of the trained Fashion-MNIST demo model (``runs/demo/model.packed``, made
  by ``make demo``): ``features.0`` (a padded 3x3 conv of the 1-channel image), ``features.3`` with the 2x2 max pool
  it hosts (``features.6``), then ``features.7``, chained through DRAM, on test images quantized as the model's
  integer graph takes them; on a 4x4 array built for M = 32 (the demo's per-layer patterns 14:32, 10:32 select
  from 32-wide blocks).
- ``classifier``: the model's last weighted layers, chained through DRAM: ``features.40`` with the 2x2 max pool and
  the flatten it hosts, then the linear classifier (8:16, no requantization: int32 logits), from the integer
  reference's ``features.37`` map of the same test images.
- ``strided``: a random 1:16 3x3 stride-2 conv on a 4x4 array built for 1:16.
- ``averaged``: a global average pool (:func:`~edgesparse.rtl.engine_driver.averaged_chain`): two random 1:16
  padded 3x3 convs, the second's map averaged whole by the output stage, then a linear classifier writing int32
  logits, on a 4x4 array built for 1:16 with every map in DRAM.
- ``residual``: a random 1:16 residual block (:func:`~edgesparse.rtl.engine_driver.residual_chain`): a map two layers
  back read from DRAM beside each tile's input rows and added to the block's requantized bytes in the output
  stream, then a 1x1 conv, on 8x8 maps in four tiles, on the ``averaged`` case's array.
- ``head``: ResNet's last block in small: the block's sum averaged whole, then the int32 logits.
- ``resident``, ``resident_block``, ``resident_head``: the ``chain`` of :func:`~edgesparse.rtl.engine_driver.
  random_chain` (a padded 3x3 conv, a 3x3 conv with a 2x2 max pool, a 1x1 stride-2 conv), the ``residual`` and the
  ``head`` cases with the residency plan on (``resident_maps``, a 16 KiB input buffer): every map but the network's
  input and its last stays on chip, in the output buffer, which the next layer's feeders (and the add, for its
  operand) read; no transfer moves those maps. A resident map's bytes are read from the buffer as its layer ends.
  ``streamed``, ``streamed_block``, ``streamed_head``: the same three on the same array with every map in DRAM.
- ``demo``: the whole demo model, its 14 weighted layers (and the max pools, flatten and ReLUs they host) one after
  another through DRAM, from the quantized test image to the int32 logits, on the ``trained`` case's array with
  every map in DRAM (``resident_maps`` off: the engine holds no map on chip), about 388k cycles an image.
- ``demo_resident``: the same with the residency plan on (the ``trained`` array's 12 KiB input buffer): the maps it
  keeps on chip stay in the engine's output buffer.

    python benchmarks/engine_cosim.py [--cases trained classifier strided averaged residual head resident
                                      resident_block resident_head streamed streamed_block streamed_head]
                                      [--rates 1.5 4.0]
                                      [--images 1]
    python benchmarks/engine_cosim.py --cases demo --rates 4.0 --images 2 --first-image 2   # images 2 and 3

Writes results/engine_cosim.csv and .json (rows of other cases, rates and images already there are kept): per case,
rate and image, the cycles (engine and cycle model), the stall cycles (the model's, between folds after each
layer's first), whether every byte and write cycle agreed, the simulation's wall time, and ``rtl``: the revision the
row ran on (the last commit that changed the engine or the cycle model, "+changes" if the tree differed), as rows
kept from earlier runs may predate the current RTL.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import RESULTS, publish, source_revision

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.simulate import simulate
from edgesparse.data.arrays import iterate_batches
from edgesparse.data.registry import load_dataset
from edgesparse.pack.packed import load_packed
from edgesparse.quant.graph import INPUT, IntGraph
from edgesparse.quant.reference import quantize_input, run_graph
from edgesparse.rtl.engine_driver import (averaged_chain, check_engine, engine_program, random_chain, random_conv,
                                          residual_chain, run_engine)

TRAINED_OPS = 4  # features.0, features.3, features.6 (its pool), features.7
TRAINED_ARRAY = AcceleratorConfig(rows=4, cols=4, m=32, n=1, weight_buffer_kib=0.5, input_buffer_kib=12.0,
                                  output_buffer_kib=2.0)


def quantized_test_images(graph: IntGraph, images: int, first: int = 0) -> list[np.ndarray]:
    """Test images ``[first, first + images)`` quantized as ``graph`` takes them."""
    normalized, _ = next(iterate_batches(load_dataset("fashion_mnist", "test"), first + images, shuffle=False,
                                         drop_last=False))
    return list(quantize_input(graph, normalized[first:]))


def trained_case(model: Path, images: int) -> tuple[IntGraph, AcceleratorConfig, list[np.ndarray]]:
    graph = load_packed(model)
    chain = IntGraph(graph.input_shape, graph.input_scale, graph.input_mean, graph.input_std,
                     graph.ops[:TRAINED_OPS], graph.scales, graph.patterns)
    return chain, TRAINED_ARRAY, quantized_test_images(chain, images)


def classifier_case(model: Path, images: int) -> tuple[IntGraph, AcceleratorConfig, list[np.ndarray]]:
    graph = load_packed(model)
    first = next(k for k, op in enumerate(graph.ops) if op.name == "features.40")
    source = graph.ops[first].inputs[0]
    tail = [replace(op, inputs=[INPUT if name == source else name for name in op.inputs]) for op in graph.ops[first:]]
    chain = IntGraph(graph.shapes()[source], graph.input_scale, graph.input_mean, graph.input_std, tail, graph.scales,
                     graph.patterns)
    images_in = quantized_test_images(graph, images)
    maps = run_graph(graph, np.stack(images_in), keep=True)[source]
    config = replace(TRAINED_ARRAY, input_buffer_kib=1.0)
    return chain, config, list(maps)


def demo_case(model: Path, images: int, first: int,
              resident: bool = False) -> tuple[IntGraph, AcceleratorConfig, list[np.ndarray]]:
    graph = load_packed(model)
    return graph, replace(TRAINED_ARRAY, resident_maps=resident), quantized_test_images(graph, images, first)


def strided_case() -> tuple[IntGraph, AcceleratorConfig, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    cin, cout, size = 24, 12, 15
    op = random_conv(rng, "strided", INPUT, cin, cout, 3, 2, 1)
    graph = IntGraph((cin, size, size), 1.0, (0.0,) * cin, (1.0,) * cin, [op], {}, {"strided": "1:16"})
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=1, weight_buffer_kib=0.25, input_buffer_kib=4.0,
                               output_buffer_kib=0.5)
    return graph, config, [rng.integers(-128, 128, size=(cin, size, size)).astype(np.int8)]


SMALL_ARRAY = AcceleratorConfig(rows=4, cols=4, m=16, n=1, weight_buffer_kib=0.1, input_buffer_kib=2.0,
                                output_buffer_kib=0.25, resident_maps=False)


RESIDENT_ARRAY = replace(SMALL_ARRAY, input_buffer_kib=16.0, output_buffer_kib=0.5, resident_maps=True)
STREAMED_ARRAY = replace(RESIDENT_ARRAY, resident_maps=False)


def chain_case(graph: IntGraph, image: np.ndarray,
               config: AcceleratorConfig = SMALL_ARRAY) -> tuple[IntGraph, AcceleratorConfig, list[np.ndarray]]:
    return graph, config, [image]


def stall_cycles(graph: IntGraph, config: AcceleratorConfig) -> int:
    """Cycles the array waited between folds after each layer's first, by the cycle model."""
    total = 0
    for layer in simulate(graph, config, mode="analytic").layers:
        if layer.schedule is not None:
            gaps = np.diff(layer.schedule.starts) - np.maximum(layer.schedule.fold_lengths[:-1], config.rows)
            total += int(gaps.sum())
    return total


RTL_SOURCES = ("src/edgesparse/rtl", "src/edgesparse/accel")  # the engine and the cycle model it is checked against

CASES = {"trained": lambda args: trained_case(args.model, args.images),
         "classifier": lambda args: classifier_case(args.model, args.images),
         "strided": lambda args: strided_case(),
         "averaged": lambda args: chain_case(*averaged_chain()),
         "residual": lambda args: chain_case(*residual_chain()),
         "head": lambda args: chain_case(*residual_chain(head=True)),
         "resident": lambda args: chain_case(*random_chain(), RESIDENT_ARRAY),
         "resident_block": lambda args: chain_case(*residual_chain(), RESIDENT_ARRAY),
         "resident_head": lambda args: chain_case(*residual_chain(head=True), RESIDENT_ARRAY),
         "streamed": lambda args: chain_case(*random_chain(), STREAMED_ARRAY),
         "streamed_block": lambda args: chain_case(*residual_chain(), STREAMED_ARRAY),
         "streamed_head": lambda args: chain_case(*residual_chain(head=True), STREAMED_ARRAY),
         "demo": lambda args: demo_case(args.model, args.images, args.first_image),
         "demo_resident": lambda args: demo_case(args.model, args.images, args.first_image, resident=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["trained", "classifier", "strided"], choices=list(CASES))
    parser.add_argument("--rates", type=float, nargs="+", default=[1.5, 4.0], help="DRAM bytes per cycle")
    parser.add_argument("--images", type=int, default=1, help="test images of the trained and demo cases")
    parser.add_argument("--first-image", type=int, default=0, help="the demo case's first test image")
    parser.add_argument("--model", type=Path, default=Path("runs/demo/model.packed"))
    args = parser.parse_args()
    rows = []
    for case in args.cases:
        graph, base, images = CASES[case](args)
        for rate in args.rates:
            config = AcceleratorConfig(**{**base.__dict__, "dram_bytes_per_cycle": rate})
            for number, image in enumerate(images, start=args.first_image if case.startswith("demo") else 0):
                program = engine_program(graph, config, image)
                started = time.perf_counter()
                record = run_engine(program)
                wall = time.perf_counter() - started
                check_engine(program, record)  # raises on the first byte or cycle that differs
                rows.append({"case": case, "layers": " ".join(program.names), "array": config.describe(),
                             "rate_bytes_per_cycle": rate, "image": number, "engine_cycles": record.cycles,
                             "model_cycles": program.expected_cycles, "stall_cycles": stall_cycles(graph, config),
                             "writes": len(record.writes), "map_bytes": sum(len(out) for out in record.outputs),
                             "maps_on_chip": len(program.resident),
                             "dram_bytes": sum(transfer.size for transfer in program.transfers),
                             "bytes_equal": True, "write_cycles_equal": True, "wall_s": round(wall, 1),
                             "cycles_per_s": round(record.cycles / wall, 1),
                             "rtl": source_revision(*RTL_SOURCES)})
                print(rows[-1], flush=True)
    # Rows of cases, rates or images not run this time stay as they were (each row keeps its own wall time).
    done = {(row["case"], row["rate_bytes_per_cycle"], row["image"]) for row in rows}
    kept = [row for row in read_rows() if (row["case"], row["rate_bytes_per_cycle"], row["image"]) not in done]
    publish("engine_cosim", kept + rows, simulator="Amaranth pysim")


def read_rows() -> list[dict]:
    path = RESULTS / "engine_cosim.json"
    return json.loads(path.read_text())["rows"] if path.exists() else []


if __name__ == "__main__":
    main()
