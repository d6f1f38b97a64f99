"""The R x C weight-stationary arrays of sparse PEs (classic and pipelined), and the fold unit that runs one classic
fold from on-chip memories (the pipelined array's unit is :mod:`edgesparse.rtl.layer_unit`).

Buses are flat bit vectors (simple to drive from any testbench): ``w_top`` holds C int8 values, ``idx_top`` C
indices, ``act_left`` R rows of L lanes of M int8 activations, ``psum_bottom`` C columns of L int32 sums; element
k sits at bits ``[k * width, (k + 1) * width)``, lanes inside their row or column. L (``lanes``) is the pixels
per cycle, 1 or 2.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.accel.config import PRODUCT_STAGES
from edgesparse.errors import ConfigError
from edgesparse.rtl.pe import PSUM_BITS, SparsePE, check_block, check_multiplier, index_bits


def check_array(rows: int, cols: int, m: int, lanes: int, segments: int = 1) -> None:
    """Raise :class:`ConfigError` for an array that cannot be built."""
    for name, value in (("rows", rows), ("cols", cols), ("segments", segments)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"array {name} must be a positive integer, got {value!r}")
    if segments & (segments - 1) or rows % segments:
        raise ConfigError(f"segments must be a power of two that divides the {rows} rows, got {segments}")
    check_block(m, lanes)


class SparseArray(wiring.Component):
    """``rows`` x ``cols`` PEs: weights shift down the columns, activations right along the rows, sums down."""

    def __init__(self, rows: int, cols: int, m: int, lanes: int = 1):
        check_array(rows, cols, m, lanes)
        self.rows, self.cols, self.m, self.lanes = rows, cols, m, lanes
        self.index_width = max(1, index_bits(m))
        super().__init__({
            "load": In(1),
            "w_top": In(unsigned(8 * cols)), "idx_top": In(unsigned(self.index_width * cols)),
            "act_left": In(unsigned(8 * m * lanes * rows)),
            "psum_bottom": Out(unsigned(PSUM_BITS * lanes * cols)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        pes = [[SparsePE(self.m, self.lanes) for _ in range(self.cols)] for _ in range(self.rows)]
        for i, row in enumerate(pes):
            for j, pe in enumerate(row):
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += pe.load.eq(self.load)
                if i == 0:
                    m.d.comb += [pe.w_in.eq(self.w_top.word_select(j, 8)),
                                 pe.idx_in.eq(self.idx_top.word_select(j, self.index_width)),
                                 pe.psum_in.eq(0)]
                else:
                    above = pes[i - 1][j]
                    m.d.comb += [pe.w_in.eq(above.w_out), pe.idx_in.eq(above.idx_out), pe.psum_in.eq(above.psum_out)]
                if j == 0:
                    m.d.comb += pe.act_in.eq(self.act_left.word_select(i, 8 * self.m * self.lanes))
                else:
                    m.d.comb += pe.act_in.eq(row[j - 1].act_out)
            if i == self.rows - 1:
                for j, pe in enumerate(row):
                    m.d.comb += self.psum_bottom.word_select(j, PSUM_BITS * self.lanes).eq(pe.psum_out)
        return m



class PipelinedArray(wiring.Component):
    """The pipelined array (:func:`edgesparse.accel.array.clock_layer`): ``rows`` x ``cols`` pipelined PEs with
    staging, shadow and active weights, and ``segments`` S possible partial-sum chains per column.

    The weight word enters the top once per cycle for column 0; column j sees it (and the strobes) j cycles later,
    through a triangle of delay registers inside the array, so a fold's word k shifts into column j at
    ``a + k + j`` and latches into its shadows at ``a + R - 1 + j``. Rows ``k R / S`` (k > 0) may start a segment;
    rows ``(k + 1) R / S - 1`` are the output ports. B = max(1, log2 M) index bits, L = ``lanes``; every PE has
    ``stages`` d product stages (the sum of an activation reaching PE (i, j) in cycle t is latched at t + d), its
    product from ``multiplier`` (see :class:`~edgesparse.rtl.pe.SparsePE`).

    Ports:

    - ``shift : Signal(1), in``: the weight chain of column 0 moves down one row this cycle;
    - ``latch : Signal(1), in``: (with ``shift``) the word column 0's rows take now is also their shadow: a fold's
      last word (its top row);
    - ``w_top : Signal(8 C), in`` / ``idx_top : Signal(B C), in``: the word entering the top: column j's int8 value
      at bits ``[8 j, 8 j + 8)``, its index at ``[B j, B j + B)`` (delayed j cycles inside);
    - ``act_left : Signal(8 M L R), in``: row i's lane l M-wide vector at element ``i L + l`` (8 M bits each);
    - ``first_left : Signal(R), in``: bit i: row i's vector is its fold's first group (the wavefront);
    - ``top_left : Signal(R), in``: bit i: row i starts a segment (psum_in = 0); read on rows ``k R / S``, k > 0
      (row 0 always starts a chain; other rows cannot);
    - ``valid_left : Signal(L R), in``: bit ``i L + l``: the sum row i computes for lane l is a final output (the
      feeder sets it on a segment's bottom row, for real pixels);
    - ``psum_out : Signal(32 L C S), out``: port k (row ``(k + 1) R / S - 1``), column j, lane l at element
      ``(k C + j) L + l``: that PE's partial-sum register;
    - ``valid_out : Signal(L C S), out``: the valid bit that travelled with the same data (delayed d cycles with
      its product), same element order.
    """

    def __init__(self, rows: int, cols: int, m: int, lanes: int = 1, segments: int = 1,
                 stages: int = PRODUCT_STAGES, multiplier: str = "fabric"):
        check_array(rows, cols, m, lanes, segments)
        check_multiplier(multiplier, lanes, stages)
        self.rows, self.cols, self.m, self.lanes, self.segments = rows, cols, m, lanes, segments
        self.stages, self.multiplier = stages, multiplier
        self.index_width = max(1, index_bits(m))
        super().__init__({
            "shift": In(1), "latch": In(1),
            "w_top": In(unsigned(8 * cols)), "idx_top": In(unsigned(self.index_width * cols)),
            "act_left": In(unsigned(8 * m * lanes * rows)), "first_left": In(unsigned(rows)),
            "top_left": In(unsigned(rows)), "valid_left": In(unsigned(lanes * rows)),
            "psum_out": Out(unsigned(PSUM_BITS * lanes * cols * segments)),
            "valid_out": Out(unsigned(lanes * cols * segments)),
        })

    def segment_top(self, row: int) -> bool:
        """Whether ``row`` can start a segment (its PEs carry the psum cut)."""
        return row > 0 and row % (self.rows // self.segments) == 0

    def port_rows(self) -> list[int]:
        """The rows whose partial sums are output ports, port k first."""
        return [(k + 1) * (self.rows // self.segments) - 1 for k in range(self.segments)]

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, L, B = self.rows, self.cols, self.lanes, self.index_width
        pes = [[SparsePE(self.m, L, pipelined=True, segment_top=self.segment_top(i), stages=self.stages,
                         multiplier=self.multiplier) for _ in range(C)] for i in range(R)]
        # The skew triangle: column j's word and strobes, j cycles late.
        shift, latch = self.shift, self.latch
        for j in range(C):
            word = (self.w_top.word_select(j, 8), self.idx_top.word_select(j, B))
            for step in range(j):
                delayed = (Signal(signed(8), name=f"w_skew_{j}_{step}"), Signal(B, name=f"idx_skew_{j}_{step}"))
                m.d.sync += [delayed[0].eq(word[0]), delayed[1].eq(word[1])]
                word = delayed
            if j > 0:
                next_shift, next_latch = Signal(name=f"shift_skew_{j}"), Signal(name=f"latch_skew_{j}")
                m.d.sync += [next_shift.eq(shift), next_latch.eq(latch)]
                shift, latch = next_shift, next_latch
            for i in range(R):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += [pe.shift.eq(shift), pe.latch.eq(latch)]
                if i == 0:
                    m.d.comb += [pe.w_in.eq(word[0]), pe.idx_in.eq(word[1]), pe.psum_in.eq(0)]
                else:
                    above = pes[i - 1][j]
                    m.d.comb += [pe.w_in.eq(above.w_out), pe.idx_in.eq(above.idx_out), pe.psum_in.eq(above.psum_out)]
        for i, row in enumerate(pes):
            for j, pe in enumerate(row):
                left = row[j - 1] if j else None
                if left is None:
                    m.d.comb += [pe.act_in.eq(self.act_left.word_select(i, 8 * self.m * L)),
                                 pe.first_in.eq(self.first_left[i]),
                                 pe.valid_in.eq(self.valid_left.word_select(i, L))]
                    if pe.segment_top:
                        m.d.comb += pe.top_in.eq(self.top_left[i])
                else:
                    m.d.comb += [pe.act_in.eq(left.act_out), pe.first_in.eq(left.first_out),
                                 pe.valid_in.eq(left.valid_out)]
                    if pe.segment_top:
                        m.d.comb += pe.top_in.eq(left.top_out)
        for k, i in enumerate(self.port_rows()):
            for j, pe in enumerate(pes[i]):
                valid = pe.valid_out
                for step in range(self.stages):  # the valid bits wait for their products
                    delayed = Signal(L, name=f"valid_{k}_{j}_d{step}")
                    m.d.sync += delayed.eq(valid)
                    valid = delayed
                m.d.comb += [self.psum_out.word_select(k * C + j, PSUM_BITS * L).eq(pe.psum_out),
                             self.valid_out.word_select(k * C + j, L).eq(valid)]
        return m


def pixel_bits(max_pixels: int, lanes: int = 1) -> int:
    """Width of an address in the fold unit's activation memory (one word per group of ``lanes`` pixels)."""
    return max(1, (-(-max_pixels // lanes) - 1).bit_length())


def cycle_bits(rows: int, cols: int, max_pixels: int) -> int:
    """Width of the fold unit's signed cycle counter (and of ``out_cycle``/``out_group``)."""
    return (2 * rows + cols + max_pixels).bit_length() + 1


class FoldUnit(wiring.Component):
    """The array plus the control that runs one fold from two memories, as the schedule defines a fold.

    - weight memory: R words of C (value, index) pairs, bottom row first (the memory image's fold order);
    - activation memory: one word per group of L pixels (L = ``lanes``), holding per row the L lanes' M-wide
      vectors; pixel p is group p // L, lane p % L.

    A host writes both memories (``w_we``/``a_we`` ports), sets ``pixels`` and pulses ``start``. The fold then takes
    ``2R + C + ceil(pixels / L) - 2`` cycles: cycle t < R shifts weight word t in; from cycle R on, row i receives
    group ``t - R - i`` (zeros outside the tile). After the edge that ends cycle t, ``psum_bottom`` holds that
    cycle's sums, ``out_cycle`` = t, and ``out_valid`` bit ``j * L + l`` says column j's lane l is final for pixel
    ``(out_group - j) * L + l``.
    """

    def __init__(self, rows: int, cols: int, m: int, max_pixels: int, lanes: int = 1):
        self.rows, self.cols, self.m, self.max_pixels, self.lanes = rows, cols, m, max_pixels, lanes
        self.index_width = max(1, index_bits(m))
        self.pixel_bits = pixel_bits(max_pixels, lanes)
        self.cycle_bits = cycle_bits(rows, cols, max_pixels)
        super().__init__({
            "w_we": In(1), "w_addr": In(unsigned(max(1, (rows - 1).bit_length()))),
            "w_data": In(unsigned((8 + self.index_width) * cols)),
            "a_we": In(1), "a_addr": In(unsigned(self.pixel_bits)), "a_data": In(unsigned(8 * m * lanes * rows)),
            "pixels": In(unsigned(max_pixels.bit_length())), "start": In(1),
            "busy": Out(1), "out_live": Out(1), "out_cycle": Out(signed(self.cycle_bits)),
            "out_valid": Out(unsigned(cols * lanes)), "out_group": Out(signed(self.cycle_bits)),
            "psum_bottom": Out(unsigned(PSUM_BITS * lanes * cols)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, L = self.rows, self.cols, self.lanes
        pair = 8 + self.index_width
        row_bits = 8 * self.m * L
        m.submodules.array = array = SparseArray(R, C, self.m, L)
        m.submodules.weights = weights = Memory(shape=unsigned(pair * C), depth=R, init=[])
        m.submodules.acts = acts = Memory(shape=unsigned(row_bits * R), depth=-(-self.max_pixels // L), init=[])
        w_write, a_write = weights.write_port(), acts.write_port()
        m.d.comb += [w_write.en.eq(self.w_we), w_write.addr.eq(self.w_addr), w_write.data.eq(self.w_data),
                     a_write.en.eq(self.a_we), a_write.addr.eq(self.a_addr), a_write.data.eq(self.a_data)]

        t = Signal(signed(self.cycle_bits))  # the fold's cycle
        m.d.comb += self.psum_bottom.eq(array.psum_bottom)
        length = 2 * R + C - 2 + (self.pixels + L - 1) // L
        with m.If(self.busy):
            m.d.sync += t.eq(t + 1)
            with m.If(t == length - 1):
                m.d.sync += self.busy.eq(0)
        with m.Elif(self.start):
            m.d.sync += [self.busy.eq(1), t.eq(0)]

        # Weight load: cycle t < R shifts word t (bottom row first) in at the top.
        w_read = weights.read_port(domain="comb")
        m.d.comb += [w_read.addr.eq(t), array.load.eq(self.busy & (t < R))]
        for j in range(C):
            word = w_read.data.word_select(j, pair)
            m.d.comb += [array.w_top.word_select(j, 8).eq(word[:8]),
                         array.idx_top.word_select(j, self.index_width).eq(word[8:])]
        # Stream: row i gets group t - R - i; a lane whose pixel lies outside [0, pixels) gets zeros.
        for i in range(R):
            port = acts.read_port(domain="comb")
            group = t - R - i
            m.d.comb += port.addr.eq(group[:self.pixel_bits])
            for lane in range(L):
                pixel = group * L + lane
                live = self.busy & (group >= 0) & (pixel < self.pixels)
                vector = port.data.word_select(i, row_bits).word_select(lane, 8 * self.m)
                m.d.comb += array.act_left.word_select(i * L + lane, 8 * self.m).eq(
                    Mux(live, vector, Const(0, 8 * self.m)))
        # What the bottom row holds after this edge: group t - (2R - 1) - j leaves column j.
        leaving = t - (2 * R - 1)
        m.d.sync += [self.out_live.eq(self.busy), self.out_cycle.eq(t), self.out_group.eq(leaving)]
        for j in range(C):
            for lane in range(L):
                pixel = (leaving - j) * L + lane
                m.d.sync += self.out_valid[j * L + lane].eq(self.busy & (leaving - j >= 0) & (pixel < self.pixels))
        return m
