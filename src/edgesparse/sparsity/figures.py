"""Checking a model against its patterns, and the exact compression figures per layer and in total.

Figures count Conv2d/Linear weights (biases and BatchNorm are reported by the packed-model inspector).
``compression`` is dense weights over stored weight slots; ``index_ratio`` is index bytes over dense int8 bytes,
so the default 1:16 gives exactly 16.0 and 1/32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction

from torch import nn

from edgesparse.errors import PatternError
from edgesparse.sparsity.masking import dense_weight, prunable_layers, sparse_mask_of
from edgesparse.pattern import DensePattern


@dataclass(frozen=True)
class LayerFigures:
    """Exact storage figures of one layer."""

    name: str
    shape: tuple[int, ...]
    pattern: str
    dense_weights: int
    kept_weights: int
    index_bits: int

    @property
    def compression(self) -> float:
        return self.dense_weights / self.kept_weights if self.kept_weights else float("inf")

    @property
    def index_ratio(self) -> Fraction:
        """Index bytes over the dense int8 bytes of the layer."""
        return Fraction(self.index_bits, 8 * self.dense_weights)

    def as_row(self) -> dict:
        row = asdict(self)
        row.update(compression=self.compression, index_bytes=self.index_bits / 8, index_ratio=float(self.index_ratio))
        return row


def verify_pattern(model: nn.Module) -> list[str]:
    """Check every masked layer follows its final pattern exactly; return the names checked.

    Raises :class:`PatternError` naming the first layer (and block) that breaks its pattern.
    """
    checked = []
    for name, module in prunable_layers(model):
        holder = sparse_mask_of(module)
        if holder is None:
            continue
        problem = holder.pattern.check(holder.mask)
        if problem is not None:
            raise PatternError(f"layer {name!r} does not follow pattern {holder.pattern}: {problem}")
        checked.append(name)
    return checked


def layer_figures(model: nn.Module) -> list[LayerFigures]:
    """Figures for every Conv2d/Linear layer; unmasked layers count as dense."""
    rows = []
    for name, module in prunable_layers(model):
        holder = sparse_mask_of(module)
        pattern = holder.pattern if holder is not None else DensePattern()
        shape = dense_weight(module).shape
        rows.append(LayerFigures(
            name=name, shape=tuple(shape), pattern=str(pattern), dense_weights=dense_weight(module).numel(),
            kept_weights=pattern.kept_slots(shape, holder.mask if holder is not None else None),
            index_bits=pattern.index_bits(shape)))
    return rows


def total_figures(rows: list[LayerFigures], pattern: str | None = None) -> LayerFigures:
    """Sum of ``rows`` (only those with ``pattern`` when given)."""
    chosen = [r for r in rows if pattern is None or r.pattern == pattern]
    return LayerFigures(
        name="total" if pattern is None else f"total {pattern}", shape=(), pattern=pattern or "mixed",
        dense_weights=sum(r.dense_weights for r in chosen), kept_weights=sum(r.kept_weights for r in chosen),
        index_bits=sum(r.index_bits for r in chosen))


def format_figures(rows: list[LayerFigures]) -> str:
    """A fixed-width table of per-layer figures followed by the totals."""
    header = f"{'layer':<28} {'pattern':<12} {'dense':>10} {'kept':>10} {'ratio':>7} {'index B':>10} {'idx/int8':>9}"
    lines = [header, "-" * len(header)]
    totals = [total_figures(rows, p) for p in sorted({r.pattern for r in rows})] + [total_figures(rows)]
    for row in rows + totals:
        lines.append(f"{row.name:<28} {row.pattern:<12} {row.dense_weights:>10,} {row.kept_weights:>10,} "
                     f"{row.compression:>6.2f}x {row.index_bits / 8:>10,.0f} {str(row.index_ratio):>9}")
    return "\n".join(lines)
