"""What a packed model stores, per layer and in total, against the dense int8 and dense fp32 weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgesparse.pack.packed import block_pattern_of, packed_tensors
from edgesparse.quant.graph import IntGraph


@dataclass(frozen=True)
class StoredLayer:
    """Bytes one weighted layer occupies in the packed file."""

    name: str
    pattern: str
    dense_weights: int
    kept_weights: int
    value_bytes: int
    index_bytes: int
    scale_bytes: int  # int32 bias + requantization parameters (or the logits' dequantization scales)

    @property
    def total_bytes(self) -> int:
        return self.value_bytes + self.index_bytes + self.scale_bytes

    def ratios(self) -> dict[str, float]:
        dense_int8 = self.dense_weights
        return {"vs_dense_int8": self.total_bytes / dense_int8, "vs_dense_fp32": self.total_bytes / (4 * dense_int8),
                "weights_vs_dense": self.kept_weights / dense_int8, "index_overhead": self.index_bytes / dense_int8}

    def as_row(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes, **self.ratios()}


def stored_layers(graph: IntGraph) -> list[StoredLayer]:
    """One row per conv/linear op of ``graph``."""
    tensors = packed_tensors(graph)
    rows = []
    for op in graph.ops:
        if not op.weighted:
            continue
        weight = op.arrays["weight"]
        pattern = block_pattern_of(graph, op)
        if pattern is not None:
            values, index = tensors[f"{op.name}.values"], tensors[f"{op.name}.index"]
            kept, value_bytes, index_bytes = values.size, values.nbytes, index.nbytes
        else:
            kept, value_bytes, index_bytes = weight.size, weight.nbytes, 0
        scale_bytes = sum(array.nbytes for key, array in op.arrays.items() if key != "weight")
        rows.append(StoredLayer(op.name, graph.patterns.get(op.name, "dense"), math.prod(weight.shape), kept,
                                value_bytes, index_bytes, scale_bytes))
    return rows


def total_stored(rows: list[StoredLayer], pattern: str | None = None) -> StoredLayer:
    chosen = [r for r in rows if pattern is None or r.pattern == pattern]
    return StoredLayer("total" if pattern is None else f"total {pattern}", pattern or "all",
                       *(sum(getattr(r, f) for r in chosen) for f in
                         ("dense_weights", "kept_weights", "value_bytes", "index_bytes", "scale_bytes")))


def format_stored(rows: list[StoredLayer]) -> str:
    """Fixed-width table: per layer, per pattern and whole-model totals."""
    header = (f"{'layer':<26} {'pattern':<8} {'dense w':>12} {'kept w':>11} {'values B':>11} {'index B':>10} "
              f"{'scales B':>9} {'w ratio':>8} {'idx/int8':>9} {'/int8':>7} {'/fp32':>7}")
    lines = [header, "-" * len(header)]
    totals = [total_stored(rows, p) for p in sorted({r.pattern for r in rows})] + [total_stored(rows)]
    for row in rows + totals:
        r = row.ratios()
        lines.append(f"{row.name:<26} {row.pattern:<8} {row.dense_weights:>12,} {row.kept_weights:>11,} "
                     f"{row.value_bytes:>11,} {row.index_bytes:>10,} {row.scale_bytes:>9,} "
                     f"{1 / max(r['weights_vs_dense'], 1e-12):>7.2f}x {_fraction(r['index_overhead']):>9} "
                     f"{r['vs_dense_int8']:>7.4f} {r['vs_dense_fp32']:>7.4f}")
    return "\n".join(lines)


def _fraction(value: float) -> str:
    """1/32-style when exact, else 4 decimals."""
    if value > 0 and abs(1 / value - round(1 / value)) < 1e-9:
        return f"1/{round(1 / value)}"
    return f"{value:.4f}"
