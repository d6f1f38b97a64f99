"""Sparsity patterns: how a layer's weights may be pruned, and the masks that realise a pattern (torch-free).

A weight is seen as ``W[Cout, Cin, *kernel]`` (a Linear layer is the 1x1 case). The project's pattern is
:class:`BlockPattern`: for every output filter and kernel position, the vector over ``Cin`` is cut into blocks of
``M`` consecutive channels (``Cin`` zero-padded to a multiple of ``M``) and every block keeps exactly ``N``
weights; ``G`` consecutive filters may share the kept positions. The baselines it is compared against are
:class:`UnstructuredPattern` (magnitude-style, per layer or global) and :class:`ChannelPattern` (whole input
channels, the same for every filter), both at a given compression.

Every pattern maps an importance score (same shape as the weight) and a *density* (fraction of weights kept,
between the pattern's final density and 1, which the pruning schedule lowers over training) to a boolean mask.
Any object with the :class:`Pattern` methods can be given to the pruner. This module never imports torch (masks
are built with tensor methods only), so the accelerator, the RTL and the command line use it without loading torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence, runtime_checkable

from edgesparse.errors import PatternError

if TYPE_CHECKING:
    from torch import Tensor


@runtime_checkable
class Pattern(Protocol):
    """What the pruner, the figures and the exporter ask of a pattern (the four below, or your own)."""

    @property
    def final_density(self) -> float: ...

    def mask(self, score: Tensor, density: float) -> Tensor:
        """Boolean mask keeping the highest-scoring weights at ``density`` (final density <= density <= 1)."""

    def kept_slots(self, shape: Sequence[int], mask: Tensor | None = None) -> int:
        """Weight slots stored for a weight of ``shape`` at the final pattern."""

    def index_bits(self, shape: Sequence[int]) -> int:
        """Index bits stored for a weight of ``shape``."""

    def check(self, mask: Tensor) -> str | None:
        """Why ``mask`` breaks the final pattern, or None."""

    def admits(self, nonzero: Tensor) -> str | None:
        """Why a weight with these non-zeros cannot follow the pattern, or None."""

    def __str__(self) -> str:
        """The pattern's name (checkpoints record it; :func:`parse_pattern` reads back the four below)."""


def _pad(t: Tensor, dim: int, size: int, fill: float) -> Tensor:
    """``t`` grown to ``size`` along ``dim``, the new entries ``fill``."""
    if t.shape[dim] == size:
        return t
    shape = list(t.shape)
    shape[dim] = size
    out = t.new_full(shape, fill)
    out.narrow(dim, 0, t.shape[dim]).copy_(t)
    return out


def _as_filter_rows(t: Tensor) -> Tensor:
    """View a weight-shaped tensor as ``[Cout, K, Cin]`` (K = kernel positions), the pattern's natural layout."""
    if t.dim() < 2:
        raise PatternError(f"a prunable weight needs at least 2 dimensions (Cout, Cin, ...), got shape {tuple(t.shape)}")
    return t.reshape(t.shape[0], t.shape[1], -1).permute(0, 2, 1)


def _from_filter_rows(rows: Tensor, shape: Sequence[int]) -> Tensor:
    """Inverse of :func:`_as_filter_rows`."""
    cout, cin = shape[0], shape[1]
    return rows.permute(0, 2, 1).reshape(cout, cin, *shape[2:])


@dataclass(frozen=True)
class DensePattern:
    """No pruning: the layer keeps every weight (used for first convs and as the accuracy baseline)."""

    final_density: float = 1.0

    def __str__(self) -> str:
        return "dense"

    def mask(self, score: Tensor, density: float) -> Tensor:
        return score.new_ones(score.shape).bool()

    def kept_slots(self, shape: Sequence[int], mask: Tensor | None = None) -> int:
        return math.prod(shape)

    def index_bits(self, shape: Sequence[int]) -> int:
        return 0

    def check(self, mask: Tensor) -> str | None:
        return None if bool(mask.all()) else "a dense layer has pruned weights"

    def admits(self, nonzero: Tensor) -> str | None:
        return None


@dataclass(frozen=True)
class BlockPattern:
    """Balanced N-of-M blocks along input channels, with G consecutive filters sharing kept positions."""

    n: int
    m: int
    g: int = 1

    def __post_init__(self) -> None:
        for label, value in (("N", self.n), ("M", self.m), ("G", self.g)):
            if not isinstance(value, int) or value < 1:
                raise PatternError(f"pattern {label} must be a positive integer, got {value!r}")
        if self.n > self.m:
            raise PatternError(f"pattern {self.n}:{self.m} is impossible: a block of M={self.m} cannot keep N={self.n}")

    @property
    def final_density(self) -> float:
        return self.n / self.m

    @property
    def index_width(self) -> int:
        """Bits of one index: which of the M channels a kept weight came from."""
        return max(0, math.ceil(math.log2(self.m)))

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" + (f"/g{self.g}" if self.g > 1 else "")

    def keep_per_block(self, density: float) -> int:
        """Weights each block keeps at a schedule density (never below N, never above M)."""
        return min(self.m, max(self.n, round(density * self.m)))

    def _blocks(self, rows: Tensor, fill: float) -> Tensor:
        """``[Cout, K, Cin]`` -> ``[Cout/G, G, K, B, M]``, padding Cin with ``fill`` and Cout with zeros."""
        cout, k, cin = rows.shape
        blocks = math.ceil(cin / self.m)
        groups = math.ceil(cout / self.g)
        padded = _pad(_pad(rows, 2, blocks * self.m, fill), 0, groups * self.g, 0.0)
        return padded.reshape(groups, self.g, k, blocks, self.m)

    def mask(self, score: Tensor, density: float) -> Tensor:
        keep = self.keep_per_block(density)
        rows = _as_filter_rows(score.detach().float())
        cout, _, cin = rows.shape
        group_score = self._blocks(rows, fill=float("-inf")).sum(dim=1)  # [Cout/G, K, B, M]
        chosen = group_score.topk(keep, dim=-1).indices
        group_mask = group_score.new_zeros(group_score.shape).bool().scatter_(-1, chosen, True)
        group_mask &= group_score.isfinite()  # a padded channel is never kept
        groups, k, blocks, m = group_mask.shape
        full = group_mask.unsqueeze(1).expand(groups, self.g, k, blocks, m).reshape(groups * self.g, k, blocks * m)
        return _from_filter_rows(full[:cout, :, :cin], score.shape).contiguous()

    def kept_slots(self, shape: Sequence[int], mask: Tensor | None = None) -> int:
        """Weight slots the accelerator stores: N per block, padded channels included."""
        cout, cin, k = shape[0], shape[1], math.prod(shape[2:])
        return cout * k * math.ceil(cin / self.m) * self.n

    def index_bits(self, shape: Sequence[int]) -> int:
        """One log2(M)-bit index per kept slot, shared by the G filters of a group."""
        cout, cin, k = shape[0], shape[1], math.prod(shape[2:])
        return math.ceil(cout / self.g) * k * math.ceil(cin / self.m) * self.n * self.index_width

    def check(self, mask: Tensor) -> str | None:
        """Why ``mask`` breaks the final pattern, or None when it follows it exactly."""
        rows = _as_filter_rows(mask.float())
        cout, _, cin = rows.shape
        blocks = self._blocks(rows, fill=0.0)  # [Cout/G, G, K, B, M]
        real = self._blocks(rows.new_ones(rows.shape), fill=0.0)
        expected = real.sum(-1).clamp(max=self.n)
        counts = blocks.sum(-1)
        bad = counts != expected  # padded filters and channels expect (and hold) nothing
        if bool(bad.any()):
            group, member, pos, block = (int(i) for i in bad.nonzero()[0])
            filt = group * self.g + member
            return (f"filter {filt}, kernel position {pos}, channels {block * self.m}..{block * self.m + self.m - 1} "
                    f"keep {int(counts[group, member, pos, block])} weights, expected {int(expected[group, member, pos, block])}")
        if self.g > 1:
            differs = (blocks != blocks[:, :1]) & (real > 0)
            if bool(differs.any()):
                group = int(differs.nonzero()[0][0])
                return f"filters {group * self.g}..{group * self.g + self.g - 1} do not share kept positions (G={self.g})"
        return None

    def admits(self, nonzero: Tensor) -> str | None:
        """Why a weight with these non-zeros cannot follow the pattern (kept weights may be zero), or None."""
        occupied = self._blocks(_as_filter_rows(nonzero.float()), fill=0.0).amax(dim=1)  # union over a group
        counts = occupied.sum(-1)
        if bool((counts > self.n).any()):
            group, pos, block = (int(i) for i in (counts > self.n).nonzero()[0])
            return (f"filter group {group}, kernel position {pos}, block {block} holds {int(counts[group, pos, block])} "
                    f"non-zero weights, more than N={self.n}")
        return None


@dataclass(frozen=True)
class UnstructuredPattern:
    """Keep the highest-scoring weights anywhere: per layer, or by one threshold across all such layers."""

    compression: float = 16.0
    scope: str = "global"

    def __post_init__(self) -> None:
        if not self.compression >= 1.0:
            raise PatternError(f"compression must be at least 1, got {self.compression!r}")
        if self.scope not in ("global", "layer"):
            raise PatternError(f"unstructured scope must be 'global' or 'layer', got {self.scope!r}")

    @property
    def final_density(self) -> float:
        return 1.0 / self.compression

    def __str__(self) -> str:
        name = "unstructured" if self.scope == "global" else "unstructured-layer"
        return name if self.compression == 16.0 else f"{name}@{self.compression:g}x"

    def mask(self, score: Tensor, density: float) -> Tensor:
        flat = score.detach().flatten()
        keep = max(1, round(density * flat.numel()))
        mask = flat.new_zeros(flat.shape).bool()
        mask[flat.topk(keep).indices] = True
        return mask.reshape(score.shape)

    def kept_slots(self, shape: Sequence[int], mask: Tensor | None = None) -> int:
        return int(mask.sum()) if mask is not None else round(math.prod(shape) * self.final_density)

    def index_bits(self, shape: Sequence[int]) -> int:
        """A one-bit-per-weight occupancy map (the cheapest general index)."""
        return math.prod(shape)

    def check(self, mask: Tensor) -> str | None:
        return None  # any placement is allowed; a global threshold sets no per-layer count

    def admits(self, nonzero: Tensor) -> str | None:
        if self.scope == "global":
            return None
        kept, allowed = int(nonzero.sum()), max(1, round(nonzero.numel() * self.final_density))
        return None if kept <= allowed else f"holds {kept} non-zero weights, more than {allowed}"


@dataclass(frozen=True)
class ChannelPattern:
    """Structured pruning: keep whole input channels (the same ones for every filter and kernel position)."""

    compression: float = 16.0

    def __post_init__(self) -> None:
        if not self.compression >= 1.0:
            raise PatternError(f"compression must be at least 1, got {self.compression!r}")

    @property
    def final_density(self) -> float:
        return 1.0 / self.compression

    def __str__(self) -> str:
        return "channel" if self.compression == 16.0 else f"channel@{self.compression:g}x"

    def _keep(self, cin: int, density: float) -> int:
        return min(cin, max(1, round(density * cin)))

    def mask(self, score: Tensor, density: float) -> Tensor:
        per_channel = _as_filter_rows(score.detach().float()).sum(dim=(0, 1))  # [Cin]
        keep = self._keep(per_channel.numel(), density)
        kept = per_channel.new_zeros(per_channel.shape).bool()
        kept[per_channel.topk(keep).indices] = True
        view = [1, -1] + [1] * (score.dim() - 2)
        return kept.view(view).expand(score.shape).contiguous()

    def kept_slots(self, shape: Sequence[int], mask: Tensor | None = None) -> int:
        return shape[0] * self._keep(shape[1], self.final_density) * math.prod(shape[2:])

    def index_bits(self, shape: Sequence[int]) -> int:
        """A one-bit-per-input-channel list of kept channels."""
        return shape[1]

    def check(self, mask: Tensor) -> str | None:
        rows = _as_filter_rows(mask)
        if not bool((rows == rows[:1, :1]).all()):
            return "kept input channels differ between filters or kernel positions"
        kept, expected = int(rows[0, 0].sum()), self._keep(mask.shape[1], self.final_density)
        return None if kept == expected else f"keeps {kept} input channels, expected {expected}"

    def admits(self, nonzero: Tensor) -> str | None:
        used = int(_as_filter_rows(nonzero).any(dim=0).any(dim=0).sum())
        allowed = self._keep(nonzero.shape[1], self.final_density)
        return None if used <= allowed else f"uses {used} input channels, more than {allowed}"


_BLOCK = re.compile(r"^(\d+):(\d+)(?:/g(\d+))?$")
_NAMED = re.compile(r"^(unstructured|unstructured-layer|channel)(?:@(\d+(?:\.\d+)?)x)?$")
PATTERN_SYNTAX = "'dense', 'N:M', 'N:M/gG', 'unstructured[@Rx]', 'unstructured-layer[@Rx]' or 'channel[@Rx]'"


def parse_pattern(spec: str | Pattern) -> Pattern:
    """Parse a pattern spec such as ``1:16``, ``1:16/g4``, ``dense``, ``unstructured@16x`` or ``channel``."""
    if isinstance(spec, Pattern):
        return spec
    if not isinstance(spec, str):
        raise PatternError(f"a pattern must be a string such as '1:16', got {spec!r}")
    text = spec.strip().lower()
    if text == "dense":
        return DensePattern()
    block = _BLOCK.match(text)
    if block:
        n, m, g = int(block[1]), int(block[2]), int(block[3] or 1)
        return BlockPattern(n, m, g)
    named = _NAMED.match(text)
    if named:
        compression = float(named[2]) if named[2] else 16.0
        if named[1] == "channel":
            return ChannelPattern(compression)
        return UnstructuredPattern(compression, "global" if named[1] == "unstructured" else "layer")
    raise PatternError(f"unknown sparsity pattern {spec!r}: expected {PATTERN_SYNTAX}")


def scheduled_density(pattern: Pattern, progress: float) -> float:
    """Density at a point of the pruning schedule: cubic from dense (0) to the pattern's final density (1).

    The cubic ramp (Zhu & Gupta, 2017) prunes fast while the network is still plastic and slowly near the target.
    """
    p = min(1.0, max(0.0, progress))
    final = pattern.final_density
    return final + (1.0 - final) * (1.0 - p) ** 3
