"""The sparse processing element: int8 weight, log2(M)-bit index, M:1 activation select, MAC, pass-through.

Per clock edge (the register-level model of :func:`edgesparse.accel.array.clock_fold`):

- ``load``: the weight and index registers take ``w_in``/``idx_in`` from above (they shift down a column);
- always: the activation register takes the M-wide vector ``act_in`` from the left (it moves one PE right), and
  the partial sum register takes ``psum_in + weight * act_in[index]``, which moves one PE down.

M = 1 is the classic dense PE (no index, no select).
"""

from __future__ import annotations

import math

from amaranth import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

PSUM_BITS = 32


def index_bits(m: int) -> int:
    return math.ceil(math.log2(m)) if m > 1 else 0


class SparsePE(wiring.Component):
    """One PE of an array built for blocks of ``m`` input channels."""

    def __init__(self, m: int):
        if m < 1 or m & (m - 1):
            raise ValueError(f"the PE's block size M must be a power of two, got {m}")
        self.m = m
        bits = max(1, index_bits(m))  # a 1-bit index port on the dense PE keeps the interface uniform (unused)
        super().__init__({
            "load": In(1),
            "w_in": In(signed(8)), "idx_in": In(unsigned(bits)),
            "w_out": Out(signed(8)), "idx_out": Out(unsigned(bits)),
            "act_in": In(unsigned(8 * m)), "act_out": Out(unsigned(8 * m)),
            "psum_in": In(signed(PSUM_BITS)), "psum_out": Out(signed(PSUM_BITS)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        with m.If(self.load):
            m.d.sync += [self.w_out.eq(self.w_in), self.idx_out.eq(self.idx_in)]
        if self.m == 1:
            chosen = self.act_in.as_signed()
        else:
            chosen = self.act_in.word_select(self.idx_out[:index_bits(self.m)], 8).as_signed()
        m.d.sync += [self.act_out.eq(self.act_in), self.psum_out.eq(self.psum_in + self.w_out * chosen)]
        return m
