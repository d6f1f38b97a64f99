"""The R x C weight-stationary array of sparse PEs, and the fold unit that runs one fold from on-chip memories.

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

from edgesparse.rtl.pe import PSUM_BITS, SparsePE, index_bits


class SparseArray(wiring.Component):
    """``rows`` x ``cols`` PEs: weights shift down the columns, activations right along the rows, sums down."""

    def __init__(self, rows: int, cols: int, m: int, lanes: int = 1):
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
