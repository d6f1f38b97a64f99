"""The sparse processing element: int8 weight, log2(M)-bit index, M:1 activation select, MAC, pass-through.

Two PEs share the multiply (:func:`_products`):

- :class:`SparsePE` ``pipelined=False`` (the classic fold, :func:`edgesparse.accel.array.clock_fold`): ``load``
  shifts the weight and index down the column; the PE computes with the weight it holds.
- :class:`SparsePE` ``pipelined=True`` (the default array, :func:`edgesparse.accel.array.clock_layer`): a staging
  register of the weight chain, a shadow and an active weight (each with its index). ``shift`` moves the chain one
  row down, ``latch`` (with ``shift``) also copies the word arriving from above into the shadow; a ``first``
  activation (a fold's first pixel group, the wavefront) switches the PE to its shadow in the cycle it arrives and
  computes with it. ``top`` (only on a PE built ``segment_top``) cuts the partial-sum chain: the sum starts at 0.

Per clock edge on both: the activation register takes the M-wide vector ``act_in`` from the left (it moves one PE
right, with ``first``, ``top`` and ``valid`` on the pipelined PE), and the partial-sum register takes
``psum_in + weight * act_in[index]``, which moves one PE down.

The pipelined PE puts ``stages`` d registers (:data:`edgesparse.accel.config.PRODUCT_STAGES`) between an
activation's arrival and its product's add: d >= 1 registers the selected activation with the weight chosen on
arrival (the M:1 select stage; the weight switch is unchanged), d = 2 also registers the product (the
multiplier's own input and output registers). The sum of an activation arriving in cycle t is latched at the end
of t + d; the partial sum from above arrives d cycles late as well, so the chain keeps its one-cycle-per-row skew
and every sum leaves the array d cycles later.

M = 1 is the dense PE (no index, no select).

With ``lanes`` = 2 (two pixels per cycle) the activation vector, the select and the partial sum are two lanes
wide, and one multiplier computes both products: ``w * (a1 * 2^16 + a0)`` is 8 x 25 bits, one DSP48E1; the low 16
bits are ``w * a0`` (it fits, |w * a0| <= 2^14), the rest plus the low part's sign bit is ``w * a1``.
"""

from __future__ import annotations

from amaranth import ClockSignal, Instance, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgesparse.accel.config import PRODUCT_STAGES
from edgesparse.errors import ConfigError
from edgesparse.pattern import BlockPattern

PSUM_BITS = 32
MULTIPLIERS = ("fabric", "ecp5")  # a behavioural multiply (any target, simulation) or ECP5's MULT18X18D instance


def index_bits(m: int) -> int:
    """Bits of a PE's index into its M-wide block (0 for the dense PE)."""
    return BlockPattern(1, m).index_width


def check_block(m: int, lanes: int) -> None:
    """Raise :class:`ConfigError` unless M is a power of two and ``lanes`` is 1 or 2."""
    if not isinstance(m, int) or m < 1 or m & (m - 1):
        raise ConfigError(f"the PE's block size M must be a power of two, got {m!r}")
    if lanes not in (1, 2):
        raise ConfigError(f"a PE packs one or two pixels per cycle into its multiplier, got {lanes!r}")


def check_multiplier(multiplier: str, lanes: int, stages: int) -> None:
    """Raise :class:`ConfigError` unless ``multiplier`` is one of :data:`MULTIPLIERS` and, on ``"ecp5"``, the PE
    has one lane and two product stages (the MULT18X18D's input and output registers)."""
    if multiplier not in MULTIPLIERS:
        raise ConfigError(f"the PE's multiplier is one of {', '.join(MULTIPLIERS)}, got {multiplier!r}")
    if multiplier == "ecp5" and (lanes, stages) != (1, 2):
        raise ConfigError(f"the ECP5 multiplier holds two product stages for one pixel per cycle, got {lanes} "
                          f"lane(s) and {stages} stage(s)")


def _ecp5_product(m: Module, weight, chosen) -> Signal:
    """``weight * chosen`` through a MULT18X18D with its input and output registers: the two product stages inside
    the multiplier (yosys's synth_ecp5 maps a multiply with REG_* = NONE and absorbs no register around it)."""
    a, b, p = Signal(signed(18)), Signal(signed(18)), Signal(36)
    m.d.comb += [a.eq(chosen), b.eq(weight)]
    registered = {f"p_REG_{name}_{what}": value for name in ("INPUTA", "INPUTB", "OUTPUT")
                  for what, value in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))}
    m.submodules.multiplier = Instance(
        "MULT18X18D", **registered, p_GSR="DISABLED", p_RESETMODE="SYNC",
        i_CLK0=ClockSignal(), i_CE0=1, i_RST0=ResetSignal(), i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
        **{f"i_A{k}": a[k] for k in range(18)}, **{f"i_B{k}": b[k] for k in range(18)},
        **{f"i_C{k}": 0 for k in range(18)}, **{f"o_P{k}": p[k] for k in range(36)})
    return p[:16].as_signed()


def _products(m: Module, weight, vector, index, block: int, lanes: int, stages: int = 0,
              multiplier: str = "fabric") -> list:
    """``lanes`` signed products ``weight * vector[lane][index]`` (two lanes packed into one multiplier), ``stages``
    cycles late: 1 registers the selected activations with the weight, 2 the product as well (on ``"ecp5"``: the
    MULT18X18D's own registers)."""
    def select(lane: int):
        word = vector.word_select(lane, 8 * block)
        return word.as_signed() if block == 1 else word.word_select(index[:index_bits(block)], 8).as_signed()

    chosen = [select(lane) for lane in range(lanes)]
    if multiplier == "ecp5":
        return [_ecp5_product(m, weight, chosen[0])]
    if stages >= 1:
        held_w, held = Signal(signed(8), name="held_w"), [Signal(signed(8), name=f"held_a{k}") for k in range(lanes)]
        m.d.sync += [held_w.eq(weight)] + [h.eq(c) for h, c in zip(held, chosen)]
        weight, chosen = held_w, held
    domain = m.d.sync if stages >= 2 else m.d.comb
    if lanes == 1:
        product = Signal(signed(16), name="product")
        domain += product.eq(weight * chosen[0])
        return [product]
    packed = Signal(signed(25))
    product = Signal(signed(33), name="product")
    m.d.comb += packed.eq(chosen[1] * (1 << 16) + chosen[0])
    domain += product.eq(weight * packed)
    return [product[:16].as_signed(), product[16:].as_signed() + product[15]]


class SparsePE(wiring.Component):
    """One PE of an array built for blocks of ``m`` input channels, streaming ``lanes`` pixels per cycle.

    Parameters: ``m`` (a power of two; 1 = dense), ``lanes`` (1 or 2), ``pipelined`` (shadow weights, the default
    array; False: the classic PE), ``segment_top`` (pipelined only: the PE may start a segment's partial-sum chain),
    ``stages`` (pipelined only: 0, 1 or 2 product stages d, see the module docstring; default
    :data:`~edgesparse.accel.config.PRODUCT_STAGES` on the pipelined PE, 0 on the classic one), ``multiplier``
    (``"fabric"``: a behavioural multiply; ``"ecp5"``: a MULT18X18D instance holding both product stages, one
    pixel per cycle, for place and route on ECP5).

    Ports, both PEs (B = max(1, log2 M) index bits, L = ``lanes``):

    - ``w_in : Signal(signed(8)), in`` / ``idx_in : Signal(B), in``: the weight chain's word from the PE above;
    - ``w_out : Signal(signed(8)), out`` / ``idx_out : Signal(B), out``: this PE's link of the chain (classic: the
      weight it computes with; pipelined: its staging register);
    - ``act_in : Signal(8 * M * L), in``: lane l's M int8 activations at bits ``[8 M l, 8 M (l + 1))``;
    - ``act_out : Signal(8 * M * L), out``: ``act_in`` one cycle later, to the PE on the right;
    - ``psum_in : Signal(32 * L), in``: the lanes' int32 partial sums from above;
    - ``psum_out : Signal(32 * L), out``: ``psum_in + w * act_in[idx]`` per lane, registered (on the pipelined PE
      for the ``act_in`` of d cycles earlier).

    Classic only: ``load : Signal(1), in``: the weight and index registers take ``w_in``/``idx_in``.

    Pipelined only:

    - ``shift : Signal(1), in``: the staging register takes ``w_in``/``idx_in``;
    - ``latch : Signal(1), in``: the shadow takes ``w_in``/``idx_in`` (the word the staging register takes now);
    - ``first_in : Signal(1), in``: ``act_in`` is a fold's first group: switch to the shadow and compute with it;
    - ``top_in : Signal(1), in`` (``segment_top`` only): ``act_in`` belongs to a segment starting at this row: the
      partial sum of its product (d cycles later) starts at 0 instead of ``psum_in``;
    - ``valid_in : Signal(L), in``: per lane, the sum computed with ``act_in`` is a final output (the array's
      feeder sets it on a segment's bottom row for real pixels); it only travels;
    - ``first_out``, ``top_out`` (``segment_top`` only), ``valid_out``: the inputs one cycle later, beside
      ``act_out`` (``valid_out`` is the valid bit of ``psum_out`` d cycles later: the array delays it).
    """

    def __init__(self, m: int, lanes: int = 1, pipelined: bool = False, segment_top: bool = False,
                 stages: int | None = None, multiplier: str = "fabric"):
        check_block(m, lanes)
        stages = (PRODUCT_STAGES if pipelined else 0) if stages is None else stages
        check_multiplier(multiplier, lanes, stages)
        if segment_top and not pipelined:
            raise ConfigError("only the pipelined PE cuts the partial-sum chain (segment_top needs pipelined)")
        if stages not in (0, 1, 2) or (stages and not pipelined):
            raise ConfigError(f"the pipelined PE has 0, 1 or 2 product stages (the classic PE none), got {stages!r}")
        self.m, self.lanes, self.pipelined, self.segment_top, self.stages = m, lanes, pipelined, segment_top, stages
        self.multiplier = multiplier
        bits = max(1, index_bits(m))  # a 1-bit index port on the dense PE keeps the interface uniform (unused)
        ports = {
            "w_in": In(signed(8)), "idx_in": In(unsigned(bits)),
            "w_out": Out(signed(8)), "idx_out": Out(unsigned(bits)),
            "act_in": In(unsigned(8 * m * lanes)), "act_out": Out(unsigned(8 * m * lanes)),
            "psum_in": In(unsigned(PSUM_BITS * lanes)), "psum_out": Out(unsigned(PSUM_BITS * lanes)),
        }
        if pipelined:
            ports.update({"shift": In(1), "latch": In(1), "first_in": In(1), "first_out": Out(1),
                          "valid_in": In(lanes), "valid_out": Out(lanes)})
            if segment_top:
                ports.update({"top_in": In(1), "top_out": Out(1)})
        else:
            ports["load"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.sync += self.act_out.eq(self.act_in)
        if self.pipelined:
            weight, index = self._pipelined_weights(m)
        else:
            with m.If(self.load):
                m.d.sync += [self.w_out.eq(self.w_in), self.idx_out.eq(self.idx_in)]
            weight, index = self.w_out, self.idx_out
        top = self.top_in if self.segment_top else None
        for step in range(self.stages if self.segment_top else 0):  # the top bit waits for its product
            delayed = Signal(name=f"top_d{step}")
            m.d.sync += delayed.eq(top)
            top = delayed
        products = _products(m, weight, self.act_in, index, self.m, self.lanes, self.stages, self.multiplier)
        for lane, value in enumerate(products):
            above = self.psum_in.word_select(lane, PSUM_BITS).as_signed()
            if self.segment_top:
                above = Mux(top, 0, above)
            m.d.sync += self.psum_out.word_select(lane, PSUM_BITS).eq(above + value)
        return m

    def _pipelined_weights(self, m: Module):
        """Staging, shadow and active registers; returns the weight and index this cycle computes with."""
        bits = len(self.idx_in)
        shadow_w, active_w = Signal(signed(8)), Signal(signed(8))
        shadow_i, active_i = Signal(unsigned(bits)), Signal(unsigned(bits))
        with m.If(self.shift):
            m.d.sync += [self.w_out.eq(self.w_in), self.idx_out.eq(self.idx_in)]
        with m.If(self.latch):
            m.d.sync += [shadow_w.eq(self.w_in), shadow_i.eq(self.idx_in)]
        with m.If(self.first_in):
            m.d.sync += [active_w.eq(shadow_w), active_i.eq(shadow_i)]
        m.d.sync += [self.first_out.eq(self.first_in), self.valid_out.eq(self.valid_in)]
        if self.segment_top:
            m.d.sync += self.top_out.eq(self.top_in)
        weight = Mux(self.first_in, shadow_w, active_w)
        index = Mux(self.first_in, shadow_i, active_i)
        return weight, index
