"""The accelerator's memory image: packed weights in the order the array's DMA reads them, and a layout.

For every weighted layer, folds come in schedule order (column fold outer, row fold inner; the DMA reads the
same folds again for every pixel tile). A fold is R *row words*, bottom row first, because the first row shifted in
from the top ends at the bottom. A row word is the row's C int8 values (columns 0..C-1) followed by its C indices
bit-packed at ``B = ceil(log2 M)`` bits (little-endian, as in the packed model; none for M = 1), padded to whole
bytes: :attr:`~edgesparse.accel.config.AcceleratorConfig.row_word_bytes`, the word the weight loader reads per
cycle. PEs without a slot hold value 0 and index 0. After a layer's folds: its int32 bias, requantization
mantissas and shifts (little-endian). The layout (JSON) gives every offset and size, so a testbench can load a fold
without knowing the format. On the pipelined array the image comes with the layers' descriptors
(:mod:`edgesparse.accel.descriptor`), what the engine's controller reads to run each layer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.descriptor import WORDS, LayerDescriptor, describe_network
from edgesparse.accel.geometry import fold_geometry
from edgesparse.accel.mapping import LoweredLayer, lower
from edgesparse.accel.simulate import plan_network
from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.pack.blocks import pack_bits, unpack_bits
from edgesparse.quant.graph import IntGraph

LAYOUT_VERSION = 2


def fold_words(layer: LoweredLayer, config: AcceleratorConfig, col_fold: int, row_fold: int) -> bytes:
    """One fold's R row words, bottom row first (the order rows shift in)."""
    R, C = config.rows, config.cols
    rows = slice(row_fold * R, min(layer.rows_needed, (row_fold + 1) * R))
    columns = slice(col_fold * C, min(layer.cout, (col_fold + 1) * C))
    values = np.zeros((R, C), dtype=np.int8)
    index = np.zeros((R, C), dtype=np.int64)
    values[:rows.stop - rows.start, :columns.stop - columns.start] = layer.values[rows, columns]
    index[:rows.stop - rows.start, :columns.stop - columns.start] = layer.index[rows, columns]
    packed = np.stack([pack_bits(row, config.index_bits) for row in index[::-1]])
    return np.concatenate([values[::-1].view(np.uint8), packed], axis=1).tobytes()


def build_memory_image(graph: IntGraph, config: AcceleratorConfig) -> tuple[bytes, dict[str, Any]]:
    """The image bytes and their layout description."""
    chunks: list[bytes] = []
    offset, fold_bytes = 0, config.fold_weight_bytes
    layers = []
    for op, shape in plan_network(graph, config):
        if shape is None:
            continue
        layer = lower(op, graph.patterns.get(op.name), config)
        geometry = fold_geometry(shape, config)
        row_folds, col_folds = geometry.row_folds, geometry.col_folds
        entry = {"name": op.name, "kind": op.kind, "weights_offset": offset, "row_folds": row_folds,
                 "col_folds": col_folds, "rows_needed": layer.rows_needed, "cout": layer.cout, "cin": layer.cin,
                 "kernel": list(layer.kernel), "stride": list(layer.stride), "padding": list(layer.padding),
                 "slots": layer.slots, "blocks": layer.blocks, "fold_bytes": fold_bytes}
        chunks += [fold_words(layer, config, col_fold, row_fold)
                   for col_fold in range(col_folds) for row_fold in range(row_folds)]
        offset += row_folds * col_folds * fold_bytes
        entry["params_offset"] = offset
        for key in ("bias", "m", "shift"):
            if key in op.arrays:
                data = op.arrays[key].astype("<i4").tobytes()
                entry[f"{key}_offset"] = offset
                chunks.append(data)
                offset += len(data)
        entry["relu"] = op.relu
        entry["requant"] = op.requant
        layers.append(entry)
    layout = {"version": LAYOUT_VERSION, "array": {"rows": config.rows, "cols": config.cols, "m": config.m,
                                                   "n": config.n, "index_bits": config.index_bits},
              "fold": {"row_word_bytes": config.row_word_bytes, "bytes": fold_bytes,
                       "order": "column fold outer, row fold inner; R row words, bottom row (R-1) to top (0); a row "
                                "word: C int8 values (columns 0..C-1), then C indices bit-packed little-endian at "
                                "index_bits bits, padded to whole bytes"},
              "total_bytes": offset, "layers": layers}
    return b"".join(chunks), layout


def read_fold(image: bytes, layout: dict[str, Any], layer: str, col_fold: int,
              row_fold: int) -> tuple[np.ndarray, np.ndarray]:
    """Values and indices ``[R, C]`` (top row first) of one fold, read back through the layout."""
    entry = next(e for e in layout["layers"] if e["name"] == layer)
    rows, cols, bits = layout["array"]["rows"], layout["array"]["cols"], layout["array"]["index_bits"]
    word = layout["fold"]["row_word_bytes"]
    start = entry["weights_offset"] + (col_fold * entry["row_folds"] + row_fold) * entry["fold_bytes"]
    words = np.frombuffer(image, dtype=np.uint8, count=rows * word, offset=start).reshape(rows, word)[::-1]
    values = words[:, :cols].view(np.int8)
    index = np.stack([unpack_bits(row[cols:].copy(), bits, cols) for row in words])
    return values.copy(), index


def write_memory_image(graph: IntGraph, config: AcceleratorConfig, folder: str | Path) -> dict[str, Any]:
    """Write ``weights.bin``, ``layout.json`` and (pipelined array) ``descriptors.bin`` into ``folder``
    atomically; return the layout."""
    image, layout = build_memory_image(graph, config)
    folder = Path(folder)
    if not config.classic:
        descriptors = describe_network(graph, config, layout)
        layout["descriptors"] = {"file": "descriptors.bin", "layers": len(descriptors), "words": WORDS,
                                 "fields": [field.name for field in dataclasses.fields(LayerDescriptor)]}
        atomic_write_bytes(folder / "descriptors.bin", b"".join(d.encode() for d in descriptors))
    atomic_write_bytes(folder / "weights.bin", image)
    atomic_write_bytes(folder / "layout.json", (json.dumps(layout, indent=2) + "\n").encode())
    return layout
