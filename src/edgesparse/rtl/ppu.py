"""The post-processing unit: the array's int32 sums become int8 activations, then pooling, on the output stream.

:class:`Requantizer` is the integer reference's requantization (:mod:`edgesparse.quant.fixedpoint`) in hardware,
one result per cycle per lane::

    y = clamp(((acc + bias) * m + 2^(s-1)) >> s, -128, 127)       then max(y, 0) when ``relu``

exact for every int32 ``acc`` and ``bias`` (the sum is 33 bits wide), every mantissa ``m < 2^31`` and every shift
``s`` in [0, 63] (``s = 0``: no rounding term, ``y = clamp(acc + bias)``; the integer graph uses [1, 62]). The
multiply is cut into four registered partial products of at most 17 x 16 bits, each one 18x18 multiplier (an ECP5
MULT18X18D, a DSP48E1), summed over the next stages, and no stage chains a multiply with an adder, a shift or a
clamp. Placed and routed alone on ECP5 (``benchmarks/engine_fmax.py``, results/engine_fmax.csv: LFE5U-85F speed 8,
post-route) one lane makes 165.8 MHz with 4 MULT18X18D (residual add 173.3, average pool 172.9, max pool 148.4);
cut into two 33 x 16-bit products instead, yosys summed each one's two 18x18 pieces in the multiplier's own stage
and the requantizer made only 135 MHz (issue 12 wants 150). Its latency is :data:`REQUANT_LATENCY` cycles: the
single home of that constant, for the cycle model.

:class:`MaxPool` is a streaming max pool on the requantized stream, 2x2 stride 2 (VGG) or 3x3 stride 2 padding 1
(ResNet): int8 pixels arrive in raster order (one pixel per cycle per channel lane, any number of idle cycles
between them) and each pooled value leaves :data:`MAXPOOL_LATENCY` cycle after the pixel that completes its
window, as the reference pools (``floor`` output size; padding -128).

:class:`ResidualAdd` is the reference's residual ``add`` (both operands rescaled, one rounding shift) and
:class:`GlobalAvgPool` its whole-map ``avgpool`` (an int32 sum per channel, then a :class:`Requantizer`), each with
its latency constant in :mod:`edgesparse.accel.pipeline` (``ADD_LATENCY``, ``AVGPOOL_LATENCY``). Every unit takes a
result per lane per cycle, so none of them slows the array's output stream.
"""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.accel.pipeline import ADD_LATENCY, AVGPOOL_LATENCY, MAXPOOL_LATENCY, REQUANT_LATENCY  # noqa: F401
from edgesparse.errors import ConfigError

ACC_BITS = 32  # the array's partial sums and the layer's bias: int32
MULT_BITS = 31  # the requantization mantissa m < 2^31 (fixedpoint.MANTISSA_BITS)
SHIFT_BITS = 6  # the shift s <= 62 (fixedpoint.MAX_SHIFT)
_LOW = 16  # the mantissa's cut for the partial products: bits [0, 16) and [16, 31)
REQUANT_MULTIPLIERS = 4  # 18x18 multipliers (MULT18X18D, DSP48E1) per requantizer lane: its partial products
_SUM_LOW = 17  # the biased sum's cut: bits [0, 17) (unsigned) and [17, 33) (signed)


def _check_positive(unit: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"the {unit}'s {name} must be a positive integer, got {value!r}")


def _saturate_int8(value, relu):
    """``clamp(value, -128, 127)``, then 0 for a negative value when ``relu``: a signed value's high bits against
    its sign (no comparator chain)."""
    width = len(value)
    above = ~value[-1] & (value[7:] != 0)
    below = value[-1] & (value[7:] != (1 << (width - 7)) - 1)
    saturated = Mux(above, 127, Mux(below, -128, value[:8].as_signed()))
    return Mux(relu & value[-1], 0, saturated)


def pool_line_words(max_width: int) -> int:
    """Words of each of the max pool's line buffers (one per output column of a ``max_width``-pixel row)."""
    return max(1, (max_width + 1) // 2)


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

        # The valid bit, the shift and the ReLU flag travel beside the data through all the stages.
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
        # 2: four registered partial products, each within one 18x18 multiplier (ECP5 MULT18X18D, DSP48E1): the sum
        # cut at bit 17 (low 17 bits unsigned, high 16 signed), the mantissa at bit 16.
        s_lo, s_hi = total[:_SUM_LOW], total[_SUM_LOW:].as_signed()
        m_lo, m_hi = mult[:_LOW], mult[_LOW:]
        p_ll, p_lh = stage(unsigned(_SUM_LOW + _LOW), "p_ll"), stage(unsigned(_SUM_LOW + MULT_BITS - _LOW), "p_lh")
        p_hl, p_hh = stage(signed(ACC_BITS + 1 - _SUM_LOW + _LOW), "p_hl"), stage(signed(32), "p_hh")
        half2 = stage(unsigned(63), "half2")
        m.d.sync += [p_ll.eq(s_lo * m_lo), p_lh.eq(s_lo * m_hi), p_hl.eq(s_hi * m_lo), p_hh.eq(s_hi * m_hi),
                     half2.eq(half)]
        # 3: the low product plus the rounding term; the two middle products aligned at bit 16 (|.| < 2^33).
        low_r, middle = stage(signed(64), "low_r"), stage(signed(35), "middle")
        p_hh3 = stage(signed(32), "p_hh3")
        m.d.sync += [low_r.eq(p_ll + half2), middle.eq((p_hl << (_SUM_LOW - _LOW)) + p_lh), p_hh3.eq(p_hh)]
        # 4: all but the high product; 5: acc * m + 2^(s-1) (|acc * m| < 2^63, plus at most 2^62).
        partial, p_hh4 = stage(signed(66), "partial"), stage(signed(32), "p_hh4")
        m.d.sync += [partial.eq((middle << _LOW) + low_r), p_hh4.eq(p_hh3)]
        rounded = stage(signed(66), "rounded")
        m.d.sync += rounded.eq((p_hh4 << (_SUM_LOW + _LOW)) + partial)
        # 6: the arithmetic right shift (floor).
        shifted = stage(signed(66), "shifted")
        m.d.sync += shifted.eq(rounded >> shift[4])
        # 7: saturation to int8, then ReLU.
        result = stage(signed(8), "result")
        m.d.sync += result.eq(_saturate_int8(shifted, relu[5]))
        m.d.comb += [self.out.word_select(k, 8).eq(result), self.out_valid[k].eq(valid[-1])]


class ResidualAdd(wiring.Component):
    """``lanes`` residual adds as the reference's ``add`` (:func:`edgesparse.quant.reference._add`): both int8
    operands rescaled to the output's scale and summed in one rounding shift::

        y = clamp((a m_a + b m_b + 2^(s-1)) >> s, -128, 127)      then max(y, 0) when ``relu``

    one result per lane per cycle, :data:`ADD_LATENCY` cycles deep (each 8 x 31-bit product from two registered
    8 x 16-bit ones).

    Ports (L = ``lanes``; the parameters are the op's, one for all lanes, sampled with each input):

    - ``a : Signal(8 L), in`` / ``b : Signal(8 L), in``: the int8 operands (the block's output and its shortcut);
    - ``m_a : Signal(31), in`` / ``m_b : Signal(31), in``: their mantissas (``< 2^31``);
    - ``shift : Signal(6), in``: the shared right shift (0 to 63; the integer graph uses 1 to 62);
    - ``relu : Signal(1), in``: clamp negative sums to 0;
    - ``valid : Signal(L), in``: lane k's operands this cycle are a pair to add;
    - ``out : Signal(8 L), out`` / ``out_valid : Signal(L), out``: the int8 sums, :data:`ADD_LATENCY` cycles later.
    """

    def __init__(self, lanes: int = 1):
        _check_positive("residual add", "lane count", lanes)
        self.lanes = lanes
        super().__init__({
            "a": In(unsigned(8 * lanes)), "b": In(unsigned(8 * lanes)),
            "m_a": In(unsigned(MULT_BITS)), "m_b": In(unsigned(MULT_BITS)), "shift": In(unsigned(SHIFT_BITS)),
            "relu": In(1), "valid": In(unsigned(lanes)),
            "out": Out(unsigned(8 * lanes)), "out_valid": Out(unsigned(lanes)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        depth = ADD_LATENCY
        valid = [Signal(self.lanes, name=f"valid{i}") for i in range(depth)]
        shift = [Signal(SHIFT_BITS, name=f"shift{i}") for i in range(depth - 1)]
        relu = [Signal(name=f"relu{i}") for i in range(depth - 1)]
        m.d.sync += [valid[0].eq(self.valid), shift[0].eq(self.shift), relu[0].eq(self.relu)]
        m.d.sync += [valid[i].eq(valid[i - 1]) for i in range(1, depth)]
        m.d.sync += [s.eq(prev) for chain in (shift, relu) for s, prev in zip(chain[1:], chain[:-1])]
        # 1: the operands, the mantissas and the rounding term 2^(s-1) (0 when s = 0).
        m_a, m_b = Signal(MULT_BITS), Signal(MULT_BITS)
        half = [Signal(63, name=f"half{i}") for i in range(4)]  # waits for stage 5
        m.d.sync += [m_a.eq(self.m_a), m_b.eq(self.m_b), half[0].eq((Const(1, unsigned(64)) << self.shift) >> 1)]
        m.d.sync += [later.eq(earlier) for later, earlier in zip(half[1:], half[:-1])]
        half4 = half[-1]
        for k in range(self.lanes):
            a, b = Signal(signed(8), name=f"l{k}_a"), Signal(signed(8), name=f"l{k}_b")
            m.d.sync += [a.eq(self.a.word_select(k, 8).as_signed()), b.eq(self.b.word_select(k, 8).as_signed())]
            # 2: four products of at most 8 x 16 bits (one 18x18 multiplier each): the mantissas cut at bit 16.
            products = [Signal(signed(25), name=f"l{k}_p{i}") for i in range(4)]
            m.d.sync += [products[0].eq(a * m_a[:_LOW]), products[1].eq(a * m_a[_LOW:]),
                         products[2].eq(b * m_b[:_LOW]), products[3].eq(b * m_b[_LOW:])]
            # 3: each operand's product (|a m_a| <= 2^38); 4: their sum; 5: plus the rounding term.
            pa, pb = Signal(signed(40), name=f"l{k}_pa"), Signal(signed(40), name=f"l{k}_pb")
            both, total = Signal(signed(41), name=f"l{k}_both"), Signal(signed(64), name=f"l{k}_total")
            m.d.sync += [pa.eq((products[1] << _LOW) + products[0]), pb.eq((products[3] << _LOW) + products[2]),
                         both.eq(pa + pb), total.eq(both + half4)]
            # 6: the shift; 7: saturation and ReLU.
            shifted, result = Signal(signed(64), name=f"l{k}_shifted"), Signal(signed(8), name=f"l{k}_result")
            m.d.sync += [shifted.eq(total >> shift[4]), result.eq(_saturate_int8(shifted, relu[5]))]
            m.d.comb += self.out.word_select(k, 8).eq(result)
        m.d.comb += self.out_valid.eq(valid[-1])
        return m


class GlobalAvgPool(wiring.Component):
    """``lanes`` channels' global average pools as the reference's ``avgpool`` with the whole map as its window
    (:func:`edgesparse.quant.reference._avgpool`; ResNet's head): the int8 pixels of a map summed in int32, then
    ``clamp((sum m + 2^(s-1)) >> s)`` in a :class:`Requantizer` (``m`` carries the 1 / (H W)).

    Ports (L = ``lanes``):

    - ``data : Signal(8 L), in`` / ``valid : Signal(1), in``: one int8 pixel per lane, a map's pixels in any order;
    - ``last : Signal(1), in``: with ``valid``: this is the map's last pixel (the next pixel starts a new map);
    - ``mult : Signal(31), in`` / ``shift : Signal(6), in``: the op's mantissa and shift (sampled with ``last``);
    - ``out : Signal(8 L), out`` / ``out_valid : Signal(1), out``: the averages, :data:`AVGPOOL_LATENCY` cycles
      after the last pixel.
    """

    def __init__(self, lanes: int = 1):
        _check_positive("average pool", "lane count", lanes)
        self.lanes = lanes
        super().__init__({
            "data": In(unsigned(8 * lanes)), "valid": In(1), "last": In(1),
            "mult": In(unsigned(MULT_BITS)), "shift": In(unsigned(SHIFT_BITS)),
            "out": Out(unsigned(8 * lanes)), "out_valid": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        L = self.lanes
        m.submodules.requant = requant = Requantizer(L)
        done, mult, shift = Signal(), Signal(MULT_BITS), Signal(SHIFT_BITS)
        m.d.sync += done.eq(self.valid & self.last)
        with m.If(self.valid & self.last):
            m.d.sync += [mult.eq(self.mult), shift.eq(self.shift)]
        for k in range(L):
            total = Signal(signed(ACC_BITS), name=f"l{k}_sum")
            pixel = self.data.word_select(k, 8).as_signed()
            start = Mux(done, 0, total)  # the previous map's sum went to the requantizer last cycle
            with m.If(self.valid):
                m.d.sync += total.eq(start + pixel)
            with m.Elif(done):
                m.d.sync += total.eq(0)
            m.d.comb += [requant.acc.word_select(k, ACC_BITS).eq(total),
                         requant.mult.word_select(k, MULT_BITS).eq(mult),
                         requant.shift.word_select(k, SHIFT_BITS).eq(shift)]
        m.d.comb += [requant.bias.eq(0), requant.relu.eq(0), requant.valid.eq(Mux(done, (1 << L) - 1, 0)),
                     self.out.eq(requant.out), self.out_valid.eq(requant.out_valid[0])]
        return m


INT8_MIN = -128  # the max pool's padding (the reference pads with it)


class MaxPool(wiring.Component):
    """A streaming max pool over ``lanes`` channels of maps up to ``max_width`` pixels wide: ``kernel`` 2 (2x2,
    stride 2, no padding: VGG's) or 3 (3x3, stride 2, padding 1: ResNet's stem).

    Pixels arrive in raster order, one per cycle at most (``valid``), all lanes together; ``start`` (with or before
    the first pixel) begins a map of ``height`` x ``width``. A horizontal stage keeps the current window's maximum
    (and, for 3x3, the odd column two windows share); a vertical stage keeps, per output column, the same for rows
    in two line buffers (inferred memories of ``ceil(max_width / 2)`` words, read a stage ahead into a register,
    the writes of the two cycles before bypassed); registers between the stages keep each to one comparison. Like
    the reference, a 2x2 pool drops an odd last row and column; a 3x3 pool's window past the map's edge takes the
    padding (-128).

    Ports (L = ``lanes``):

    - ``height``, ``width : Signal(range(max_width + 1)), in``: the map's size (sampled with ``start``; any
      height up to the width's range);
    - ``start : Signal(1), in``: a new map begins (the pixel presented with it, if valid, is its pixel (0, 0));
    - ``data : Signal(8 L), in`` / ``valid : Signal(1), in``: one int8 pixel per lane;
    - ``out : Signal(8 L), out`` / ``out_valid : Signal(1), out``: one pooled pixel per lane, in raster order of
      the pooled map, :data:`MAXPOOL_LATENCY` cycle after the pixel that completed its window (the window's
      bottom right pixel, or the map's last column or row for a 3x3 window over the edge).
    """

    def __init__(self, lanes: int = 1, max_width: int = 64, kernel: int = 2):
        _check_positive("max pool", "lane count", lanes)
        _check_positive("max pool", "maximum width", max_width)
        if kernel not in (2, 3):
            raise ConfigError(f"the max pool runs 2x2 stride 2 or 3x3 stride 2 padding 1 windows, got kernel "
                              f"{kernel!r}")
        self.lanes, self.max_width, self.kernel = lanes, max_width, kernel
        super().__init__({
            "height": In(range(max_width + 1)), "width": In(range(max_width + 1)), "start": In(1),
            "data": In(unsigned(8 * lanes)), "valid": In(1),
            "out": Out(unsigned(8 * lanes)), "out_valid": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        L, overlap = self.lanes, self.kernel == 3
        columns = pool_line_words(self.max_width)
        minimum = Const(sum((INT8_MIN & 0xFF) << (8 * k) for k in range(L)), unsigned(8 * L))

        def lane_max(a, b):
            out = Signal(8 * L)
            for k in range(L):
                p, q = a.word_select(k, 8).as_signed(), b.word_select(k, 8).as_signed()
                m.d.comb += out.word_select(k, 8).eq(Mux(p > q, p, q))
            return out

        # Position of the pixel now at the input (a start restarts at (0, 0) with the new size).
        height, width = Signal.like(self.height), Signal.like(self.width)
        x, y = Signal(range(self.max_width + 1)), Signal(range(self.max_width + 1))
        with m.If(self.start):
            m.d.sync += [height.eq(self.height), width.eq(self.width)]
        cur_h, cur_w = Mux(self.start, self.height, height), Mux(self.start, self.width, width)
        cur_x, cur_y = Mux(self.start, 0, x), Mux(self.start, 0, y)
        last_col, last_row = cur_x + 1 == cur_w, cur_y + 1 == cur_h
        next_x = Mux(self.valid, Mux(last_col, 0, cur_x + 1), cur_x)
        col0 = Signal(init=1)  # x == 0, kept as a flag: no comparison in front of the horizontal maximum
        with m.If(self.valid):
            m.d.sync += [x.eq(next_x), y.eq(Mux(last_col, cur_y + 1, cur_y)), col0.eq(last_col)]
        with m.Elif(self.start):
            m.d.sync += [x.eq(0), y.eq(0), col0.eq(1)]

        # Horizontal: the window of output column x // 2; for 3x3, an odd pixel also opens the next window.
        h_win, h_carry = Signal(8 * L), Signal(8 * L)
        opened = lane_max(Mux(self.start | col0, minimum, h_carry), self.data) if overlap else self.data
        closed = lane_max(h_win, self.data)
        h, h_emit = Signal(8 * L), Signal()  # registered: the vertical stage works a cycle later
        row_first, row_odd, row_last, column = Signal(), Signal(), Signal(), Signal.like(x)
        m.d.sync += [h.eq(Mux(cur_x[0], closed, opened)),
                     h_emit.eq(self.valid & (cur_x[0] | (last_col if overlap else 0))),
                     row_first.eq(cur_y == 0), row_odd.eq(cur_y[0]), row_last.eq(last_row), column.eq(cur_x >> 1)]
        with m.If(self.valid):
            with m.If(cur_x[0]):
                m.d.sync += h_carry.eq(self.data)
            with m.Else():
                m.d.sync += h_win.eq(opened)

        # Vertical: the same over rows, per output column, in two line buffers. A maximum's column is read when it
        # leaves the horizontal stage and the word registered beside it: the vertical stage then compares registers
        # only. A write lands the cycle after it, so the maxima one and two cycles ahead (a narrow map's next row)
        # are not in the word read: both are bypassed from registers, each decided a cycle or two early. (A read
        # port transparent for the write would do the second, but its emulation on ECP5 puts the block RAM's output
        # in front of the comparison.)
        m.submodules.v_win = v_win_mem = Memory(shape=unsigned(8 * L), depth=columns, init=[])
        m.submodules.v_carry = v_carry_mem = Memory(shape=unsigned(8 * L), depth=columns, init=[])
        win_w, carry_w = v_win_mem.write_port(), v_carry_mem.write_port()
        win_r = v_win_mem.read_port(transparent_for=())
        carry_r = v_carry_mem.read_port(transparent_for=())
        m.d.comb += [win_r.addr.eq(cur_x >> 1), carry_r.addr.eq(cur_x >> 1), win_r.en.eq(1), carry_r.en.eq(1)]
        h2, emit2, first2, odd2, last2, column2 = (Signal.like(v, name=f"{v.name}2") for v in (
            h, h_emit, row_first, row_odd, row_last, column))
        win_d, carry_d = Signal(8 * L), Signal(8 * L)
        m.d.sync += [h2.eq(h), emit2.eq(h_emit), first2.eq(row_first), odd2.eq(row_odd), last2.eq(row_last),
                     column2.eq(column), win_d.eq(win_r.data), carry_d.eq(carry_r.data)]
        # The bypasses: the maximum a cycle ahead, decided as the next one leaves the horizontal stage; the one two
        # cycles ahead, decided as it enters and held a cycle. Their data: the writes, registered once and twice.
        bypass_win, bypass_carry = Signal(), Signal()
        near_win, near_carry, far_win, far_carry = Signal(), Signal(), Signal(), Signal()
        wb_win_data, wb_carry_data = Signal(8 * L), Signal(8 * L)
        wb2_win_data, wb2_carry_data = Signal(8 * L), Signal(8 * L)
        m.d.sync += [bypass_win.eq(emit2 & ~odd2 & (column == column2)),
                     bypass_carry.eq(emit2 & odd2 & (column == column2)),
                     near_win.eq(emit2 & ~odd2 & ((cur_x >> 1) == column2)),
                     near_carry.eq(emit2 & odd2 & ((cur_x >> 1) == column2)),
                     far_win.eq(near_win), far_carry.eq(near_carry),
                     wb2_win_data.eq(wb_win_data), wb2_carry_data.eq(wb_carry_data)]
        win_word = Mux(bypass_win, wb_win_data, Mux(far_win, wb2_win_data, win_d))
        carry_word = Mux(bypass_carry, wb_carry_data, Mux(far_carry, wb2_carry_data, carry_d))
        v_opened = lane_max(Mux(first2, minimum, carry_word), h2) if overlap else h2
        v_closed = lane_max(win_word, h2)
        m.d.comb += [win_w.addr.eq(column2), win_w.data.eq(v_opened), win_w.en.eq(emit2 & ~odd2),
                     carry_w.addr.eq(column2), carry_w.data.eq(h2), carry_w.en.eq(emit2 & odd2)]
        m.d.sync += [wb_win_data.eq(v_opened), wb_carry_data.eq(h2)]
        emit = emit2 & (odd2 | (last2 if overlap else 0))
        m.d.sync += self.out_valid.eq(emit)
        with m.If(emit):
            m.d.sync += self.out.eq(Mux(odd2, v_closed, v_opened))
        return m


PPU_UNITS = ("requantizer", "max_pool", "residual_add", "avgpool")
"""The post-processing units synthesis counts (one lane each; the max pool for 3x3 windows over maps up to
:data:`SYNTH_MAX_WIDTH` pixels wide), the names of their entries in the resource table."""

SYNTH_MAX_WIDTH = 64


def ppu_unit(name: str, lanes: int = 1) -> wiring.Component:
    """A post-processing unit by its :data:`PPU_UNITS` name."""
    if name not in PPU_UNITS:
        raise ConfigError(f"unknown post-processing unit {name!r}; one of {', '.join(PPU_UNITS)}")
    if name == "max_pool":
        return MaxPool(lanes, SYNTH_MAX_WIDTH, kernel=3)
    return {"requantizer": Requantizer, "residual_add": ResidualAdd, "avgpool": GlobalAvgPool}[name](lanes)


def ppu_verilog(name: str, lanes: int = 1) -> str:
    """Verilog of one post-processing unit, module ``name``."""
    from amaranth.back import verilog

    return verilog.convert(ppu_unit(name, lanes), name=name)
