"""The output stage: what sits between the pipelined array's output port and the output buffer.

A layer's sums leave the array fold by fold (:class:`~edgesparse.rtl.layer_unit.LayerUnit`): per unit (tile, column
fold) every row fold streams the tile's pixels through the C columns, column j one cycle behind column j - 1, and each
sum is only that row fold's share of the dot product. This stage

1. **accumulates over row folds** in one inferred memory per column (int32 per pixel, one tile deep: a block RAM
   with one read and one write port): the first row fold writes its sums, the middle ones add theirs, and on the
   last row fold the final sum (the running total plus the last share, never written back) goes on. On an array of
   three rows or more the total is read a cycle ahead into a register, so the adder starts from a flip-flop, not
   the block RAM's output (a pixel's next row fold comes R cycles or more after its write, which has landed by
   then), and so is the parameter address (the column fold a cycle ahead plus the layer's base); on a smaller
   array the read is transparent for the write (a 1-row array's folds come every cycle). One tile deep is enough,
   with no second buffer: folds stream in order, so the next unit's first row fold overwrites a pixel's total only
   after the current unit's last row fold has read it;
2. **requantizes** it in a :class:`~edgesparse.rtl.ppu.Requantizer` lane per column, with the output channel's bias,
   mantissa and shift read from a small parameter memory per column (channel ``c`` at word ``c // C`` of column
   ``c % C``'s memory, written by the host) and the layer's ReLU;
3. **deskews** the columns (column j's int8 results wait ``C - 1 - j`` cycles) so that a pixel's C channels travel
   together; in a layer with a residual add (a stage built with ``residual_add``) adds each pixel's operand bytes,
   read from the residual buffer (:meth:`_residual_stage`); then, when the layer has one, runs the
   :class:`~edgesparse.rtl.ppu.MaxPool` on them in raster order, or (a stage built with ``global_average``) the
   :class:`~edgesparse.rtl.ppu.GlobalAvgPool`: C lanes sum the map's pixels and requantize the sums once its last
   pixel is in, so each unit writes one pixel, its C averages;
4. **writes** each pixel's C bytes into the output buffer (a :class:`~edgesparse.rtl.buffer.WordBuffer`, read back
   by the write-back DMA through its window port) laid out as the next layer's tile buffer
   (:mod:`edgesparse.rtl.feeder`: M-byte words, channel-last, word ``pixel B + c // M``, byte ``c % M``, B words per
   pixel): one word write a cycle with byte enables, column fold ``f`` at word ``f C // M``, bytes
   ``[f C % M, f C % M + C)`` (hence C divides M).

Throughput: C sums a cycle (one accumulator lane per column), exactly the rate of an array with one pixel lane and
one partial-sum segment (``pixels_per_cycle = 1``, ``segments = 1``), which is all this stage is built for. An array
with two pixel lanes delivers 2C sums a cycle and a fold running s segments s C (and the max pool and the single
write port take one pixel a cycle): this stage refuses both configurations, and an engine built around it would
have to stream such folds at 1 / (L s) the rate, which the Python cycle model (:mod:`edgesparse.accel.schedule`)
does not model. Latency: :data:`OUTPUT_LATENCY`, :data:`POOLED_LATENCY`, and ``RESIDUAL_LATENCY`` more for an
adding layer, ``AVGPOOL_LATENCY`` more for an averaged layer (the single home of those constants,
:mod:`edgesparse.accel.pipeline`): the cycle model times a final sum when it leaves the array, and a unit's bytes
are in the output buffer (for the write-back DMA or the next layer) that many cycles plus one after its last one,
which it does not count yet.

Tiles and the pool: the stage restarts the max pool at each unit's first pixel with the layer's map size, so a
pooled layer's tiles must hold whole pooling windows: a 2x2 pool needs tiles of an even number of whole output rows,
a 3x3 stride-2 pool (whose windows overlap rows) one tile per map, and so does an averaged layer (its sums restart
at each unit).
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError
from edgesparse.accel.pipeline import (ACCUMULATE_LATENCY, AVGPOOL_LATENCY, MAXPOOL_LATENCY,  # noqa: F401
                                       OUTPUT_LATENCY, POOLED_LATENCY, REQUANT_LATENCY, RESIDUAL_LATENCY)
from edgesparse.rtl.buffer import WordBuffer
from edgesparse.rtl.ppu import ACC_BITS, MULT_BITS, SHIFT_BITS, GlobalAvgPool, MaxPool, Requantizer, ResidualAdd

PARAM_BITS = ACC_BITS + MULT_BITS + SHIFT_BITS  # a channel's bias, mantissa and shift, bias low


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"the output stage's {name} must be a positive integer, got {value!r}")


def _delayed(m: Module, value, cycles: int, name: str) -> Value:
    """``value`` through ``cycles`` registers (``{name}_d0``, ...)."""
    for d in range(cycles):
        later = Signal(value.shape(), name=f"{name}_d{d}")
        m.d.sync += later.eq(value)
        value = later
    return value


def _power_of_two(value: int) -> bool:
    return value & (value - 1) == 0


def pack_params(bias: int, mult: int, shift: int) -> int:
    """A channel's word in the parameter memory (``p_data``): bias (int32) low, then the mantissa, then the shift."""
    return (int(bias) & 0xFFFFFFFF) | (int(mult) << ACC_BITS) | (int(shift) << (ACC_BITS + MULT_BITS))


class OutputStage(wiring.Component):
    """Accumulation over row folds, requantization, the optional max pool and the output buffer of an R x C array
    (one pixel lane, one segment), for tiles up to ``max_groups`` pixels, ``max_col_folds`` column folds and an
    output buffer of ``out_depth`` words of ``m_out`` bytes, read back ``window`` bytes (default ``m_out``) a cycle.

    Ports (C = ``cols``; A = the output buffer's address width; W = ``window``; G, F: widths of
    ``range(max_groups)``, ``range(max_col_folds)``):

    - ``p_we : Signal(1), in`` / ``p_channel : Signal(range(C P)), in`` / ``p_data : Signal(69), in``: the host
      writes channel ``p_channel``'s parameters (:func:`pack_params`: int32 bias, 31-bit mantissa, 6-bit shift);
      P = ``param_words`` (default ``max_col_folds``) column folds' worth, several layers' one after another;
    - ``param_base : Signal(range(P)), in``: the layer's first column fold in the parameter memories;
    - ``start : Signal(1), in``: a pulse before a layer's first sum: its writes begin at word ``out_base``;
    - ``average : Signal(1), in`` / ``avg_mult : Signal(31), in`` / ``avg_shift : Signal(6), in`` / ``map_last :
      Signal(G), in`` (a stage built with ``global_average``): the layer ends in a global average pool with this
      mantissa and shift, over maps whose last pixel is pixel ``map_last`` of its tile (a tile holds one whole map);
      a layer sets at most one of ``pool`` and ``average``;
    - ``add : Signal(1), in`` / ``add_m_a``, ``add_m_b : Signal(31), in`` / ``add_shift : Signal(6), in`` /
      ``add_relu : Signal(1), in`` (a stage built with ``residual_add``): the layer adds a residual operand to its
      requantized bytes as the reference's ``add`` (``m_a`` the layer's, ``m_b`` the operand's mantissa), ReLU
      after when ``add_relu``; ``res_w_row : Signal(A), in`` / ``res_w_pos : Signal(range(m_out)), in`` /
      ``res_w_data : Signal(8 W), in`` / ``res_w_mask : Signal(W), in``: the DMA's window write into the residual
      buffer (:class:`~edgesparse.rtl.buffer.WordBuffer`, ``out_depth`` words; with ``write_stage`` it lands a
      cycle later, through the buffer's own registers), which holds the operand laid out as the layer's unpooled
      output (pixel p's channels at words ``out_base + p B`` on);
    - ``relu : Signal(1), in`` / ``pool : Signal(1), in`` (a stage built with a ``pool_kernel``) / ``height``,
      ``width : Signal(range(max_width + 1)), in`` / ``out_base : Signal(A), in`` / ``out_blocks : Signal(A), in``:
      the layer's settings, held through the layer: ReLU after requantization, max pool the map of ``height`` x
      ``width`` output pixels, the first output word and the words per pixel B (``ceil(Cout / m_out)``);
    - ``entry_live : Signal(1), in`` / ``entry_group : Signal(G), in`` / ``entry_col_fold : Signal(F), in`` /
      ``entry_first : Signal(1), in`` / ``entry_last : Signal(1), in``: what enters the array's row 0 this cycle
      (the layer unit's monitor, :class:`~edgesparse.rtl.layer_unit.LayerUnit`): a pixel of the tile (its index in
      the tile), its fold's column fold, and whether the fold is its unit's first and last row fold; column j's sum
      of that pixel reaches ``psum_in`` R - 1 + j cycles later, and the stage delays the tag to meet it;
    - ``psum_in : Signal(32 C), in`` / ``valid_in : Signal(C), in``: the array's output port (the layer unit's
      ``psum_out`` and ``valid_out``): column j's int32 sum at bits ``[32 j, 32 j + 32)``, bit j set for a real
      pixel's sum;
    - ``r_row : Signal(A), in`` / ``r_pos : Signal(range(m_out)), in`` / ``r_data : Signal(8 W), out``: the output
      buffer's window read (the DMA's write-back, :class:`~edgesparse.rtl.buffer.WordBuffer`): the W bytes from
      byte ``r_pos`` of word ``r_row`` on, one cycle after the address;
    - ``last_col_fold : Signal(range(max_col_folds)), in``: the layer's last column fold: its write also zeroes the
      rest of its word (the channels past Cout, padding in the next layer's layout, whatever a previous layer left);
    - ``raw : Signal(1), in`` (only when 4 C <= M, ``raw_capable``): the layer is not requantized (the network's
      logits): each channel's int32 sum plus bias is written, four bytes little-endian a channel, in the same
      layout with 4-byte channels (column fold f at byte ``4 C f`` of the pixel's words), at the same cycles;
    - ``out_we : Signal(1), out`` / ``out_addr : Signal(A), out`` / ``out_data : Signal(8 m_out), out`` /
      ``out_mask : Signal(m_out), out``: the write the output buffer takes this cycle (byte k when mask bit k;
      the data holds the pixel's C bytes at every C-byte offset), a monitor for the cycle model: the buffer's word
      write port takes it;
    - with ``map_reads`` = K (the engine's resident maps, which live in the output buffer): ``map{k}_addr :
      Signal(A), in`` / ``map{k}_data : Signal(8 m_out), out`` for k in ``range(K)``: word ``map{k}_addr`` of the
      output buffer, a cycle after the address (a feeder's read of a resident map); and, built with
      ``residual_add`` too, ``operand_resident : Signal(1), in`` / ``operand_base : Signal(A), in``: the layer's
      residual operand is the resident map at word ``operand_base`` of the output buffer, not the residual
      buffer's (whose operand starts at word ``operand_base`` too, 0 for the DMA's).
    """

    def __init__(self, rows: int, cols: int, m_out: int, max_groups: int, max_col_folds: int, out_depth: int,
                 pool_kernel: int | None = None, max_width: int = 64, lanes: int = 1, segments: int = 1,
                 window: int | None = None, param_words: int | None = None, global_average: bool = False,
                 residual_add: bool = False, map_reads: int = 0, write_stage: bool = False):
        param_words = max_col_folds if param_words is None else param_words
        for name, value in (("row count", rows), ("column count", cols), ("block size M", m_out),
                            ("tile depth", max_groups), ("column fold count", max_col_folds),
                            ("parameter memory depth", param_words),
                            ("output buffer depth", out_depth), ("maximum width", max_width)):
            _check_positive(name, value)
        if not _power_of_two(cols) or not _power_of_two(m_out) or m_out % cols:
            raise ConfigError(f"the output stage writes a column fold's {cols} channels into one {m_out}-byte word: "
                              f"both must be powers of two with C <= M; got C = {cols}, M = {m_out}")
        if lanes != 1:
            raise ConfigError(f"the output stage takes one pixel lane (C sums a cycle); got {lanes!r} lanes")
        if segments != 1:
            raise ConfigError(f"the output stage takes one partial-sum segment per column; got {segments!r}")
        if pool_kernel not in (None, 2, 3):
            raise ConfigError(f"the output stage pools 2x2 stride 2 or 3x3 stride 2 padding 1 windows, got kernel "
                              f"{pool_kernel!r}")
        for name, flag in (("global_average", global_average), ("residual_add", residual_add),
                           ("write_stage", write_stage)):
            if not isinstance(flag, bool):
                raise ConfigError(f"the output stage's {name} must be True or False, got {flag!r}")
        if not isinstance(map_reads, int) or isinstance(map_reads, bool) or map_reads < 0:
            raise ConfigError(f"the output stage's map read port count must be a non-negative integer, got "
                              f"{map_reads!r}")
        window = m_out if window is None else window
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= m_out:
            raise ConfigError(f"the output stage's read window must be 1 to M = {m_out} bytes, got {window!r}")
        self.rows, self.cols, self.m_out, self.window = rows, cols, m_out, window
        self.max_groups, self.max_col_folds, self.out_depth = max_groups, max_col_folds, out_depth
        self.pool_kernel, self.max_width, self.param_words = pool_kernel, max_width, param_words
        self.global_average, self.residual_add, self.map_reads = global_average, residual_add, map_reads
        self.write_stage = write_stage
        self.addr_bits = max(1, (out_depth - 1).bit_length())
        self.raw_capable = 4 * cols <= m_out  # a column fold's int32 sums fit one word
        ports = {
            "p_we": In(1), "p_channel": In(range(cols * param_words)), "p_data": In(unsigned(PARAM_BITS)),
            "param_base": In(range(param_words)), "start": In(1), "relu": In(1),
            "height": In(range(max_width + 1)), "width": In(range(max_width + 1)),
            "out_base": In(unsigned(self.addr_bits)), "out_blocks": In(unsigned(self.addr_bits)),
            "last_col_fold": In(range(max_col_folds)),
            **({"raw": In(1)} if 4 * cols <= m_out else {}),
            "entry_live": In(1), "entry_group": In(range(max_groups)), "entry_col_fold": In(range(max_col_folds)),
            "entry_first": In(1), "entry_last": In(1),
            "psum_in": In(unsigned(ACC_BITS * cols)), "valid_in": In(unsigned(cols)),
            "r_row": In(unsigned(self.addr_bits)), "r_pos": In(range(m_out)), "r_data": Out(unsigned(8 * window)),
            "out_we": Out(1), "out_addr": Out(unsigned(self.addr_bits)), "out_data": Out(unsigned(8 * m_out)),
            "out_mask": Out(unsigned(m_out)),
        }
        if pool_kernel is not None:
            ports["pool"] = In(1)
        if global_average:
            ports.update(average=In(1), avg_mult=In(unsigned(MULT_BITS)), avg_shift=In(unsigned(SHIFT_BITS)),
                         map_last=In(range(max_groups)))
        if residual_add:
            ports.update(add=In(1), add_m_a=In(unsigned(MULT_BITS)), add_m_b=In(unsigned(MULT_BITS)),
                         add_shift=In(unsigned(SHIFT_BITS)), add_relu=In(1), res_w_row=In(unsigned(self.addr_bits)),
                         res_w_pos=In(range(m_out)), res_w_data=In(unsigned(8 * window)), res_w_mask=In(window))
        for k in range(map_reads):
            ports.update({f"map{k}_addr": In(unsigned(self.addr_bits)), f"map{k}_data": Out(unsigned(8 * m_out))})
        if map_reads and residual_add:
            ports.update(operand_resident=In(1), operand_base=In(unsigned(self.addr_bits)))
        super().__init__(ports)
        self.read_collision = Signal(name="read_collision")  # a monitor: the window read met a write of its row
        # Monitors: map read port k's row met the write's (its user checks them where it keeps the data).
        self.map_collisions = [Signal(name=f"map{k}_collision") for k in range(map_reads)]
        # The output buffer: word reads for the resident maps' readers, and one more for a resident operand (its
        # memories are the ones a testbench reads a resident map from).
        self.out_buffer = WordBuffer(m_out, out_depth, window, word_reads=map_reads + (map_reads > 0 and residual_add),
                                     word_write=True, collision_free=True)
        # A monitor too: an adding layer's operand read met a write of its row (the residual buffer has no
        # collision logic).
        self.residual_collision = Signal(name="residual_collision")

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, M = self.rows, self.cols, self.m_out
        col_bits = (C - 1).bit_length()
        m.submodules.requant = requant = Requantizer(C)
        m.d.comb += requant.relu.eq(self.relu)

        # The entry tags, delayed: tag[d] is what entered row 0 d cycles ago (tag[0] this cycle).
        def tag_now():
            return (self.entry_live, self.entry_group, self.entry_col_fold, self.entry_first, self.entry_last)

        tags = [tag_now()]
        for d in range(1, R + C - 1):
            delayed = tuple(Signal.like(s, name=f"tag{d}_{n}") for s, n in zip(
                tags[-1], ("live", "group", "col_fold", "first", "last")))
            m.d.sync += [a.eq(b) for a, b in zip(delayed, tags[-1])]
            tags.append(delayed)

        early = R >= 3  # the accumulators are read a cycle ahead (the module docstring)
        unit_first = None  # column C - 1's "first pixel of a unit's final stream", and its column fold
        raw_lanes = []  # per column: the int32 sum plus bias of a raw layer, REQUANT_LATENCY after stage 2
        for j in range(C):
            live, group, col_fold, first, last = tags[R - 1 + j]
            psum, valid = self.psum_in.word_select(j, ACC_BITS), self.valid_in[j] & live
            # Memories: the running totals (one tile) and the channels' parameters (one word per column fold).
            # Read a cycle ahead, a pixel's total is never read in the cycle it is written (its next row fold's read
            # comes R - 2 cycles after that write or later: folds start R cycles apart), so no collision logic.
            acc_mem = Memory(shape=unsigned(ACC_BITS), depth=self.max_groups, init=[],
                             attrs={"no_rw_check": 1} if early else {})
            # The parameters in distributed RAM: a block RAM per column would hold a few hundred bits.
            par_mem = Memory(shape=unsigned(PARAM_BITS), depth=self.param_words, init=[],
                             attrs={"ram_style": "distributed"})
            m.submodules[f"acc{j}"], m.submodules[f"par{j}"] = acc_mem, par_mem
            acc_w = acc_mem.write_port()
            acc_r = acc_mem.read_port(transparent_for=() if early else (acc_w,))
            par_w, par_r = par_mem.write_port(), par_mem.read_port(transparent_for=())
            m.d.comb += [par_w.en.eq(self.p_we & (self.p_channel[:col_bits] == j) if C > 1 else self.p_we),
                         par_w.addr.eq(self.p_channel >> col_bits), par_w.data.eq(self.p_data),
                         acc_r.addr.eq(tags[R - 2 + j][1] if early else group), acc_r.en.eq(1), par_r.en.eq(1)]
            if early:  # the parameter address from a register too: the column fold a cycle ahead plus the base
                par_addr = Signal.like(par_r.addr, name=f"c{j}_par_addr")
                m.d.sync += par_addr.eq(tags[R - 2 + j][2] + self.param_base)
                m.d.comb += par_r.addr.eq(par_addr)
            else:
                m.d.comb += par_r.addr.eq(col_fold + self.param_base)
            # 1: the sum and its flags beside the memories' reads; the running total, written back unless final.
            psum1, valid1 = Signal(ACC_BITS, name=f"c{j}_psum1"), Signal(name=f"c{j}_valid1")
            first1, last1, group1 = Signal(name=f"c{j}_first1"), Signal(name=f"c{j}_last1"), Signal.like(group)
            m.d.sync += [psum1.eq(psum), valid1.eq(valid), first1.eq(first), last1.eq(last), group1.eq(group)]
            total = acc_r.data
            if early:  # read a cycle ahead: its data waits in a register beside the sum's
                total = Signal(ACC_BITS, name=f"c{j}_total")
                m.d.sync += total.eq(acc_r.data)
            running = Signal(ACC_BITS, name=f"c{j}_running")
            m.d.comb += [running.eq(Mux(first1, 0, total) + psum1),
                         acc_w.addr.eq(group1), acc_w.data.eq(running), acc_w.en.eq(valid1 & ~last1)]
            # 2: the final total and the channel's parameters, into the requantizer lane.
            final, fvalid = Signal(ACC_BITS, name=f"c{j}_final"), Signal(name=f"c{j}_fvalid")
            params = Signal(PARAM_BITS, name=f"c{j}_params")
            m.d.sync += [final.eq(running), fvalid.eq(valid1 & last1), params.eq(par_r.data)]
            if self.raw_capable:  # the int32 sum plus bias, as late as the requantizer's result
                value = Signal(ACC_BITS, name=f"c{j}_raw0")
                m.d.sync += value.eq(final + params[:ACC_BITS])
                for d in range(1, REQUANT_LATENCY):
                    later = Signal(ACC_BITS, name=f"c{j}_raw{d}")
                    m.d.sync += later.eq(value)
                    value = later
                raw_lanes.append(value)
            m.d.comb += [requant.acc.word_select(j, ACC_BITS).eq(final),
                         requant.bias.word_select(j, ACC_BITS).eq(params[:ACC_BITS]),
                         requant.mult.word_select(j, MULT_BITS).eq(params[ACC_BITS:ACC_BITS + MULT_BITS]),
                         requant.shift.word_select(j, SHIFT_BITS).eq(params[ACC_BITS + MULT_BITS:]),
                         requant.valid[j].eq(fvalid)]
            if j == C - 1:
                flag1, cf1 = Signal(name="unit_first1"), Signal.like(col_fold, name="unit_cf1")
                m.d.sync += [flag1.eq(valid & last & (group == 0)), cf1.eq(col_fold)]
                unit_first = (flag1, cf1)
                if self.global_average:  # the map's last pixel (of its only tile)
                    map_last = Signal(name="map_last1")
                    m.d.sync += map_last.eq(valid & last & (group == self.map_last))

        # The unit-start flag and column fold (and the map's-last flag) travel beside column C - 1's sum through
        # stage 2 and the requantizer.
        flag, cf = unit_first
        for d in range(1, ACCUMULATE_LATENCY + REQUANT_LATENCY):
            later = Signal(name=f"unit_first{d + 1}"), Signal.like(cf, name=f"unit_cf{d + 1}")
            m.d.sync += [later[0].eq(flag), later[1].eq(cf)]
            flag, cf = later
        if self.global_average:
            map_last = _delayed(m, map_last, ACCUMULATE_LATENCY + REQUANT_LATENCY - 1, "map_last")
        # Deskew: column j's result waits C - 1 - j cycles (its int32 sum plus bias too, for a raw layer).
        pixel, raw_pixel = [], []
        for j in range(C):
            lanes = [(requant.out.word_select(j, 8), pixel, 8)]
            if self.raw_capable:
                lanes.append((raw_lanes[j], raw_pixel, ACC_BITS))
            for value, into, width in lanes:
                for d in range(C - 1 - j):
                    later = Signal(width, name=f"c{j}_deskew{width}_{d}")
                    m.d.sync += later.eq(value)
                    value = later
                into.append(value)
        data, valid = Cat(*pixel), requant.out_valid[C - 1]
        raw_data = Cat(*raw_pixel) if self.raw_capable else None
        if self.residual_add:
            stream = self._residual_stage(m, data, valid, flag, cf, map_last if self.global_average else None)
            data, valid, flag, cf, map_last = stream
        event, event_cf = valid & flag, cf
        averaged = None  # the global average pool's (data, valid, unit column fold), on the unpooled stream
        if self.global_average:
            m.submodules.average = gap = GlobalAvgPool(C)
            m.d.comb += [gap.data.eq(data), gap.valid.eq(self.average & valid), gap.last.eq(map_last),
                         gap.mult.eq(self.avg_mult), gap.shift.eq(self.avg_shift)]
            # The unit's column fold meets its averages AVGPOOL_LATENCY cycles after its map's last pixel.
            averaged = (gap.out, gap.out_valid, _delayed(m, cf, AVGPOOL_LATENCY, "average_cf"))

        if self.pool_kernel is not None:
            m.submodules.max_pool = pool = MaxPool(C, self.max_width, self.pool_kernel)
            m.d.comb += [pool.start.eq(self.pool & event), pool.height.eq(self.height), pool.width.eq(self.width),
                         pool.data.eq(data), pool.valid.eq(self.pool & valid)]
            # The unit's start meets the pool's output MAXPOOL_LATENCY cycles later: after the previous map's last
            # maximum, no later than this map's first.
            p_event, p_cf = event, event_cf
            for d in range(MAXPOOL_LATENCY):
                later = Signal(name=f"pool_event{d}"), Signal.like(event_cf, name=f"pool_cf{d}")
                m.d.sync += [later[0].eq(p_event), later[1].eq(p_cf)]
                p_event, p_cf = later
            data = Mux(self.pool, pool.out, data)
            valid = Mux(self.pool, pool.out_valid, valid)
            event, event_cf = Mux(self.pool, p_event, event), Mux(self.pool, p_cf, event_cf)
        if averaged is not None:  # each unit writes one pixel: its averages (a unit's first write and last)
            a_data, a_valid, a_cf = averaged
            data, valid = Mux(self.average, a_data, data), Mux(self.average, a_valid, valid)
            event, event_cf = Mux(self.average, a_valid, event), Mux(self.average, a_cf, event_cf)

        here, fold = self._pixel_walk(m, "", valid, event, event_cf, self.out_base)

        def placed(pixel_data, channel_bytes: int) -> tuple:
            """The word write of a column fold's C channels of ``channel_bytes`` each: word offset, data, mask."""
            per_word = M // (channel_bytes * C)  # column folds per word
            shift = (per_word - 1).bit_length()
            offset = fold[:shift] if per_word > 1 else Const(0, 1)
            width = channel_bytes * C
            mask = Mux(fold == self.last_col_fold, Const((1 << M) - 1, M), Const((1 << width) - 1, M)) \
                << (offset * width)
            return (fold >> shift, Cat(*([pixel_data] * per_word)) & (Const((1 << 8 * width) - 1, 8 * M)
                                                                         << (offset * 8 * width)), mask)

        word, out_data, mask = placed(data, 1)
        if self.raw_capable:
            raw_word, raw_out, raw_mask = placed(raw_data, 4)
            word, out_data, mask = (Mux(self.raw, raw_word, word), Mux(self.raw, raw_out, out_data),
                                    Mux(self.raw, raw_mask, mask))
        m.d.sync += [self.out_we.eq(valid & ~self.start), self.out_addr.eq(here + word), self.out_data.eq(out_data),
                     self.out_mask.eq(mask)]
        # No read of the buffer meets a write of the same word: the write-back reads only tiles whose writes are
        # done, a layer's writes go to its own pixels' words (the next layer's begin after its last write-back), and
        # the resident maps a layer reads are not the words it writes.
        m.submodules.out_buffer = out_buffer = self.out_buffer
        for k in range(self.map_reads):
            m.d.comb += [getattr(out_buffer, f"rd{k}_addr").eq(getattr(self, f"map{k}_addr")),
                         getattr(self, f"map{k}_data").eq(getattr(out_buffer, f"rd{k}_data")),
                         self.map_collisions[k].eq(out_buffer.read_collisions[f"rd{k}"])]
        m.d.comb += [self.read_collision.eq(out_buffer.read_collisions["window"]),
                     out_buffer.ww_addr.eq(self.out_addr), out_buffer.ww_data.eq(self.out_data),
                     out_buffer.ww_mask.eq(Mux(self.out_we, self.out_mask, 0)),
                     out_buffer.r_row.eq(self.r_row), out_buffer.r_pos.eq(self.r_pos),
                     self.r_data.eq(out_buffer.r_data)]
        return m

    def _residual_stage(self, m: Module, data, valid, flag, cf, map_last) -> tuple:
        """The residual add on the requantized stream (``data`` a pixel's C bytes, ``valid``, the unit-start
        ``flag``, the column fold ``cf``, the map's-last flag or None): each pixel's C operand bytes are read from
        the residual buffer at the pixel's own word (the operand is laid out as the layer's unpooled output), a
        cycle before the :class:`~edgesparse.rtl.ppu.ResidualAdd`. Returns the stream, RESIDUAL_LATENCY cycles later
        in a layer that adds, as it was in one that does not. Only an adding layer's pixels enter the add: a layer
        that writes its map on chip ends with its last write, and the next layer, which may add, begins while the
        add's registers would still hold that layer's last pixels."""
        M, C = self.m_out, self.cols
        m.submodules.residual_buffer = operands = WordBuffer(M, self.out_depth, self.window, word_reads=1,
                                                             collision_free=True, write_stage=self.write_stage)
        m.d.comb += [operands.w_row.eq(self.res_w_row), operands.w_pos.eq(self.res_w_pos),
                     operands.w_data.eq(self.res_w_data), operands.w_mask.eq(self.res_w_mask)]
        resident = self.map_reads > 0  # the operand may be a resident map, in the output buffer
        here, fold = self._pixel_walk(m, "residual_", valid, valid & flag, cf,
                                      self.operand_base if resident else self.out_base)
        shift = (M // C - 1).bit_length()  # column folds per word: 2^shift
        words, collision = operands.rd0_data, operands.read_collisions["rd0"]
        m.d.comb += operands.rd0_addr.eq(here + (fold >> shift))
        if resident:
            port = f"rd{self.map_reads}"
            m.d.comb += getattr(self.out_buffer, f"{port}_addr").eq(here + (fold >> shift))
            resident_word = getattr(self.out_buffer, f"{port}_data")
            words = Mux(_delayed(m, self.operand_resident, 1, "operand_resident"), resident_word, words)
            collision = Mux(self.operand_resident, self.out_buffer.read_collisions[port], collision)
        m.d.comb += self.residual_collision.eq(self.add & valid & collision)
        operand = words[:8 * C]
        if shift:
            offset = _delayed(m, fold[:shift], 1, "residual_offset")
            operand = words.word_select(offset, 8 * C)
        m.submodules.residual_add = add = ResidualAdd(C)
        m.d.comb += [add.a.eq(_delayed(m, data, 1, "residual_a")), add.b.eq(operand),
                     add.valid.eq(Mux(_delayed(m, valid & self.add, 1, "residual_valid"), (1 << C) - 1, 0)),
                     add.m_a.eq(self.add_m_a), add.m_b.eq(self.add_m_b), add.shift.eq(self.add_shift),
                     add.relu.eq(self.add_relu)]
        later = [add.out, add.out_valid[0]] + [_delayed(m, value, RESIDUAL_LATENCY, f"residual_{name}")
                                               for value, name in ((flag, "flag"), (cf, "cf"))]
        before = [data, valid, flag, cf]
        if map_last is not None:
            later.append(_delayed(m, map_last, RESIDUAL_LATENCY, "residual_map_last"))
            before.append(map_last)
        stream = [Mux(self.add, after, now) for after, now in zip(later, before)]
        return (*stream, None) if map_last is None else tuple(stream)

    def _pixel_walk(self, m: Module, prefix: str, valid, event, event_cf, first) -> tuple:
        """A stream's pixel words: a unit's pixels (``valid``, its first with ``event`` and its column fold
        ``event_cf``) at B words a pixel from word ``first`` (a layer setting, sampled at ``start``) on, a tile's
        column folds over the same pixels (column fold 0 starts where the previous tile ended). Returns this cycle's
        pixel word and column fold (its registers' names start with ``prefix``)."""
        next_addr, tile_base = (Signal(self.addr_bits, name=f"{prefix}next_addr"),
                                Signal(self.addr_bits, name=f"{prefix}tile_base"))
        unit_cf = Signal.like(event_cf, name=f"{prefix}unit_cf")
        base = Mux(event_cf == 0, next_addr, tile_base)
        here = Mux(event, base, next_addr)
        with m.If(self.start):
            m.d.sync += [next_addr.eq(first), tile_base.eq(first), unit_cf.eq(0)]
        with m.Else():
            m.d.sync += next_addr.eq(Mux(valid, here + self.out_blocks, here))
            with m.If(event):
                m.d.sync += unit_cf.eq(event_cf)
                with m.If(event_cf == 0):
                    m.d.sync += tile_base.eq(base)
        return here, Mux(event, event_cf, unit_cf)
