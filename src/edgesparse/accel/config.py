"""The accelerator's configuration: array size, the block the PE select serves, clock, buffers and DRAM."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgesparse.accel.pipeline import PRODUCT_STAGES
from edgesparse.errors import AcceleratorError
from edgesparse.pattern import BlockPattern, DensePattern, parse_pattern


@dataclass(frozen=True)
class AcceleratorConfig:
    """A weight-stationary R x C array whose PEs select one of ``m`` activations by a log2(m)-bit index.

    ``m = n = 1`` is the classic dense weight-stationary array. ``n`` is the pattern the array is built for;
    layers of other patterns run too (see :mod:`edgesparse.accel.mapping`).

    ``pixels_per_cycle`` = 2 streams two pixels through every row each cycle: each PE selects both pixels'
    activations with its one index and computes both products in one DSP48 multiplier, ``w * (a1 * 2^16 + a0)``
    (the two int8 x int8 products share the stationary weight; Xilinx WP486's INT8 packing). A fold then streams
    ``ceil(T / 2)`` pixel pairs. 1 is the classic array that SCALE-Sim models.

    ``classic`` = True is SCALE-Sim's weight-stationary array: every fold loads its weights (R cycles), streams,
    fills and drains. The default array hides the load: each PE has a shadow weight and index that the next fold's
    weights shift into while the current fold streams, and that take effect with the advancing wavefront, so the
    folds of a layer stream back to back (see :mod:`edgesparse.accel.schedule`).

    ``segments`` = S cuts the partial-sum chain every R / S rows: a fold that needs at most R / s rows runs s
    segments side by side (s a power of two up to S), each on its own share of the fold's pixels, with its own
    C outputs. ``batch`` images run per frame; every fold of weights serves all of them.
    """

    rows: int = 16
    cols: int = 16
    m: int = 16
    n: int = 1
    clock_mhz: float = 200.0
    weight_buffer_kib: float = 64.0
    input_buffer_kib: float = 512.0
    output_buffer_kib: float = 256.0
    dram_bytes_per_cycle: float = 16.0
    pixels_per_cycle: int = 1
    classic: bool = False
    segments: int = 1
    batch: int = 1
    resident_maps: bool = True  # False: every map streams through DRAM (the residency rule keeps none on chip)

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "m", "n", "segments", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AcceleratorError(f"accelerator {name} must be a positive integer, got {value!r}")
        if not isinstance(self.resident_maps, bool):
            raise AcceleratorError(f"resident_maps must be a bool, got {self.resident_maps!r}")
        if self.pixels_per_cycle not in (1, 2):
            raise AcceleratorError(f"pixels_per_cycle must be 1 or 2 (two int8 products per DSP), got "
                                   f"{self.pixels_per_cycle!r}")
        if self.rows % self.segments or self.segments & (self.segments - 1):
            raise AcceleratorError(f"segments must be a power of two that divides the {self.rows} rows, got "
                                   f"{self.segments}")
        if self.classic and self.segments != 1:
            raise AcceleratorError(f"the classic array has one partial-sum chain per column: segments must be 1, "
                                   f"got {self.segments}")
        if self.n > self.m:
            raise AcceleratorError(f"an array built for {self.n}:{self.m} is impossible: N must not exceed M")
        for name in ("clock_mhz", "weight_buffer_kib", "input_buffer_kib", "output_buffer_kib",
                     "dram_bytes_per_cycle"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise AcceleratorError(f"accelerator {name} must be a positive number, got {value!r}")
        if self.fold_weight_bytes * 2 > self.weight_buffer_kib * 1024:
            raise AcceleratorError(
                f"the weight buffer ({self.weight_buffer_kib} KiB) cannot double-buffer one fold of "
                f"{self.fold_weight_bytes} bytes ({self.rows}x{self.cols} values and indices)")

    @property
    def index_bits(self) -> int:
        return math.ceil(math.log2(self.m)) if self.m > 1 else 0

    @property
    def product_stages(self) -> int:
        """Cycles from an activation reaching a PE to its product entering the partial sum: the pipelined PE
        registers the selected activation with its weight, then the product (:data:`PRODUCT_STAGES`); every sum
        leaves the array that many cycles later. 0 on the classic array (SCALE-Sim's count)."""
        return 0 if self.classic else PRODUCT_STAGES

    @property
    def row_word_bytes(self) -> int:
        """Bytes of one row of a fold as the memory image stores it and the weight buffer holds it: the row's C int8
        values, then its C indices bit-packed at :attr:`index_bits` bits, padded to whole bytes."""
        return self.cols + math.ceil(self.cols * self.index_bits / 8)

    @property
    def fold_weight_bytes(self) -> int:
        """Bytes of one full fold of weights: R row words (what the DMA moves for every fold, unused PEs' zeros
        included)."""
        return self.rows * self.row_word_bytes

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def segment_rows(self) -> int:
        """Rows between two possible cuts of the partial-sum chain."""
        return self.rows // self.segments

    def fold_segments(self, rows_used: int) -> int:
        """Segments a fold of ``rows_used`` rows runs side by side: the most (a power of two up to ``segments``)
        whose R / s rows still hold the fold."""
        count = self.segments
        while count > 1 and rows_used > self.rows // count:
            count //= 2
        return count

    @property
    def weight_buffer_folds(self) -> int:
        """Folds of weights the weight buffer holds at once (its slots; at least two)."""
        return int(self.weight_buffer_kib * 1024 // self.fold_weight_bytes)

    def dense_twin(self) -> "AcceleratorConfig":
        """The same-size dense array (M = N = 1), the baseline of every comparison."""
        return AcceleratorConfig(**{**asdict(self), "m": 1, "n": 1})

    def describe(self) -> str:
        pair = ", 2 px/cycle" if self.pixels_per_cycle == 2 else ""
        kind = ", classic" if self.classic else (f", {self.segments} segments" if self.segments > 1 else "")
        batch = f", batch {self.batch}" if self.batch > 1 else ""
        maps = "" if self.resident_maps else ", maps in DRAM"
        return f"{self.rows}x{self.cols} {self.n}:{self.m}{pair}{kind}{batch}{maps} @ {self.clock_mhz:g} MHz"


def array_block(spec: str) -> tuple[int, int] | None:
    """(N, M) of the array a pattern asks for: ``dense`` -> (1, 1), ``N:M[/gG]`` -> (N, M); None for patterns no
    array is built for (unstructured, channel), whose layers run on any array with their largest block occupancy."""
    pattern = parse_pattern(spec)
    if isinstance(pattern, DensePattern):
        return 1, 1
    if isinstance(pattern, BlockPattern):
        return pattern.n, pattern.m
    return None


def parse_array(text: str) -> tuple[int, int]:
    """``"16x16"`` -> ``(16, 16)``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise AcceleratorError(f"array size must look like RxC (e.g. 16x16), got {text!r}")
    rows, cols = (int(p) for p in parts)
    if rows < 1 or cols < 1:
        raise AcceleratorError(f"array size must be at least 1x1, got {text!r}")
    return rows, cols
