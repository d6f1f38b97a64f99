"""The sparse processing element: int8 weight, log2(M)-bit index, M:1 activation select, MAC, pass-through.

Per clock edge (the register-level model of :func:`edgesparse.accel.array.clock_fold`):

- ``load``: the weight and index registers take ``w_in``/``idx_in`` from above (they shift down a column);
- always: the activation register takes the M-wide vector ``act_in`` from the left (it moves one PE right), and
  the partial sum register takes ``psum_in + weight * act_in[index]``, which moves one PE down.

M = 1 is the classic dense PE (no index, no select).

With ``lanes`` = 2 (two pixels per cycle) the activation vector, the select and the partial sum are two lanes
wide, and one multiplier computes both products: ``w * (a1 * 2^16 + a0)`` is 8 x 25 bits, one DSP48E1; the low 16
bits are ``w * a0`` (it fits, |w * a0| <= 2^14), the rest plus the low part's sign bit is ``w * a1``.
"""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgesparse.sparsity.pattern import BlockPattern

PSUM_BITS = 32


def index_bits(m: int) -> int:
    """Bits of a PE's index into its M-wide block (0 for the dense PE)."""
    return BlockPattern(1, m).index_width


class SparsePE(wiring.Component):
    """One PE of an array built for blocks of ``m`` input channels, streaming ``lanes`` pixels per cycle."""

    def __init__(self, m: int, lanes: int = 1):
        if m < 1 or m & (m - 1):
            raise ValueError(f"the PE's block size M must be a power of two, got {m}")
        if lanes not in (1, 2):
            raise ValueError(f"a PE packs one or two pixels per cycle into its multiplier, got {lanes}")
        self.m, self.lanes = m, lanes
        bits = max(1, index_bits(m))  # a 1-bit index port on the dense PE keeps the interface uniform (unused)
        super().__init__({
            "load": In(1),
            "w_in": In(signed(8)), "idx_in": In(unsigned(bits)),
            "w_out": Out(signed(8)), "idx_out": Out(unsigned(bits)),
            "act_in": In(unsigned(8 * m * lanes)), "act_out": Out(unsigned(8 * m * lanes)),
            "psum_in": In(unsigned(PSUM_BITS * lanes)), "psum_out": Out(unsigned(PSUM_BITS * lanes)),
        })

    def _select(self, lane: int):
        vector = self.act_in.word_select(lane, 8 * self.m)
        if self.m == 1:
            return vector.as_signed()
        return vector.word_select(self.idx_out[:index_bits(self.m)], 8).as_signed()

    def elaborate(self, platform) -> Module:
        m = Module()
        with m.If(self.load):
            m.d.sync += [self.w_out.eq(self.w_in), self.idx_out.eq(self.idx_in)]
        m.d.sync += self.act_out.eq(self.act_in)
        if self.lanes == 1:
            products = [self.w_out * self._select(0)]
        else:
            packed = Signal(signed(25))
            product = Signal(signed(33))
            m.d.comb += [packed.eq(self._select(1) * (1 << 16) + self._select(0)), product.eq(self.w_out * packed)]
            low = product[:16].as_signed()
            high = product[16:].as_signed() + product[15]
            products = [low, high]
        for lane, value in enumerate(products):
            total = self.psum_in.word_select(lane, PSUM_BITS).as_signed() + value
            m.d.sync += self.psum_out.word_select(lane, PSUM_BITS).eq(total)
        return m
