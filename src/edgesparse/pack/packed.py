"""The packed model file: a safetensors container of kept int8 values, packed indices, biases and requant
parameters, with the integer graph, a format version and a SHA-256 checksum in its metadata.

Tensors are named ``<op>.<array>``; a block-sparse weight is stored as ``<op>.values`` and ``<op>.index``
(:mod:`edgesparse.pack.blocks`) instead of ``<op>.weight``. Loading validates, in order: the container, the
format name and version, the checksum over the graph and every tensor (any flipped bit is caught here), then
structure (shapes, dtypes, patterns, index ranges) and the graph itself. Every failure raises
:class:`PackError` with a message naming what is wrong; nothing else escapes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_tensors
from safetensors.numpy import save as save_tensors

from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.errors import EdgesparseError, PackError
from edgesparse.pack.blocks import pack_block_weight, unpack_block_weight
from edgesparse.quant.graph import IntGraph, IntOp
from edgesparse.pattern import BlockPattern, parse_pattern

FORMAT = "edgesparse-packed"
VERSION = "1"


def _checksum(graph_json: str, tensors: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(graph_json.encode())
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def block_pattern_of(graph: IntGraph, op: IntOp) -> BlockPattern | None:
    """The N:M pattern an op's weight is packed with, if it has one."""
    spec = graph.patterns.get(op.name)
    if spec is None or not op.weighted:
        return None
    pattern = parse_pattern(spec)
    return pattern if isinstance(pattern, BlockPattern) else None


def packed_tensors(graph: IntGraph) -> dict[str, np.ndarray]:
    """Every tensor the file stores, block-sparse weights packed."""
    tensors = {}
    for op in graph.ops:
        pattern = block_pattern_of(graph, op)
        for key, array in op.arrays.items():
            if key == "weight" and pattern is not None:
                tensors[f"{op.name}.values"], tensors[f"{op.name}.index"] = pack_block_weight(array, pattern)
            else:
                tensors[f"{op.name}.{key}"] = np.ascontiguousarray(array)
    return tensors


def encode_packed(graph: IntGraph) -> bytes:
    """The packed file's bytes."""
    graph.validate()
    tensors = packed_tensors(graph)
    graph_json = json.dumps(graph.to_json(), sort_keys=True)
    metadata = {"format": FORMAT, "version": VERSION, "graph": graph_json,
                "sha256": _checksum(graph_json, tensors)}
    return save_tensors(tensors, metadata=metadata)


def save_packed(graph: IntGraph, path: str | Path) -> int:
    """Write the packed model atomically; return its size in bytes."""
    payload = encode_packed(graph)
    atomic_write_bytes(path, payload)
    return len(payload)


def _read_metadata(payload: bytes) -> dict[str, str]:
    if len(payload) < 8:
        raise PackError("file is too short to be a packed model")
    size = int.from_bytes(payload[:8], "little")
    if size > len(payload) - 8:
        raise PackError(f"header claims {size} bytes but only {len(payload) - 8} follow: the file is truncated")
    try:
        header = json.loads(payload[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackError(f"header is not valid JSON: {error}") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise PackError("header has no metadata: not an edgesparse packed model")
    return metadata


def decode_packed(payload: bytes, source: str = "packed model") -> IntGraph:
    """Parse and validate a packed model's bytes."""
    try:
        return _decode(payload)
    except PackError as error:
        raise PackError(f"{source}: {error}") from None
    except EdgesparseError as error:  # a structurally valid file describing an invalid graph
        raise PackError(f"{source}: invalid model: {error}") from None


def _decode(payload: bytes) -> IntGraph:
    metadata = _read_metadata(payload)
    if metadata.get("format") != FORMAT:
        raise PackError(f"format is {metadata.get('format')!r}, expected {FORMAT!r}")
    if metadata.get("version") != VERSION:
        raise PackError(f"format version {metadata.get('version')!r} is not supported (this reader: {VERSION})")
    try:
        tensors = load_tensors(payload)
    except (SafetensorError, ValueError, TypeError, OverflowError) as error:
        raise PackError(f"damaged container: {error}") from None
    graph_json = metadata.get("graph", "")
    if _checksum(graph_json, tensors) != metadata.get("sha256"):
        raise PackError("checksum mismatch: the file is damaged")
    try:
        description = json.loads(graph_json)
        return _rebuild(description, tensors)
    except EdgesparseError:
        raise  # already names the problem (decode_packed adds the source)
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # JSONDecodeError is a ValueError
        raise PackError(f"graph description is malformed: {type(error).__name__}: {error}") from None


def _rebuild(description: dict[str, Any], tensors: dict[str, np.ndarray]) -> IntGraph:
    graph = IntGraph(tuple(description["input_shape"]), float(description["input_scale"]),
                     tuple(description["input_mean"]), tuple(description["input_std"]), [],
                     {str(k): float(v) for k, v in description["scales"].items()},
                     {str(k): str(v) for k, v in description["patterns"].items()})
    used = set()
    for entry in description["ops"]:
        op = IntOp(str(entry["name"]), str(entry["kind"]), [str(i) for i in entry["inputs"]], dict(entry["attrs"]))
        pattern = block_pattern_of(graph, op)
        for key, shape in entry["arrays"].items():
            shape = tuple(int(s) for s in shape)
            if key == "weight" and pattern is not None:
                names = (f"{op.name}.values", f"{op.name}.index")
                missing = [n for n in names if n not in tensors]
                if missing:
                    raise PackError(f"tensor(s) {missing} missing")
                try:
                    op.arrays[key] = unpack_block_weight(tensors[names[0]], tensors[names[1]], shape, pattern)
                except PackError as error:
                    raise PackError(f"layer {op.name!r} ({pattern}): {error}") from None
                used.update(names)
                continue
            name = f"{op.name}.{key}"
            if name not in tensors:
                raise PackError(f"tensor {name!r} missing")
            if tensors[name].shape != shape:
                raise PackError(f"tensor {name!r} has shape {tensors[name].shape}, the graph says {shape}")
            op.arrays[key] = tensors[name]
            used.add(name)
        graph.ops.append(op)
    extra = sorted(set(tensors) - used)
    if extra:
        raise PackError(f"unexpected tensor(s) {extra}")
    graph.validate()
    return graph


def load_packed(path: str | Path) -> IntGraph:
    """Read and validate a packed model file."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as error:
        raise PackError(f"cannot read {path}: {error.strerror or error}") from None
    return decode_packed(payload, str(path))
