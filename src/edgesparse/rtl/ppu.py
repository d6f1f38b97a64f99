"""The post-processing unit: the array's int32 sums become int8 activations, then pooling, on the output stream.

:class:`Requantizer` is the integer reference's requantization (:mod:`edgesparse.quant.fixedpoint`) in hardware,
one result per cycle per lane::

    y = clamp(((acc + bias) * m + 2^(s-1)) >> s, -128, 127)       then max(y, 0) when ``relu``

exact for every int32 ``acc`` and ``bias`` (the sum is 33 bits wide), every mantissa ``m < 2^31`` and every shift
``s`` in [0, 63] (``s = 0``: no rounding term, ``y = clamp(acc + bias)``; the integer graph uses [1, 62]). The
multiply is split into two registered partial products (33 x 16 and 33 x 15 bits: each fits two 18x18 or 25x18
DSP multipliers and nextpnr/yosys can absorb the registers around them), and no stage chains a multiply, a shift
and a clamp, so the unit is not the clock's critical path (issue 12 wants 150 MHz on ECP5). Its latency is
:data:`REQUANT_LATENCY` cycles: the single home of that constant, for the cycle model.

:class:`MaxPool2x2` is a streaming 2x2, stride-2 max pool on the requantized stream: int8 pixels of a ``width``-wide
map arrive in raster order (row by row, one pixel per cycle per channel lane, any number of idle cycles between
them); each pooled value leaves with the second pixel of the window's bottom row, :data:`MAXPOOL_LATENCY` cycle
later. Like the reference (``floor`` output size), the last column of an odd-width map and the last row of an
odd-height map are dropped.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError

ACC_BITS = 32  # the array's partial sums and the layer's bias: int32
MULT_BITS = 31  # the requantization mantissa m < 2^31 (fixedpoint.MANTISSA_BITS)
SHIFT_BITS = 6  # the shift s <= 62 (fixedpoint.MAX_SHIFT)
_LOW = 16  # the mantissa's split into two partial products: bits [0, 16) and [16, 31)

REQUANT_LATENCY = 6
"""Cycles from a :class:`Requantizer` input to its output: an input presented in cycle t (sampled at the clock edge
that ends it) is on ``out`` in cycle t + 6. Stages: bias add; two partial products; low product + rounding term;
the full product; the arithmetic shift; saturation and ReLU."""

MAXPOOL_LATENCY = 1
"""Cycles from the pixel that completes a 2x2 window at the input of :class:`MaxPool2x2` to its maximum on ``out``."""


def _check_positive(unit: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"the {unit}'s {name} must be a positive integer, got {value!r}")


class Requantizer(wiring.Component):
    """``lanes`` independent requantization pipelines (bias, fixed-point multiply, rounding shift, int8 saturation,
    optional ReLU), one result per lane per cycle, :data:`REQUANT_LATENCY` cycles deep.

    Each lane takes its own channel's parameters with its sum (a lane may change channel every cycle). Lane ``k``
    of a packed port is bits ``[w k, w (k + 1))`` of it.

    Ports (L = ``lanes``):

    - ``acc : Signal(32 L), in``: the int32 accumulators (two's complement per lane);
    - ``bias : Signal(32 L), in``: the channels' int32 biases, added to ``acc`` (33 bits: no overflow);
    - ``mult : Signal(31 L), in``: the channels' mantissas ``m`` (unsigned, ``< 2^31``);
    - ``shift : Signal(6 L), in``: the channels' right shifts ``s`` (0 to 63; the integer graph uses 1 to 62);
    - ``relu : Signal(1), in``: clamp negative results to 0 (a layer setting: it travels with each input);
    - ``valid : Signal(L), in``: lane k's inputs this cycle are a result to requantize;
    - ``out : Signal(8 L), out``: the int8 results, :data:`REQUANT_LATENCY` cycles after their inputs;
    - ``out_valid : Signal(L), out``: ``valid`` delayed with them.
    """

    def __init__(self, lanes: int = 1):
        _check_positive("requantizer", "lane count", lanes)
        self.lanes = lanes
        super().__init__({
            "acc": In(unsigned(ACC_BITS * lanes)), "bias": In(unsigned(ACC_BITS * lanes)),
            "mult": In(unsigned(MULT_BITS * lanes)), "shift": In(unsigned(SHIFT_BITS * lanes)),
            "relu": In(1), "valid": In(unsigned(lanes)),
            "out": Out(unsigned(8 * lanes)), "out_valid": Out(unsigned(lanes)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        for k in range(self.lanes):
            self._lane(m, k)
        return m

    def _lane(self, m: Module, k: int) -> None:
        def stage(shape, name):
            return Signal(shape, name=f"l{k}_{name}")

        # The valid bit, the shift and the ReLU flag travel beside the data through all six stages.
        valid = [stage(1, f"valid{i}") for i in range(REQUANT_LATENCY)]
        shift = [stage(SHIFT_BITS, f"shift{i}") for i in range(REQUANT_LATENCY - 1)]
        relu = [stage(1, f"relu{i}") for i in range(REQUANT_LATENCY - 1)]
        m.d.sync += [valid[0].eq(self.valid[k]), shift[0].eq(self.shift.word_select(k, SHIFT_BITS)),
                     relu[0].eq(self.relu)]
        for i in range(1, REQUANT_LATENCY):
            m.d.sync += valid[i].eq(valid[i - 1])
        for i in range(1, REQUANT_LATENCY - 1):
            m.d.sync += [shift[i].eq(shift[i - 1]), relu[i].eq(relu[i - 1])]
        # 1: the biased sum (33 bits), the mantissa and the rounding term 2^(s-1) (0 when s = 0).
        total = stage(signed(ACC_BITS + 1), "sum")
        mult = stage(unsigned(MULT_BITS), "mult")
        half = stage(unsigned(63), "half")
        s_in = self.shift.word_select(k, SHIFT_BITS)
        m.d.sync += [total.eq(self.acc.word_select(k, ACC_BITS).as_signed()
                              + self.bias.word_select(k, ACC_BITS).as_signed()),
                     mult.eq(self.mult.word_select(k, MULT_BITS)),
                     half.eq((Const(1, unsigned(64)) << s_in) >> 1)]
        # 2: two registered partial products (the multipliers' output registers); the rounding term waits.
        low = stage(signed(ACC_BITS + 1 + _LOW + 1), "low")
        high = stage(signed(ACC_BITS + 1 + MULT_BITS - _LOW + 1), "high")
        half2 = stage(unsigned(63), "half2")
        m.d.sync += [low.eq(total * mult[:_LOW]), high.eq(total * mult[_LOW:]), half2.eq(half)]
        # 3: the low product plus the rounding term (|low| < 2^48, half <= 2^62).
        low_r = stage(signed(64), "low_r")
        high3 = stage(signed(ACC_BITS + 1 + MULT_BITS - _LOW + 1), "high3")
        m.d.sync += [low_r.eq(low + half2), high3.eq(high)]
        # 4: acc * m + 2^(s-1): |acc * m| < 2^63, plus at most 2^62.
        rounded = stage(signed(66), "rounded")
        m.d.sync += rounded.eq((high3 << _LOW) + low_r)
        # 5: the arithmetic right shift (floor).
        shifted = stage(signed(66), "shifted")
        m.d.sync += shifted.eq(rounded >> shift[3])
        # 6: saturation to int8, then ReLU.
        above = (~shifted[-1]) & (shifted[7:] != 0)
        below = shifted[-1] & (shifted[7:] != (1 << (66 - 7)) - 1)
        saturated = Mux(above, 127, Mux(below, -128, shifted[:8].as_signed()))
        result = stage(signed(8), "result")
        m.d.sync += result.eq(Mux(relu[4] & shifted[-1], 0, saturated))
        m.d.comb += [self.out.word_select(k, 8).eq(result), self.out_valid[k].eq(valid[-1])]


class MaxPool2x2(wiring.Component):
    """A streaming 2x2, stride-2 max pool over ``lanes`` channels of a map ``max_width`` pixels wide at most.

    Pixels arrive in raster order, one per cycle at most (``valid``), all lanes together; ``start`` (with or before
    the first pixel) resets the position to row 0, column 0 for a map of ``width`` columns. A row's horizontal
    maxima wait in a line buffer (an inferred memory of ``ceil(max_width / 2)`` words, read and written registered)
    for the row below.

    Ports (L = ``lanes``):

    - ``width : Signal(range(max_width + 1)), in``: the map's width (sampled with ``start``);
    - ``start : Signal(1), in``: a new map begins (the pixel presented with it, if valid, is its pixel (0, 0));
    - ``data : Signal(8 L), in`` / ``valid : Signal(1), in``: one int8 pixel per lane;
    - ``out : Signal(8 L), out`` / ``out_valid : Signal(1), out``: one pooled pixel per lane, in raster order of
      the pooled map, :data:`MAXPOOL_LATENCY` cycle after the pixel that completed its window.
    """

    def __init__(self, lanes: int = 1, max_width: int = 64):
        _check_positive("max pool", "lane count", lanes)
        _check_positive("max pool", "maximum width", max_width)
        self.lanes, self.max_width = lanes, max_width
        super().__init__({
            "width": In(range(max_width + 1)), "start": In(1),
            "data": In(unsigned(8 * lanes)), "valid": In(1),
            "out": Out(unsigned(8 * lanes)), "out_valid": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        L = self.lanes
        pairs = max(1, (self.max_width + 1) // 2)
        m.submodules.line = line = Memory(shape=unsigned(8 * L), depth=pairs, init=[])
        write, read = line.write_port(), line.read_port(transparent_for=())
        width = Signal.like(self.width)
        x, odd_row = Signal(range(self.max_width + 1)), Signal()
        held = Signal(8 * L)  # the left pixel of the current horizontal pair
        with m.If(self.start):
            m.d.sync += width.eq(self.width)
        cur_width = Mux(self.start, self.width, width)
        cur_x = Mux(self.start, 0, x)
        cur_odd = Mux(self.start, 0, odd_row)

        def lane_max(a, b):
            out = Signal(8 * L)
            for k in range(L):
                p, q = a.word_select(k, 8).as_signed(), b.word_select(k, 8).as_signed()
                m.d.comb += out.word_select(k, 8).eq(Mux(p > q, p, q))
            return out

        # The line buffer word of this pair is read while its left pixel arrives, so it is ready for the right one.
        m.d.comb += [read.addr.eq(cur_x >> 1), read.en.eq(1)]
        pair_max = lane_max(held, self.data)
        right = self.valid & cur_x[0] & ((cur_x >> 1) < (cur_width >> 1))  # completes a pair; an odd width's last is dropped
        m.d.comb += [write.addr.eq(cur_x >> 1), write.data.eq(pair_max), write.en.eq(right & ~cur_odd)]
        m.d.sync += self.out_valid.eq(right & cur_odd)
        with m.If(right & cur_odd):
            m.d.sync += self.out.eq(lane_max(read.data, pair_max))
        with m.If(self.valid):
            m.d.sync += held.eq(self.data)
            last = cur_x + 1 == cur_width
            m.d.sync += [x.eq(Mux(last, 0, cur_x + 1)), odd_row.eq(Mux(last, ~cur_odd, cur_odd))]
        with m.Elif(self.start):
            m.d.sync += [x.eq(0), odd_row.eq(0)]
        return m
