"""The layer engine: weighted layers from DRAM to DRAM, one after another — the DMA, the weight buffer, the
double-buffered tile buffer, one activation feeder per array row, the pipelined array, the output stage and the
write-back — run by a controller whose timing comes only from the DMA's handshakes and the buffers' flags.

The cycle model it implements is :mod:`edgesparse.accel.schedule` (and :func:`edgesparse.accel.array.clock_layer`),
in controller cycles: cycle 0 is the first cycle the DMA may start a layer's first transfer; a layer ends in the cycle
its last write-back is done (one whose map stays on chip: below), which is the next layer's cycle 0
(:mod:`edgesparse.accel.simulate` chains them the same way). Per cycle:

- **DMA.** It runs the layer's transfer list (:meth:`~edgesparse.accel.geometry.FoldGeometry.transfers`) in order;
  the head entry starts once its space is free: ``weights(f)`` when fold ``f - slots`` has left its weight-buffer
  slot (its last word was read), ``input(t)`` when tile ``t - 2``'s half of the tile buffer was released (its last
  fold's last vector was read by the bottom row's feeder), ``residual(t)`` (an engine built with
  ``residual_add``: the tile's pixels of the operand, into the output stage's residual buffer, which holds the
  layer's whole operand) at once, ``output(t)`` when tile ``t``'s last byte is in the output buffer (counted from
  the output stage's writes). A transfer's bytes are usable in the cycle its ``done``
  pulses. They land in their buffer a cycle after the DMA moves them (a write stage), which no reader can see: a
  feeder started in the ``done`` cycle presents its first address a cycle later, and the loader reads a fold's
  last two words (the only ones its transfer's last beat can touch) one and two cycles after its first or later,
  so the engine needs three array rows or more.
- **Loader.** Fold ``f``'s R weight words leave the weight buffer (bottom row first) from the cycle its transfer is
  done and fold ``f - 1`` has begun streaming; ``FEED_LATENCY`` cycles later each word enters the array.
- **Stream controller.** Fold ``f`` streams once the previous stream ended, its shadows are loaded (its last word
  was read R cycles ago or more) and its tile's input is in (in a layer that adds, its residual share too); row i's
  feeder starts i cycles after row 0's.
- **Output stage.** Accumulates the row folds, requantizes, adds a residual operand, max-pools (or averages the
  whole map) and writes each pixel's bytes in the next layer's layout (:mod:`edgesparse.rtl.output_stage`); the
  write-back DMA reads them from its buffer.

What each layer is comes from the host (:mod:`edgesparse.rtl.engine_driver`), never when: its descriptor
(:data:`LAYER_FIELDS`: shapes, fold counts, where its table entries start), the DMA's transfer list (addresses
and sizes), the feeders' start values per tile, row fold and row (the addresses and coordinates of
:func:`~edgesparse.rtl.feeder.row_fields`), each tile's pixel and write counts, and the channels'
requantization parameters. The engine is built for one pixel lane and one partial-sum segment (the output stage's
rate), and holds a layer's whole output map in its output buffer.

**Resident maps** (an engine built with ``resident_maps``). The maps the residency plan
(:mod:`edgesparse.accel.residency`) keeps on chip stay in the output buffer, written there by the output stage as
any map is, and are never written back: a layer whose input is resident has no input transfers, and its feeders
read the map from the output buffer (a read port each, :class:`~edgesparse.rtl.feeder.ActivationFeeder`'s
``from_map``) instead of their tile buffers; a layer whose residual operand is resident reads it there too (one more
port). The host places each layer's map in the output buffer (first fit among the maps still live: a resident map
until its last reader, a written-back one during its own layer), so one layer's writes never meet the words it or a
later layer reads. The buffer has no second write port, so nothing else writes it, and the DMA's tile-buffer writes
never share a cycle with the output stage's: that is why the maps live there and not in the tile buffer. A layer
ends in the cycle after its last write or as its last transfer is done, whichever is later (one whose map stays on
chip writes none back), and the next layer's first transfer may start then, as the cycle model has it
(:class:`~edgesparse.accel.schedule.Boundary`). The cost: the output buffer's block RAM once more per array row (and
once for the add), as the tile buffer's; the cycle model still counts resident maps against the input buffer's
capacity (:mod:`edgesparse.accel.residency`), which decides which maps stay.

For the clock (:mod:`edgesparse.rtl.fpga`): every table is read through a registered port (block RAM) addressed by
the next cycle's index, computed from registers (the next fold's table entries are kept beside its position); the
DMA's head entry is a register (its queue is read one entry ahead), the tile counts are read one tile ahead into
registers (:func:`_read_ahead`: a tile's pixel count for the stream controller, its write count as a down-counter),
and the feeder tables hold the walkers' down-counters, so neither a transfer's first cycle, a feeder's start, a
stream's length nor a tile's last write computes behind a block RAM's output. The three decisions — the DMA's
start, the loader's and the stream controller's — read registers and gates only: each condition that compared two
counters (a buffer's room against the transfers of its kind started, the folds left, the weight and input transfers
done ahead of the fold or tile waiting for them, the folds loaded ahead of the streams) is a count kept as a flag
computed a cycle ahead (:func:`_room`), with this cycle's completion or start ORed in where the condition counts
it, and a layer's counts less one are registers. The DMA's buffer writes land behind a write stage, so the start
decision does not share a cycle with the buffers' write decoding; each buffer holds its own copy of the stage
(:class:`~edgesparse.rtl.buffer.WordBuffer`'s ``write_stage``), so the long routes to the R + 2 buffers end at
flip-flops, not in that decoding. None of this moves a cycle: the co-simulation
checks every write's cycle against the cycle model. The feeders' vectors and the weight words leave registers into
the array (``FEED_LATENCY`` 3: no block RAM output shares a cycle with a PE's select); the cycle model counts that
register.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.accel.pipeline import FEED_LATENCY, PRODUCT_STAGES, SUM_REGISTER
from edgesparse.errors import ConfigError
from edgesparse.rtl.array import PipelinedArray, check_array
from edgesparse.rtl.buffer import BLOCK_RAM_BITS, WordBuffer, lanes_per_memory
from edgesparse.rtl.dma import DMA, SimDRAM
from edgesparse.rtl.feeder import COORD_BITS, ActivationFeeder, RowFields
from edgesparse.rtl.fields import pack_fields
from edgesparse.rtl.output_stage import PARAM_BITS, OutputStage
from edgesparse.rtl.pe import check_multiplier, index_bits
from edgesparse.rtl.ppu import ACC_BITS, MULT_BITS, SHIFT_BITS, pool_line_words

CYCLE_BITS = 32
KIND_WEIGHTS, KIND_INPUT, KIND_OUTPUT, KIND_RESIDUAL = 0, 1, 2, 3  # a transfer's kind: also its buffer (``buf_sel``)
COUNT_BITS = 16  # transfers of one kind, folds and tiles of a layer


def row_word_bytes(cols: int, m: int) -> int:
    """Bytes of one weight-buffer word: a row's C int8 values, then its C indices packed at log2(M) bits."""
    return cols + -(-cols * index_bits(m) // 8)


@dataclass(frozen=True)
class EngineSize:
    """What an engine is built for: the array, the DMA's rate, and the capacities of its memories."""

    rows: int
    cols: int
    m: int
    rate: float  # DRAM bytes per cycle
    dram_bytes: int
    weight_slots: int  # folds the weight buffer holds
    tile_words: int  # M-byte words in one half of the tile buffer
    out_words: int  # M-byte words of the output buffer (a layer's whole output map, and the resident maps)
    max_tile_pixels: int
    max_col_folds: int
    max_width: int  # the widest output map (the max pool's line buffer)
    queue: int  # DMA transfers of a layer
    tables: int  # feeder start-value entries per row: tiles x row folds, summed over layers
    max_tiles: int  # tile-count entries, summed over layers
    param_words: int  # column folds of requantization parameters, summed over layers
    max_layers: int
    pool_kernel: int | None = None  # the max pool the output stage is built with (2 or 3)
    global_average: bool = False  # the output stage is built with a global average pool (ResNet's head)
    residual_add: bool = False  # ... and with a residual add and its operand's buffer (out_words deep)
    resident_maps: bool = False  # maps kept on chip, in the output buffer, which the feeders (and the add) read
    stages: int = PRODUCT_STAGES
    multiplier: str = "fabric"

    def __post_init__(self) -> None:
        check_array(self.rows, self.cols, self.m, 1)
        check_multiplier(self.multiplier, 1, self.stages)
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "int" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"the engine's {item.name} must be a positive integer, got {value!r}")
        for name in ("global_average", "residual_add", "resident_maps"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"the engine's {name} must be True or False, got {getattr(self, name)!r}")
        if self.weight_slots < 2:
            raise ConfigError(f"the engine's weight buffer must hold at least two folds, got {self.weight_slots}")
        if self.rows < 3:
            raise ConfigError(f"the engine needs an array of three rows or more (its buffers' write stage), got "
                              f"{self.rows}")

    @property
    def word_bytes(self) -> int:
        return row_word_bytes(self.cols, self.m)

    @property
    def feeder_words(self) -> int:
        """Words a feeder's walk addresses: both tile halves, and the output buffer's resident maps."""
        return max(2 * self.tile_words, self.out_words if self.resident_maps else 0)


def _addr_width(words: int) -> int:
    return max(1, (words - 1).bit_length())


def _read_ahead(m: Module, name: str, port, base, begin, advance) -> Signal:
    """Walk a host table one entry ahead: ``port`` (a registered read port) reads the entry after the current one,
    so that when the walk moves on (``advance``) the current entry's successor is already on ``port.data``.

    The walk starts at entry ``base`` in the cycle ``begin`` is high (read that cycle, its data there the next).
    Returns ``take``: high when ``port.data`` is the new current entry (the cycle after ``begin``, and every
    ``advance``). No block RAM output feeds the logic that moves the walk, and no adder sits on the decision's path
    to the address (``ahead + 1`` is an adder on a register, chosen by it)."""
    ahead, first = Signal.like(base, name=f"{name}_ahead"), Signal(name=f"{name}_first")
    m.d.comb += port.addr.eq(Mux(begin, base, Mux(advance, ahead + 1, ahead)))
    m.d.sync += first.eq(begin)
    with m.If(begin):
        m.d.sync += ahead.eq(base + 1)
    with m.Elif(advance):
        m.d.sync += ahead.eq(ahead + 1)
    return first | advance


def _room(m: Module, name: str, capacity: int | Value, freed, taken, restart) -> Signal:
    """A count a decision takes from, as a registered flag: ``capacity`` when a layer begins (``restart``), one
    more in each ``freed`` cycle, one fewer in each ``taken`` cycle (counted into the new layer when it coincides
    with ``restart``); it never goes below zero: a buffer's room for the DMA's next transfer of its kind, the folds
    left to load, the weight transfers done ahead of the loader.

    Returns a register that says the count is above zero. Its next value is chosen by ``taken`` between two tests
    of the count before it (above zero; above one), made without an adder, so that the decision reaches the
    register through one multiplexer and reads nothing but registers and gates."""
    init = capacity if isinstance(capacity, int) else 0
    room = Signal(COUNT_BITS, init=init, name=f"{name}_room")
    free = Signal(init=int(init > 0), name=f"{name}_free")
    nonempty = Mux(restart, capacity != 0, (room != 0) | freed)
    plural = Mux(restart, capacity > 1, (room[1:] != 0) | ((room == 1) & freed))
    m.d.sync += [room.eq(Mux(restart, capacity, room + freed) - taken), free.eq(Mux(taken, plural, nonempty))]
    return free


def feeder_field_widths(feeder_words: int) -> dict[str, int]:
    """Bit widths of a packed :class:`RowFields` entry (the feeder's address fields span its ``feeder_words``,
    :attr:`EngineSize.feeder_words`)."""
    address = _addr_width(feeder_words) + 2
    widths = {}
    for item in fields(RowFields):
        widths[item.name] = 1 if item.name == "enable" else (
            address if item.name in ("addr", "col_step", "row_step", "image_step") else COORD_BITS)
    return widths


def pack_row_fields(entry: RowFields, feeder_words: int) -> int:
    """One feeder table word: the fields of :class:`RowFields` in order, low bits first, two's complement."""
    return pack_fields(asdict(entry), feeder_field_widths(feeder_words), "feeder", signed=True)


LAYER_FIELDS = ("transfers_end", "folds", "row_folds", "col_folds", "folds_per_tile", "height", "width", "out_height",
                "out_width", "stride_y", "stride_x", "relu", "pool", "raw", "out_blocks", "table_base", "count_base",
                "param_base")
"""A layer's descriptor in the engine's descriptor memory: the end of its transfers in the DMA queue (the queue
holds every layer's, in order), its fold counts, its input and (unpooled) output map and stride, ReLU, pool and raw
(int32 sums plus bias, no requantization: the logits), the words per output pixel, and where its entries start in
the feeder tables, the tile counts and the parameters."""

AVERAGE_FIELDS = ("average", "avg_mult", "avg_shift", "map_last")
"""The descriptor's fields in an engine built with ``global_average``, after :data:`LAYER_FIELDS`: whether the layer
ends in a global average pool, its mantissa and shift, and its map's last pixel (the map is one tile)."""


ADD_FIELDS = ("add", "add_m_a", "add_m_b", "add_shift", "add_relu")
"""The descriptor's fields in an engine built with ``residual_add``, after those: whether the layer adds a residual
operand, the mantissas of its own bytes and of the operand's, the shift, and the ReLU after."""

RESIDENT_FIELDS = ("input_resident", "out_base", "tiles")
"""The descriptor's fields in an engine built with ``resident_maps``, after those: whether the layer's input map is
resident (its feeders read it from the output buffer, where the map starts at the words the feeder tables address),
where its output map starts in the output buffer, and its tile count (the layer ends after its last tile's last
write, when that is after its last transfer: a layer whose map stays on chip writes none back)."""

RESIDENT_OPERAND_FIELDS = ("operand_resident", "operand_base")
"""... and in one built with ``residual_add`` too: whether the residual operand is a resident map, and the word its
walk starts at (the resident map's first in the output buffer; 0 in the residual buffer)."""


def layer_field_widths(size: "EngineSize") -> dict[str, int]:
    """Bit widths of :data:`LAYER_FIELDS` (then :data:`AVERAGE_FIELDS` and :data:`ADD_FIELDS`, in an engine built
    with them) for an engine of ``size``."""
    widths = dict.fromkeys(LAYER_FIELDS, COUNT_BITS)
    widths.update(transfers_end=(size.queue).bit_length(), relu=1, pool=1, raw=1,
                  out_blocks=_addr_width(size.out_words) + 1, table_base=_addr_width(size.tables),
                  count_base=_addr_width(size.max_tiles), param_base=_addr_width(size.param_words))
    if size.global_average:
        widths.update(zip(AVERAGE_FIELDS, (1, MULT_BITS, SHIFT_BITS, _addr_width(size.max_tile_pixels))))
    if size.residual_add:
        widths.update(zip(ADD_FIELDS, (1, MULT_BITS, MULT_BITS, SHIFT_BITS, 1)))
    if size.resident_maps:
        widths.update(zip(RESIDENT_FIELDS, (1, _addr_width(size.out_words), COUNT_BITS)))
        if size.residual_add:
            widths.update(zip(RESIDENT_OPERAND_FIELDS, (1, _addr_width(size.out_words))))
    return widths


def pack_layer(size: "EngineSize", values: dict[str, int]) -> int:
    """One descriptor-memory word: :func:`layer_field_widths`'s fields in order, low bits first."""
    return pack_fields(values, layer_field_widths(size), "layer")


class LayerEngine(wiring.Component):
    """The engine of :class:`EngineSize` ``size`` with a :class:`~edgesparse.rtl.dma.SimDRAM` holding ``image``, or
    (``image`` None) with the DMA's DRAM ports as its own (``dram_r_addr : out``, ``dram_r_data : in``,
    ``dram_w_addr``, ``dram_w_data``, ``dram_w_mask : out``; :class:`~edgesparse.rtl.dma.DMA`), for synthesis.

    Ports (A: address widths of the memories below; every layer setting is held through the layer):

    - ``q_we : Signal(1), in`` / ``q_addr : in`` / ``q_data : in``: write DMA queue entry ``q_addr``
      (:func:`~edgesparse.rtl.dma.pack_descriptor`, its ``buffer`` field the kind: 0 weights, 1 input, 2 output;
      a layer's transfers of each kind in their order: fold, tile, tile);
    - ``t_we : Signal(1), in`` / ``t_row : in`` / ``t_addr : in`` / ``t_data : in``: write entry ``t_addr``
      (tile ``t`` and row fold ``r`` at ``t row_folds + r``) of row ``t_row``'s feeder table
      (:func:`pack_row_fields`);
    - ``c_we``, ``c_addr``, ``c_data : in``: tile ``c_addr``'s pixel count (low 16 bits) and its output writes
      (pixels after pooling times column folds, high 16 bits);
    - ``p_we``, ``p_channel``, ``p_data : in``: output channel ``p_channel``'s bias, mantissa and shift
      (:func:`~edgesparse.rtl.output_stage.pack_params`);
    - ``d_we``, ``d_addr``, ``d_data : in``: layer ``d_addr``'s descriptor (:func:`pack_layer`);
      ``layers : in``: how many layers to run;
    - ``start : Signal(1), in``: a pulse while idle (before the first run, or from the cycle after ``done`` rose
      on), after the host's writes (the tables' a cycle or more before it: write the descriptors last); the next
      cycle is cycle 0, in which the DMA may start layer 0's first transfer. A layer ends in the cycle its last
      transfer is done (its last tile written back); that cycle is the next layer's cycle 0 (its first transfer,
      weights, may start in it);
    - ``cycle : Signal(32), out``: the run's cycle (0 from the cycle after ``start``);
    - ``done : Signal(1), out``: the last layer has ended (from that cycle on);
    - ``layer : out`` / ``fold : out`` / ``head : out``: the layer running, its next fold to stream and the DMA's
      next transfer (for a cycle-limit message);
    - ``out_we : Signal(1), out`` / ``out_addr : out`` / ``out_mask : out``: the output stage's write this cycle
      (a monitor).
    """

    def __init__(self, size: EngineSize, image: bytes | None = None):
        self.size = size
        self.dma = DMA(size.rate, size.dram_bytes, max(size.weight_slots * size.rows, 2 * size.tile_words,
                                                       size.out_words),
                       (size.word_bytes, size.m, size.m) + ((size.m,) if size.residual_add else ()), queue=size.queue)
        self.dram = None if image is None else SimDRAM(size.dram_bytes, self.dma.beat, image)
        self.row_field_bits = sum(feeder_field_widths(size.feeder_words).values())
        tile_bits = _addr_width(size.tables)
        out_bits = _addr_width(size.out_words)
        count = unsigned(COUNT_BITS)
        super().__init__({
            "q_we": In(1), "q_addr": In(range(size.queue)), "q_data": In(self.dma.q_data.shape()),
            "t_we": In(1), "t_row": In(range(size.rows)), "t_addr": In(unsigned(tile_bits)),
            "t_data": In(unsigned(self.row_field_bits)),
            "c_we": In(1), "c_addr": In(range(size.max_tiles)), "c_data": In(unsigned(2 * COUNT_BITS)),
            "p_we": In(1), "p_channel": In(range(size.cols * size.param_words)), "p_data": In(unsigned(PARAM_BITS)),
            "d_we": In(1), "d_addr": In(range(size.max_layers)),
            "d_data": In(unsigned(sum(layer_field_widths(size).values()))), "layers": In(range(size.max_layers + 1)),
            "start": In(1),
            "cycle": Out(unsigned(CYCLE_BITS)), "done": Out(1), "layer": Out(range(size.max_layers + 1)),
            "fold": Out(count), "head": Out(range(size.queue + 1)),
            "out_we": Out(1), "out_addr": Out(unsigned(out_bits)), "out_mask": Out(unsigned(size.m)),
            **({} if image is not None else {  # the DRAM outside: the DMA's DRAM ports are the engine's
                "dram_r_addr": Out(self.dma.dram_r_addr.shape()), "dram_r_data": In(self.dma.dram_r_data.shape()),
                "dram_w_addr": Out(self.dma.dram_w_addr.shape()), "dram_w_data": Out(self.dma.dram_w_data.shape()),
                "dram_w_mask": Out(self.dma.dram_w_mask.shape())}),
        })
        # A monitor, not a port: a used read of a buffer met a write of the same row this cycle, which a buffer
        # built collision_free (no collision logic on hardware) must never see; the driver checks it every cycle.
        self.collision = Signal(name="collision")

    def block_memories(self) -> list[tuple[int, int, int]]:
        """(width, depth, copies) of the memories synthesis maps to block RAM: every registered-read memory of more
        than :data:`BLOCK_RAM_BITS` bits, one copy per read port (the descriptor memory, read combinationally, the
        output stage's channel parameters, marked so, and smaller memories are distributed RAM)."""
        size = self.size
        R, C, M = size.rows, size.cols, size.m
        shared = lanes_per_memory(M, 2 * size.tile_words, self.dma.beat)  # the tile buffer's lanes a memory
        memories = [(sum(self.dma.fields.values()), size.queue, 1),  # the DMA's queue
                    (2 * COUNT_BITS, size.max_tiles, 2),  # the tile counts, read twice
                    (self.row_field_bits, size.tables, R),  # the feeder tables
                    (8 * shared, 2 * size.tile_words, R * M // shared),  # the tile buffer's lanes, a copy per row
                    (8, size.weight_slots * R, size.word_bytes),  # the weight buffer's byte lanes
                    (ACC_BITS, size.max_tile_pixels, C),  # the output stage's accumulators
                    # the output buffer's byte lanes: a copy for the write-back, and, holding resident maps, one
                    # per feeder and one for the residual add
                    (8, size.out_words, M * (1 + (R + size.residual_add if size.resident_maps else 0)))]
        if size.residual_add:  # the residual operands' byte lanes
            memories.append((8, size.out_words, M))
        if size.pool_kernel is not None:  # the max pool's line buffers of a pixel's C bytes (two for 3x3 windows)
            memories.append((8 * C, pool_line_words(size.max_width), 1 if size.pool_kernel == 2 else 2))
        return [(width, depth, copies) for width, depth, copies in memories if width * depth > BLOCK_RAM_BITS]

    def buffer_bytes(self) -> dict[str, int]:
        """Bytes of the weight buffer, of one row's copy of the (double) tile buffer, of the output buffer and (when
        built with the residual add) of the residual operands' buffer."""
        size = self.size
        return {"weights": size.weight_slots * size.rows * size.word_bytes, "tiles": 2 * size.tile_words * size.m,
                "output": size.out_words * size.m,
                **({"residual": size.out_words * size.m} if size.residual_add else {})}

    def elaborate(self, platform) -> Module:
        m = Module()
        size = self.size
        R, C, M = size.rows, size.cols, size.m
        B = max(1, index_bits(M))
        m.submodules.dma = dma = self.dma
        # No buffer read meets a write of the same word: the DMA writes a weight slot or tile half only once its
        # reader is done with it, and its writes land a cycle after it starts (the write stage below).
        m.submodules.weights = weights = WordBuffer(size.word_bytes, size.weight_slots * R, dma.beat,
                                                    collision_free=True, write_stage=True)
        m.submodules.array = array = PipelinedArray(R, C, M, 1, 1, size.stages, size.multiplier)
        m.submodules.output = output = self.output_stage = OutputStage(R, C, M, max_groups=size.max_tile_pixels,
                                                   max_col_folds=size.max_col_folds, out_depth=size.out_words,
                                                   pool_kernel=size.pool_kernel, max_width=size.max_width,
                                                   window=dma.beat, param_words=size.param_words,
                                                   global_average=size.global_average,
                                                   residual_add=size.residual_add,
                                                   map_reads=R if size.resident_maps else 0, write_stage=True)
        feeders = []
        for i in range(R):
            feeder = ActivationFeeder(M, 1, depth=2 * size.tile_words, window=dma.beat, collision_free=True,
                                      map_depth=size.out_words if size.resident_maps else 0, write_stage=True)
            m.submodules[f"feeder_{i}"] = feeder
            feeders.append(feeder)

        # The host's tables. Every read of them is registered (block RAM), addressed by the next cycle's index so
        # that its data is the current one's. None is transparent to the host's writes (the bypass would put a
        # multiplexer after the block RAM): the host writes them before the descriptors, so every read after
        # ``start`` returns them.
        host_only = {"no_rw_check": 1}  # written before the run only: no read meets a write, no collision logic
        m.submodules.tile_counts = tiles = Memory(shape=unsigned(2 * COUNT_BITS), depth=size.max_tiles, init=[],
                                                  attrs=host_only)
        tiles_write = tiles.write_port()
        m.d.comb += [tiles_write.en.eq(self.c_we), tiles_write.addr.eq(self.c_addr), tiles_write.data.eq(self.c_data)]
        m.d.comb += [dma.q_we.eq(self.q_we), dma.q_addr.eq(self.q_addr), dma.q_data.eq(self.q_data),
                     output.p_we.eq(self.p_we), output.p_channel.eq(self.p_channel), output.p_data.eq(self.p_data)]

        running, cycle, finished = Signal(), Signal(CYCLE_BITS), Signal()
        m.d.comb += self.cycle.eq(cycle)
        with m.If(self.start):
            m.d.sync += [running.eq(1), cycle.eq(0), finished.eq(0)]
        with m.Elif(running):
            m.d.sync += cycle.eq(cycle + 1)

        # The layer descriptors: the current layer's fields are registers, loaded when it begins.
        widths = layer_field_widths(size)
        # The next layer's descriptor waits in a register (read a layer ahead: entry 0 while idle, entry layer + 1
        # while running, entry 0 again once the run has finished; the host's write of that entry bypasses the
        # memory, so a start right after it sees it), so a layer's fields leave a flip-flop as it begins.
        descriptors = Memory(shape=unsigned(sum(widths.values())), depth=size.max_layers, init=[])
        m.submodules.descriptors = descriptors
        d_write, d_read = descriptors.write_port(), descriptors.read_port(domain="comb")
        upcoming = Signal.like(d_read.data, name="upcoming")
        m.d.sync += upcoming.eq(Mux(self.d_we & (self.d_addr == d_read.addr), self.d_data, d_read.data))
        m.d.comb += [d_write.en.eq(self.d_we), d_write.addr.eq(self.d_addr), d_write.data.eq(self.d_data)]
        layer = Signal(range(size.max_layers + 1))
        cur, incoming, offset = {}, {}, 0
        for name, width in widths.items():
            cur[name] = Signal(signed(width) if name.startswith("stride") else unsigned(width), name=f"cur_{name}")
            incoming[name] = upcoming[offset:offset + width]
            offset += width
        # A count's last value (count - 1) in a register beside it: no comparison with it waits for an adder.
        final = {name: Signal.like(cur[name], name=f"final_{name}")
                 for name in ("transfers_end", "folds_per_tile", "row_folds", "col_folds")}
        transfers_last = final["transfers_end"]  # the layer's last transfer
        # Whether the transfer in flight is the layer's last, and whether the layer is the run's last: registers,
        # set as the transfer starts and as the layer begins (a layer moves two transfers or more, so a next
        # layer's first transfer, which may start as this layer ends, is never its last).
        final_transfer, last_layer = Signal(), Signal()
        with m.If(dma.starting):
            m.d.sync += final_transfer.eq(dma.head == transfers_last)
        layer_done = running & ~finished & dma.done & final_transfer
        if size.resident_maps:  # a layer that writes its map on chip may end after its last write, not transfer
            transfers_over, writes_over = Signal(), Signal()  # from the cycle after each
            last_written = Signal()  # the layer's last tile's last write, this cycle (the tile counts, below)
            layer_done = running & ~finished & (transfers_over | dma.done & final_transfer) & writes_over
        begin_layer = self.start | (layer_done & ~last_layer)
        read_layer = Signal.like(layer)  # the descriptor read: 0 while idle and once finished, else layer + 1
        m.d.comb += [self.layer.eq(layer), d_read.addr.eq(read_layer),
                     self.done.eq(finished | (layer_done & last_layer))]
        with m.If(begin_layer):
            m.d.sync += [cur[name].eq(incoming[name]) for name in widths]
            m.d.sync += [final[name].eq(incoming[name] - 1) for name in final]
            m.d.sync += [layer.eq(Mux(self.start, 0, layer + 1)), read_layer.eq(Mux(self.start, 1, layer + 2)),
                         last_layer.eq(Mux(self.start, self.layers == 1, layer + 2 == self.layers))]

        with m.If(layer_done & last_layer):
            m.d.sync += [finished.eq(1), read_layer.eq(0)]
        if size.resident_maps:
            with m.If(begin_layer):
                m.d.sync += [transfers_over.eq(0), writes_over.eq(0)]
            with m.Else():
                with m.If(dma.done & final_transfer):
                    m.d.sync += transfers_over.eq(1)
                with m.If(last_written):
                    m.d.sync += writes_over.eq(1)

        # DMA <-> DRAM and the buffers (kind = buffer).
        m.d.comb += [dma.reset_queue.eq(self.start), dma.q_count.eq(Mux(running, size.queue, 0))]
        ports = (("r_addr", "w_addr", "w_data", "w_mask"), ("r_data",))  # the DMA's outputs, its inputs
        if self.dram is not None:
            m.submodules.dram = self.dram
            m.d.comb += [getattr(self.dram, name).eq(getattr(dma, f"dram_{name}")) for name in ports[0]]
            m.d.comb += [getattr(dma, f"dram_{name}").eq(getattr(self.dram, name)) for name in ports[1]]
        else:
            m.d.comb += [getattr(self, f"dram_{name}").eq(getattr(dma, f"dram_{name}")) for name in ports[0]]
            m.d.comb += [getattr(dma, f"dram_{name}").eq(getattr(self, f"dram_{name}")) for name in ports[1]]
        # The write stage: each buffer registers the DMA's writes (``write_stage``: the module docstring, no reader
        # sees it), its mask gated here by the transfer's buffer.
        targets = [(weights, KIND_WEIGHTS, ""), *((feeder, KIND_INPUT, "") for feeder in feeders)]
        if size.residual_add:  # the residual operands' buffer, in the output stage
            targets.append((output, KIND_RESIDUAL, "res_"))
        for buffer, kind, prefix in targets:
            m.d.comb += [getattr(buffer, f"{prefix}w_row").eq(dma.buf_row),
                         getattr(buffer, f"{prefix}w_pos").eq(dma.buf_pos),
                         getattr(buffer, f"{prefix}w_data").eq(dma.buf_w_data),
                         getattr(buffer, f"{prefix}w_mask").eq(Mux(dma.buf_sel == kind, dma.buf_w_mask, 0))]
        m.d.comb += [output.r_row.eq(dma.buf_row), output.r_pos.eq(dma.buf_pos), dma.buf_r_data.eq(output.r_data)]

        # Completions: which kind (buffer) the finished transfer was.
        weights_done = dma.done & (dma.done_buffer == KIND_WEIGHTS)
        # A tile's input is in with its rows, or, in a layer that adds, with its residual share (the transfer after).
        inputs_done = dma.done & (dma.done_buffer == KIND_INPUT)
        streamed_operand = None
        if size.residual_add:
            streamed_operand = cur["add"] & ~cur["operand_resident"] if size.resident_maps else cur["add"]
            inputs_done = dma.done & (dma.done_buffer == Mux(streamed_operand, KIND_RESIDUAL, KIND_INPUT))
        m.d.comb += self.head.eq(dma.head)

        # Loader: fold f's words leave the weight buffer once they are in and fold f - 1 has begun streaming (this
        # cycle or earlier). Its conditions, and the stream controller's, are registered counts (:func:`_room`):
        # folds left to load, folds begun streaming ahead of the loader, weight transfers done ahead of it (this
        # cycle's completion included).
        fb = COUNT_BITS
        next_stream = Signal(fb)
        begin_stream, begin_load = Signal(), Signal()
        loading, step = Signal(), Signal(range(R))
        weight_row = Signal(_addr_width(size.weight_slots * R))
        carry_load = loading & (step != R - 1)
        loads_left = _room(m, "loads_left", incoming["folds"], 0, begin_load, begin_layer)
        streamed = _room(m, "streamed", 1, begin_stream, begin_load, begin_layer) | begin_stream
        weights_in = _room(m, "weights_in", 0, weights_done, begin_load, begin_layer) | weights_done
        m.d.comb += begin_load.eq(running & ~carry_load & loads_left & streamed & weights_in)
        shifting, word_step = Signal(), Signal(range(R))
        m.d.comb += [shifting.eq(carry_load | begin_load), word_step.eq(Mux(carry_load, step + 1, 0)),
                     weights.rd0_addr.eq(weight_row)]
        last_word = shifting & (word_step == R - 1)
        collision = (shifting & weights.read_collisions["rd0"]
                     | dma.busy & (dma.buf_sel == KIND_OUTPUT) & output.read_collision
                     | output.residual_collision
                     | Cat(*(feeder.collision for feeder in feeders)).any())
        if size.resident_maps:  # a feeder's read of a resident map met the output stage's write of its row
            collision |= Cat(*(feeder.map_used & clash for feeder, clash in zip(feeders, output.map_collisions))).any()
        m.d.comb += self.collision.eq(collision)
        # The word enters the array FEED_LATENCY cycles after its read: the buffer's registered read, then registers
        # (as the feeders' vectors do); the strobes travel beside it.
        held_word, shift, latch = weights.rd0_data, shifting, last_word
        for d in range(FEED_LATENCY):
            later = Signal(name=f"shift_{d}"), Signal(name=f"latch_{d}")
            m.d.sync += [later[0].eq(shift), later[1].eq(latch)]
            shift, latch = later
            if d:
                word = Signal(8 * size.word_bytes, name=f"weight_word_{d}")
                m.d.sync += word.eq(held_word)
                held_word = word
        m.d.comb += [array.shift.eq(shift), array.latch.eq(latch)]
        for j in range(C):  # the word: C values, then C indices of log2(M) bits (none on a dense array)
            m.d.comb += array.w_top.word_select(j, 8).eq(held_word.word_select(j, 8))
            if index_bits(M):
                m.d.comb += array.idx_top.word_select(j, B).eq(held_word[8 * C + B * j:8 * C + B * (j + 1)])
        with m.If(running):
            m.d.sync += [loading.eq(shifting), step.eq(word_step)]
            with m.If(shifting):
                m.d.sync += weight_row.eq(Mux(weight_row == size.weight_slots * R - 1, 0, weight_row + 1))

        # Stream controller: the fold streaming now (held from its first group), the next fold's position.
        prev_live, more, left = Signal(), Signal(), Signal(COUNT_BITS)
        col_fold, row_fold, tile_fold = (Signal(fb, name=n) for n in ("col_fold", "row_fold", "tile_fold"))
        held = {name: Signal(fb, name=f"live_{name}") for name in ("col_fold", "row_fold", "tile_last")}
        group, held_group = Signal(COUNT_BITS), Signal(COUNT_BITS)
        tile_ends = tile_fold == final["folds_per_tile"]
        last_row_fold, last_col_fold = row_fold == final["row_folds"], col_fold == final["col_folds"]
        # The table addresses of the next fold to stream, kept in registers beside its position (every candidate
        # next value is an adder on registers, chosen by the stream decision): its tile's first feeder-table entry
        # and its own (table base + tile x row folds + row fold). Its tile's pixel count is a register too, the
        # tile-count table read one tile ahead.
        tile_start, entry = (Signal(fb, name=n) for n in ("tile_start", "entry"))
        # Row 0's table is read at the next cycle's entry within a layer (``entry_read``); as a layer begins it is
        # read at its first entry the cycle after, with no begin decision in front of the block RAM's address (no
        # fold streams within three cycles of a layer's begin: its first weights must come in and load first).
        tile_start_next, entry_read = Signal(fb, name="tile_start_next"), Signal(fb, name="entry_read")
        advance = begin_stream  # never as a layer begins: the ending layer streamed all its folds, none is loaded yet
        next_tile = tile_start + cur["row_folds"]
        m.d.comb += [tile_start_next.eq(Mux(begin_layer, incoming["table_base"],
                                            Mux(advance & tile_ends, next_tile, tile_start))),
                     entry_read.eq(Mux(advance, Mux(last_row_fold, Mux(tile_ends, next_tile, tile_start), entry + 1),
                                       entry))]
        m.d.sync += [tile_start.eq(tile_start_next), entry.eq(Mux(begin_layer, incoming["table_base"], entry_read))]
        with m.If(begin_layer):
            m.d.sync += row_fold.eq(0)
        with m.Elif(advance):
            m.d.sync += row_fold.eq(Mux(last_row_fold, 0, row_fold + 1))
        counts = tiles.read_port(transparent_for=())
        length = Signal(COUNT_BITS)  # the next fold's tile's pixels: one group a cycle
        with m.If(_read_ahead(m, "counts", counts, incoming["count_base"], begin_layer, advance & tile_ends)):
            m.d.sync += length.eq(counts.data[:COUNT_BITS])
        carry_on = prev_live & more
        # Streams left, folds whose last weight word was read (visible the cycle after: R cycles after the first),
        # input tiles done ahead of the next fold's tile (this cycle's completion included).
        streams_left = _room(m, "streams_left", incoming["folds"], 0, begin_stream, begin_layer)
        ready = _room(m, "ready", 0, running & last_word, begin_stream, begin_layer)
        inputs_in = _room(m, "inputs_in", 0, inputs_done, advance & tile_ends, begin_layer) | inputs_done
        if size.resident_maps:  # a tile of a resident input (and no streamed operand) waits for no transfer
            staged = ~cur["input_resident"]
            if streamed_operand is not None:
                staged |= streamed_operand
            inputs_in = inputs_in | ~staged
        m.d.comb += begin_stream.eq(running & ~carry_on & streams_left & ready & inputs_in)
        live = carry_on | begin_stream
        now = {"col_fold": Mux(begin_stream, col_fold, held["col_fold"]),
               "row_fold": Mux(begin_stream, row_fold, held["row_fold"]),
               "tile_last": Mux(begin_stream, tile_ends, held["tile_last"])}
        m.d.comb += [group.eq(Mux(carry_on, held_group + 1, 0)), self.fold.eq(next_stream)]
        last_group = live & Mux(begin_stream, length == 1, left == 1)
        with m.If(running):
            m.d.sync += [prev_live.eq(live), held_group.eq(group)]
            m.d.sync += [held[name].eq(value) for name, value in now.items()]
            with m.If(carry_on):
                m.d.sync += [left.eq(left - 1), more.eq(left != 1)]
            with m.If(begin_stream):
                m.d.sync += [next_stream.eq(next_stream + 1), left.eq(length - 1), more.eq(length != 1)]
                m.d.sync += [col_fold.eq(Mux(last_row_fold, Mux(last_col_fold, 0, col_fold + 1), col_fold)),
                             tile_fold.eq(Mux(tile_ends, 0, tile_fold + 1))]
        # The tile's half is free once the bottom row's feeder read the tile's last vector: R - 1 cycles after the
        # last group entered row 0's feeder, counted the cycle after.
        release = last_group & now["tile_last"]
        for d in range(R - 1):
            later = Signal(name=f"release_{d}")
            m.d.sync += later.eq(release)
            release = later

        # Feeders: row i starts i cycles after row 0, with its table entry for (tile, row fold); row 0's table is
        # read at ``entry_read``, row i's at row i - 1's entry.
        start, where, read_at = begin_stream, entry, entry_read
        settings = {"height": cur["height"], "width": cur["width"], "out_height": cur["out_height"],
                    "out_width": cur["out_width"], "stride_y": cur["stride_y"], "stride_x": cur["stride_x"]}
        widths = feeder_field_widths(size.feeder_words)
        for i, feeder in enumerate(feeders):
            if i:
                later = Signal(name=f"start_{i}"), Signal.like(where, name=f"entry_{i}")
                m.d.sync += [later[0].eq(start), later[1].eq(where)]
                read_at, (start, where) = where, later
            table = Memory(shape=unsigned(self.row_field_bits), depth=size.tables, init=[], attrs=host_only)
            m.submodules[f"table_{i}"] = table
            write = table.write_port()
            read = table.read_port(transparent_for=())
            m.d.comb += [write.en.eq(self.t_we & (self.t_row == i)), write.addr.eq(self.t_addr),
                         write.data.eq(self.t_data), read.addr.eq(read_at), feeder.start.eq(start)]
            m.d.comb += [getattr(feeder, name).eq(value) for name, value in settings.items()]
            offset = 0
            for name, width in widths.items():
                m.d.comb += getattr(feeder, name).eq(read.data[offset:offset + width])
                offset += width
            first = start
            for d in range(FEED_LATENCY):
                later = Signal(name=f"first_{i}_{d}")
                m.d.sync += later.eq(first)
                first = later
            m.d.comb += [array.act_left.word_select(i, 8 * M).eq(feeder.out), array.first_left[i].eq(first)]
            if size.resident_maps:  # a resident input: the feeder reads it from the output buffer
                m.d.comb += [feeder.from_map.eq(cur["input_resident"]),
                             getattr(output, f"map{i}_addr").eq(feeder.map_addr),
                             feeder.map_data.eq(getattr(output, f"map{i}_data"))]
        m.d.comb += array.valid_left[R - 1].eq(feeders[R - 1].out_real)

        # Output stage: its tags say what enters row 0 (FEED_LATENCY cycles after the controller's decision) and meet
        # column j's sum R - 1 + j cycles later; the sums come the PEs' product stages and their register later still.
        tag = (live, group, now["col_fold"], now["row_fold"] == 0, now["row_fold"] == final["row_folds"])
        for d in range(FEED_LATENCY + size.stages + SUM_REGISTER):
            later = tuple(Signal.like(s, name=f"tag{d}_{k}") for k, s in enumerate(tag))
            m.d.sync += [a.eq(b) for a, b in zip(later, tag)]
            tag = later
        m.d.comb += [output.entry_live.eq(tag[0]), output.entry_group.eq(tag[1]), output.entry_col_fold.eq(tag[2]),
                     output.entry_first.eq(tag[3]), output.entry_last.eq(tag[4]),
                     output.psum_in.eq(array.psum_out), output.valid_in.eq(array.valid_out),
                     output.start.eq(begin_layer), output.relu.eq(cur["relu"]), output.height.eq(cur["out_height"]),
                     output.width.eq(cur["out_width"]), output.param_base.eq(cur["param_base"]),
                     output.last_col_fold.eq(final["col_folds"]), output.out_blocks.eq(cur["out_blocks"])]
        if size.pool_kernel is not None:
            m.d.comb += output.pool.eq(cur["pool"])
        built = (AVERAGE_FIELDS if size.global_average else ()) + (ADD_FIELDS if size.residual_add else ())
        m.d.comb += [getattr(output, name).eq(cur[name]) for name in built]  # the output stage's ports of those names
        # Where the output stage's walks start: sampled as the layer begins, so the incoming descriptor's.
        m.d.comb += output.out_base.eq(incoming["out_base"] if size.resident_maps else 0)
        if size.resident_maps and size.residual_add:
            m.d.comb += [output.operand_resident.eq(cur["operand_resident"]),
                         output.operand_base.eq(incoming["operand_base"])]
        if output.raw_capable:
            m.d.comb += output.raw.eq(cur["raw"])
        m.d.comb += [self.out_we.eq(output.out_we), self.out_addr.eq(output.out_addr),
                     self.out_mask.eq(output.out_mask)]

        # Tiles written: the output stage's writes counted down from each tile's count, the table read one tile
        # ahead (the test is a register's against 1, not a block RAM's output against a counter).
        written = tiles.read_port(transparent_for=())
        writes_left = Signal(COUNT_BITS)  # writes the tile being written has still to take
        tile_written = running & output.out_we & (writes_left == 1)
        with m.If(_read_ahead(m, "written", written, incoming["count_base"], begin_layer, tile_written)):
            m.d.sync += writes_left.eq(written.data[COUNT_BITS:])
        with m.Elif(running & output.out_we):
            m.d.sync += writes_left.eq(writes_left - 1)
        if size.resident_maps:  # tiles still to write, counted down to the layer's last write
            tiles_left = Signal(COUNT_BITS)
            m.d.comb += last_written.eq(tile_written & (tiles_left == 1))
            with m.If(begin_layer):
                m.d.sync += tiles_left.eq(incoming["tiles"])
            with m.Elif(tile_written):
                m.d.sync += tiles_left.eq(tiles_left - 1)

        # The DMA's start: the head entry's kind, whether it is in the layer and its buffer's room, all registers.
        # Rooms: weight slots (freed as the loader reads a fold's last word), tile halves (released), tiles written
        # (each output transfer takes one); a kind's transfers are queued in its order. in_layer is head <
        # transfers_end a cycle ahead; as a layer begins its first two entries are in it (every layer moves weights
        # and writes outputs back).
        taken = [dma.starting & (dma.head_buffer == kind) for kind in (KIND_WEIGHTS, KIND_INPUT, KIND_OUTPUT)]
        weights_free = _room(m, "weights", size.weight_slots, running & last_word, taken[0], begin_layer)
        tiles_free = _room(m, "tiles", 2, release, taken[1], begin_layer)
        written_free = _room(m, "written", 0, tile_written, taken[2], begin_layer)
        in_layer = Signal()
        m.d.sync += in_layer.eq(begin_layer | Mux(dma.starting, dma.head < transfers_last,
                                                  dma.head < cur["transfers_end"]))
        with m.Switch(dma.head_buffer):
            with m.Case(KIND_WEIGHTS):  # the next layer's first transfer may start in the cycle this layer ends
                m.d.comb += dma.allow.eq(running & (in_layer & weights_free | layer_done & ~last_layer))
            with m.Case(KIND_INPUT):
                m.d.comb += dma.allow.eq(running & in_layer & tiles_free)
            with m.Case(KIND_RESIDUAL):  # its own words of a buffer that holds the layer's whole operand
                m.d.comb += dma.allow.eq(running & in_layer)
            with m.Default():
                m.d.comb += dma.allow.eq(running & in_layer & written_free)

        with m.If(begin_layer):
            m.d.sync += [next_stream.eq(0), loading.eq(0), weight_row.eq(0), prev_live.eq(0), col_fold.eq(0),
                         tile_fold.eq(0)]
        return m

