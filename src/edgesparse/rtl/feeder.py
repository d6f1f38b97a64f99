"""The activation feeder: one array row's M-wide int8 vectors, pixel group after pixel group, read from the tile
buffer with padding, stride, kernel position and channel block applied in hardware.

Today :func:`edgesparse.rtl.cosim.stream_words` builds in Python what each row of the array takes every cycle; the
feeder builds one row's part of it (both pixel lanes): row ``r`` of a layer holds kernel position ``r // (B S)``
(``ky, kx = divmod(., kw)``) and channel block ``(r % (B S)) // S`` (:meth:`~edgesparse.accel.mapping.LoweredLayer.
row_block`), and takes, for output pixel ``(image, oy, ox)``, channels ``[b M, (b + 1) M)`` of input pixel
``(image, oy sh - ph + ky, ox sw - pw + kx)``, zeros outside the map (padding) and beyond ``Cin``.

The tile buffer is a :class:`~edgesparse.rtl.buffer.WordBuffer` of M-byte words, byte per channel, channel-last,
written by the DMA a window of up to M bytes a cycle at any byte lane::

    word ((image H + y - base) W + x) B + b  =  channels [b M, (b + 1) M) of input pixel (y, x), byte j = b M + j

``base`` is the first input row (of image 0) the buffer holds (a tile's halo); channels past ``Cin`` are zero.

The feeder walks its pixels with counters and adders only (no multiplier, no division): each lane holds its
pixel's output column, input tap position and word address in registers, and a word read port of the buffer reads
that registered address (a registered read: the old fold unit's critical path was a combinational read behind an
address adder). The per-row start values and address steps are the controller's arithmetic, once per fold and row;
the Python form, which a test and the future controller share, is :func:`row_fields`. At M = 16 with a 1024-word
buffer the feeder infers block RAM, one block per byte lane (yosys: 16 RAMB18E1 on xc7, 16 DP16KD on ECP5, each
lane using half its block; the buffer was one M-byte-wide memory in 4 RAMB36 or 8 DP16KD before it took unaligned
windows), and placed and routed alone on ECP5 at 172.6 MHz with that earlier buffer (``benchmarks/engine_fmax.py``);
its walker's critical path is a zero test, a step select and the address adder.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError
from edgesparse.rtl.buffer import WordBuffer, lanes_per_memory

COORD_BITS = 16  # signed map coordinates and strides (maps up to 32k pixels a side)

@dataclass(frozen=True)
class RowFields:
    """The feeder's start values for one row of one fold (see :func:`row_fields`)."""

    rows_left: int  # output rows after the first pixel's in its image, columns after it in its row (lane 0):
    cols_left: int  # the walker's down-counters, ready to load (no subtraction behind the table's block RAM)
    iy: int  # its tap's input row and column (may lie in the padding)
    ix: int
    addr: int  # its tap's word address (meaningless outside the map)
    iy_top: int  # tap row at output row 0: ky - ph
    ix_left: int  # tap column at output column 0: kx - pw
    col_step: int  # address step to the next output column: sw B
    row_step: int  # address step from the last column of an output row to the first of the next
    image_step: int  # address step from the last pixel of an image to the first of the next
    pixels: int  # real pixels of the row's sequence (from its first), at most groups * lanes
    groups: int  # vectors per lane to put out (the stream length)
    enable: int  # the row holds a slot (else it takes zeros)


def row_fields(*, in_hw: tuple[int, int], out_hw: tuple[int, int], kernel_w: int, stride: tuple[int, int],
               padding: tuple[int, int], blocks: int, position: int, block: int, first_pixel: int, pixels: int,
               groups: int, lanes: int, base: int = 0, enable: bool = True) -> RowFields:
    """The start values and steps of one row: kernel position ``position`` (``ky, kx = divmod(position,
    kernel_w)``), channel ``block``, pixels ``[first_pixel, first_pixel + pixels)`` of the layer (image-major),
    ``groups`` vectors a lane (one or more); the tile buffer holds input rows from ``base`` on."""
    if not isinstance(groups, int) or groups < 1:
        raise ConfigError(f"a feeder's stream puts out one vector a lane or more, got groups = {groups!r}")
    (height, width), (out_h, out_w), (sh, sw), (ph, pw) = in_hw, out_hw, stride, padding
    ky, kx = divmod(position, kernel_w)

    def address(image: int, oy: int, ox: int) -> int:
        return ((image * height + oy * sh - ph + ky - base) * width + ox * sw - pw + kx) * blocks + block

    image, rest = divmod(first_pixel, out_h * out_w)
    oy, ox = divmod(rest, out_w)
    return RowFields(rows_left=out_h - 1 - oy, cols_left=out_w - 1 - ox, iy=oy * sh - ph + ky, ix=ox * sw - pw + kx,
                     addr=address(image, oy, ox), iy_top=ky - ph, ix_left=kx - pw, col_step=sw * blocks,
                     row_step=address(0, 1, 0) - address(0, 0, out_w - 1),
                     image_step=address(1, 0, 0) - address(0, out_h - 1, out_w - 1),
                     pixels=max(0, min(pixels, groups * lanes)), groups=groups, enable=int(enable))


def _walk(state, count: int, settings: dict):
    """A lane's walker ``count`` pixels on (0 to 2): (output rows left in the image, output columns left in the
    row, tap row, tap column, address), wrapping at the end of an output row and of an image. The rows and columns
    count down, so the end of a row is a zero test of a register, not a comparison behind an adder, in front of
    the address adder (the walker's critical path)."""
    rows_left, cols_left, iy, ix, addr = state
    for _ in range(count):
        end_col, end_row = cols_left == 0, rows_left == 0
        rows_left, cols_left, iy, ix, addr = (
            Mux(end_col, Mux(end_row, settings["last_row"], rows_left - 1), rows_left),
            Mux(end_col, settings["last_col"], cols_left - 1),
            Mux(end_col, Mux(end_row, settings["iy_top"], iy + settings["stride_y"]), iy),
            Mux(end_col, settings["ix_left"], ix + settings["stride_x"]),
            addr + Mux(end_col, Mux(end_row, settings["image_step"], settings["row_step"]), settings["col_step"]))
    return rows_left, cols_left, iy, ix, addr


class ActivationFeeder(wiring.Component):
    """One array row's activation vectors for ``lanes`` pixels a cycle from a tile buffer of ``depth`` M-byte words,
    written ``window`` bytes (default M) a cycle; ``collision_free``: the writer never writes a word in the cycle
    the walk reads it (:class:`~edgesparse.rtl.buffer.WordBuffer`'s flag: no collision logic on hardware);
    ``write_stage``: the window write lands a cycle later, through the buffer's own registers (its flag too).

    Ports (M = ``m``, L = ``lanes``, W = ``window``; every ``in`` below ``start`` is sampled with ``start``;
    coordinates and steps are signed ``COORD_BITS``-bit, addresses signed ``A + 2`` bits, A the buffer's address
    width):

    - ``w_row : Signal(A), in`` / ``w_pos : Signal(range(M)), in`` / ``w_data : Signal(8 W), in`` /
      ``w_mask : Signal(W), in``: the tile buffer's window write (:class:`~edgesparse.rtl.buffer.WordBuffer`: window
      byte i, where mask bit i is set, to byte ``w_pos + i`` from byte 0 of word ``w_row`` on; channel j of a word's
      block is its byte j);
    - ``start : Signal(1), in``: a pulse: put out ``groups`` (one or more) vectors per lane from the values below
      (the walk goes live without testing ``groups``, so the start values go from the table's block RAM straight
      into registers);
    - ``height``, ``width : in``: the input map's size; ``out_height``, ``out_width : in``: the output map's;
    - ``stride_y``, ``stride_x : in``: the convolution's stride;
    - ``rows_left``, ``cols_left``, ``iy``, ``ix``, ``addr : in``: lane 0's first pixel (output rows after it in
      its image and columns after it in its row, tap row and column, tap word address; lane l starts l pixels
      later);
    - ``iy_top``, ``ix_left``, ``col_step``, ``row_step``, ``image_step : in``: see :class:`RowFields`;
    - ``pixels``, ``groups``, ``enable : in``: see :class:`RowFields`;
    - ``busy : Signal(1), out``: vectors are still to come;
    - ``out : Signal(8 M L), out``: the vectors (lane l at bits ``[8 M l, 8 M (l + 1))``), zero for padding, for a
      pixel past ``pixels`` and for a row without a slot;
    - ``out_real : Signal(L), out``: lane l's vector belongs to a real pixel (a sum to keep, for the valid bits);
    - ``out_valid : Signal(1), out``: ``out`` holds one of the row's ``groups`` vectors (``start`` in cycle t: group g's
      vectors on ``out`` in t + 3 + g, :data:`~edgesparse.accel.pipeline.FEED_LATENCY`).

    With ``map_depth`` (one lane only), the walk may read a map held elsewhere instead of the tile buffer (the
    engine's resident maps, in its output stage's buffer), word for word as it would read the tile buffer:

    - ``from_map : Signal(1), in``: sampled with ``start``: this stream reads the map, not the tile buffer;
    - ``map_addr : Signal(range(map_depth)), out``: the walk's word address, for a registered read port of the map;
    - ``map_data : Signal(8 M), in``: that port's data, a cycle after the address.
    """

    def __init__(self, m: int, lanes: int = 1, depth: int = 256, window: int | None = None,
                 collision_free: bool = False, map_depth: int = 0, write_stage: bool = False):
        if not isinstance(m, int) or isinstance(m, bool) or m < 1 or m & (m - 1):
            raise ConfigError(f"the feeder's block size M must be a power of two, got {m!r}")
        if lanes not in (1, 2):
            raise ConfigError(f"the feeder serves one or two pixel lanes, got {lanes!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ConfigError(f"the feeder's tile buffer depth must be a positive integer, got {depth!r}")
        window = m if window is None else window
        if not isinstance(window, int) or isinstance(window, bool) or not 1 <= window <= m:
            raise ConfigError(f"the feeder's write window must be 1 to M = {m} bytes, got {window!r}")
        for name, flag in (("collision_free", collision_free), ("write_stage", write_stage)):
            if not isinstance(flag, bool):
                raise ConfigError(f"the feeder's {name} must be a bool, got {flag!r}")
        if not isinstance(map_depth, int) or isinstance(map_depth, bool) or map_depth < 0:
            raise ConfigError(f"the feeder's map depth must be a non-negative integer, got {map_depth!r}")
        if map_depth and lanes != 1:
            raise ConfigError(f"the feeder reads a map beside its tile buffer on one pixel lane, got {lanes} lanes")
        # Monitors, not ports: a read whose data the walk keeps (live, inside the map) met a write of its row (the
        # tile buffer's); such a read of the map beside it (its owner checks that port's collisions).
        self.collision, self.map_used = Signal(name="collision"), Signal(name="map_used")
        self.m, self.lanes, self.depth, self.window, self.collision_free = m, lanes, depth, window, collision_free
        self.map_depth, self.write_stage = map_depth, write_stage
        self.tile_bits = max(1, (depth - 1).bit_length())
        self.addr_bits = max(1, (max(depth, map_depth) - 1).bit_length())
        coord, address = signed(COORD_BITS), signed(self.addr_bits + 2)
        count = unsigned(COORD_BITS)
        super().__init__({
            "w_row": In(unsigned(self.tile_bits)), "w_pos": In(range(m)), "w_data": In(unsigned(8 * window)),
            "w_mask": In(unsigned(window)),
            "start": In(1),
            "height": In(count), "width": In(count), "out_height": In(count), "out_width": In(count),
            "stride_y": In(coord), "stride_x": In(coord),
            "rows_left": In(coord), "cols_left": In(coord), "iy": In(coord), "ix": In(coord), "addr": In(address),
            "iy_top": In(coord), "ix_left": In(coord),
            "col_step": In(address), "row_step": In(address), "image_step": In(address),
            "pixels": In(count), "groups": In(count), "enable": In(1),
            "busy": Out(1), "out": Out(unsigned(8 * m * lanes)), "out_real": Out(unsigned(lanes)),
            "out_valid": Out(1),
            **({"from_map": In(1), "map_addr": Out(range(map_depth)), "map_data": In(unsigned(8 * m))}
               if map_depth else {}),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        M, L = self.m, self.lanes
        m.submodules.buffer = buffer = WordBuffer(M, self.depth, self.window, word_reads=L,
                                                  lanes_per_memory=lanes_per_memory(M, self.depth, self.window),
                                                  collision_free=self.collision_free, write_stage=self.write_stage)
        m.d.comb += [buffer.w_row.eq(self.w_row), buffer.w_pos.eq(self.w_pos), buffer.w_data.eq(self.w_data),
                     buffer.w_mask.eq(self.w_mask)]

        # Per-fold settings, held from `start`.
        names = ("height", "width", "stride_y", "stride_x", "iy_top", "ix_left", "col_step", "row_step",
                 "image_step", "enable")
        inputs = {name: getattr(self, name) for name in names}
        inputs.update(last_row=self.out_height - 1, last_col=self.out_width - 1)
        held = {name: Signal(signed(COORD_BITS) if name.startswith("last") else getattr(self, name).shape(),
                             name=f"held_{name}") for name in inputs}
        with m.If(self.start):
            m.d.sync += [held[name].eq(value) for name, value in inputs.items()]
        if self.map_depth:  # this stream reads the map, not the tile buffer (held from start: a layer setting)
            from_map = Signal()
            with m.If(self.start):
                m.d.sync += from_map.eq(self.from_map)

        coord, address = signed(COORD_BITS), signed(self.addr_bits + 2)
        left = Signal(unsigned(COORD_BITS))  # groups still to put out
        remaining = Signal(unsigned(COORD_BITS))  # real pixels still to come, from lane 0's current pixel
        live = Signal()  # the walkers hold a group this cycle
        data, real, used_collisions = [], [], []
        for lane in range(L):
            state = tuple(Signal(shape, name=f"l{lane}_{name}") for shape, name in (
                (coord, "rows_left"), (coord, "cols_left"), (coord, "iy"), (coord, "ix"), (address, "addr")))
            m.d.comb += getattr(buffer, f"rd{lane}_addr").eq(state[4][:self.tile_bits])
            if self.map_depth:
                m.d.comb += self.map_addr.eq(state[4][:self.map_addr.shape().width])
            inside = ((state[2] >= 0) & (state[2] < held["height"]) & (state[3] >= 0)
                      & (state[3] < held["width"]) & held["enable"])
            lane_real = live & (remaining > lane)
            keep, is_real = Signal(name=f"l{lane}_keep"), Signal(name=f"l{lane}_real")
            m.d.sync += [keep.eq(inside & lane_real), is_real.eq(lane_real)]
            used = inside & lane_real
            word = getattr(buffer, f"rd{lane}_data")
            if self.map_depth:
                m.d.comb += self.map_used.eq(used & from_map)
                used, word = used & ~from_map, Mux(from_map, self.map_data, word)
            used_collisions.append(used & buffer.read_collisions[f"rd{lane}"])
            data.append(Mux(keep, word, 0))
            real.append(is_real)
            # Start: lane l's first pixel is lane 0's, l pixels on (walked with the inputs: they are held from
            # the next cycle on); then every lane moves L pixels a cycle.
            start_state = (self.rows_left, self.cols_left, self.iy, self.ix, self.addr)
            with m.If(self.start):
                m.d.sync += [reg.eq(value) for reg, value in zip(state, _walk(start_state, lane, inputs))]
            with m.Elif(live):
                m.d.sync += [reg.eq(value) for reg, value in zip(state, _walk(state, L, held))]
        with m.If(self.start):
            m.d.sync += [left.eq(self.groups), remaining.eq(self.pixels), live.eq(1)]
        with m.Elif(live):
            m.d.sync += [left.eq(left - 1), live.eq(left != 1),
                         remaining.eq(Mux(remaining > L, remaining - L, 0))]
        # The outputs leave registers: the tile buffer's block RAM feeds them, not the PEs' selects (its
        # clock-to-out and the route to the array would otherwise share a cycle with the select).
        valid_read = Signal()
        m.d.sync += [valid_read.eq(live), self.out_valid.eq(valid_read)]
        m.d.comb += self.collision.eq(Cat(*used_collisions).any())
        m.d.comb += self.busy.eq(live | valid_read)
        for lane in range(L):
            m.d.sync += [self.out.word_select(lane, 8 * M).eq(data[lane]), self.out_real[lane].eq(real[lane])]
        return m
