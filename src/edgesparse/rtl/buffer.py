"""The on-chip word buffer between the DMA and a consumer that reads whole words.

The DMA moves a variable number of bytes a cycle (0 to its beat W, :mod:`edgesparse.rtl.dma`) at a sequential but
unaligned position, while the weight loader, the activation feeders and the output stage read or write whole words
of ``word_bytes`` bytes (the weight buffer's words are ``C + C B / 8`` bytes, 6 for C = 4 and B = 4: not a power of
two). :class:`WordBuffer` serves both: it stores ``depth`` words as memories of G byte lanes each (G consecutive
lanes, :func:`lanes_per_memory`; one lane by default), so a window of up to ``word_bytes`` bytes starting at any byte
lane touches each lane at most once, in the window's word or the next. Every read is registered (the data one cycle
after the address), so each memory infers block RAM: a block per memory and read port. A byte lane fills a block at
2048 words; a lane of 1024 words (the 16-byte feeder buffer's) would leave half of an ECP5 DP16KD or an xc7 RAMB18
empty, so two lanes share one in its 18-bit mode. A memory of several lanes has one address a cycle: the window's
bytes in it must all be in one word, which holds when the window and the memory are at most half a word (the window
wraps into the next word only from the word's upper half into its lower half). A port left unconnected (the feeder's
window read, the weight buffer's) is dropped by synthesis.

The window mapping: window byte i (from 0) at ``(row, pos)`` is byte lane ``pos + i`` of word ``row`` if
``pos + i < word_bytes``, else lane ``pos + i - word_bytes`` of word ``row + 1``. Per lane that is one comparison
with the constant lane index and one subtraction, no division by a word size that is not a power of two.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError
from edgesparse.rtl.synth import KEEP

BLOCK_RAM_BITS = 512  # yosys's synth_ecp5 maps a registered-read memory of more bits to DP16KD, not distributed RAM
# (depth up to, byte lanes) a block RAM holds in one block: ECP5's DP16KD and xc7's RAMB18 as 1024 x 18 or 512 x 36.
_SHARED_LANES = ((1024, 2), (512, 4))


def lanes_per_memory(word_bytes: int, depth: int, window: int) -> int:
    """Byte lanes one memory of a :class:`WordBuffer` holds so that its block RAM is full: two at 1024 words or
    fewer, four at 512 or fewer; one where a lane is distributed RAM anyway (:data:`BLOCK_RAM_BITS` or fewer bits),
    where the window exceeds half a word, or where the lanes do not divide the word or exceed half of it."""
    lanes = 1
    if 8 * depth > BLOCK_RAM_BITS and 2 * window <= word_bytes:
        for limit, count in _SHARED_LANES:
            if depth <= limit and word_bytes % count == 0 and 2 * count <= word_bytes:
                lanes = count
    return lanes


def _check_count(name: str, value, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        kind = "a positive" if least == 1 else "a non-negative"
        raise ConfigError(f"the word buffer's {name} must be {kind} integer, got {value!r}")


class WordBuffer(wiring.Component):
    """``depth`` words of ``word_bytes`` bytes (byte j of a word at bits ``[8 j, 8 j + 8)``), written and read a
    ``window`` of bytes at any byte lane by the DMA, read a word at a time on ``word_reads`` ports and, with
    ``word_write``, written a word at a time with byte enables.

    Ports (A = the address width of ``depth`` words, N = ``word_bytes``, W = ``window``; rows at or past ``depth``
    are not stored):

    - ``w_row : Signal(A), in`` / ``w_pos : Signal(range(N)), in`` / ``w_data : Signal(8 W), in`` /
      ``w_mask : Signal(W), in``: write window byte i (bits ``[8 i, 8 i + 8)``), where bit i of ``w_mask`` is set,
      to the byte ``pos + i`` bytes past byte 0 of word ``w_row`` (the module docstring's mapping);
    - ``r_row : Signal(A), in`` / ``r_pos : Signal(range(N)), in`` / ``r_data : Signal(8 W), out``: the W bytes
      from byte ``r_pos`` of word ``r_row`` on (the same mapping), one cycle after the address;
    - ``rd{k}_addr : Signal(A), in`` / ``rd{k}_data : Signal(8 N), out`` for k in ``range(word_reads)``: word
      ``rd{k}_addr``, one cycle after the address;
    - with ``word_write``: ``ww_addr : Signal(A), in`` / ``ww_data : Signal(8 N), in`` / ``ww_mask : Signal(N),
      in``: write byte j of ``ww_data`` to byte j of word ``ww_addr`` where bit j of ``ww_mask`` is set.

    ``lanes_per_memory`` (G) consecutive byte lanes share one memory (:func:`lanes_per_memory`; the module docstring
    says when a window allows it). Every read is read-before-write: a read in the cycle of a write to the same byte
    returns the old byte, unless the buffer is built ``collision_free``: its user never reads a byte in the cycle it
    is written, so its memories carry yosys's ``no_rw_check`` and the block RAM's output goes on with no collision
    logic (yosys emulates read-before-write between two ports with address comparators and a multiplexer after the
    output); simulation still returns the old byte, hardware would not. A byte
    lane that both write ports write in one cycle takes the window's byte (to the window's word); the word write's
    byte in that lane is dropped.

    With ``write_stage`` the window write lands a cycle later: the buffer samples it into registers of its own (a
    copy in every buffer, marked ``keep``: :data:`~edgesparse.rtl.synth.KEEP`), with the next word's row, each
    memory's choice of word, each lane's window index and each lane's byte already worked out from ``w_pos``, so a
    staged byte goes straight into its block RAM and the address and enables take a multiplexer or two after
    flip-flops: a writer that feeds several buffers (the engine's DMA) routes to flip-flops, not through that
    decoding into every block RAM. No word write port then.
    """

    def __init__(self, word_bytes: int, depth: int, window: int, word_reads: int = 1, word_write: bool = False,
                 lanes_per_memory: int = 1, collision_free: bool = False, write_stage: bool = False):
        _check_count("word size", word_bytes, 1)
        _check_count("depth", depth, 1)
        _check_count("window", window, 1)
        _check_count("word read port count", word_reads, 0)
        _check_count("lanes per memory", lanes_per_memory, 1)
        if window > word_bytes:
            raise ConfigError(f"the word buffer's window ({window} bytes) must not exceed its word "
                              f"({word_bytes} bytes)")
        for name, flag in (("word_write", word_write), ("collision_free", collision_free),
                           ("write_stage", write_stage)):
            if not isinstance(flag, bool):
                raise ConfigError(f"the word buffer's {name} must be a bool, got {flag!r}")
        G = lanes_per_memory
        if G > 1 and (word_bytes % G or 2 * G > word_bytes or 2 * window > word_bytes or word_write):
            raise ConfigError(f"the word buffer cannot hold {G} byte lanes a memory: the lanes must divide the "
                              f"{word_bytes}-byte word and be at most half of it, the window ({window} bytes) at "
                              f"most half a word, and there may be no word write port")
        self.word_bytes, self.depth, self.window, self.lanes_per_memory = word_bytes, depth, window, G
        if write_stage and word_write:
            raise ConfigError("the word buffer's write stage delays the window write only: build it without the word "
                              "write port")
        self.word_reads, self.word_write, self.write_stage = word_reads, word_write, write_stage
        self.addr_bits = max(1, (depth - 1).bit_length())
        row, pos = unsigned(self.addr_bits), range(word_bytes)
        ports = {"w_row": In(row), "w_pos": In(pos), "w_data": In(unsigned(8 * window)), "w_mask": In(window),
                 "r_row": In(row), "r_pos": In(pos), "r_data": Out(unsigned(8 * window))}
        for k in range(word_reads):
            ports[f"rd{k}_addr"], ports[f"rd{k}_data"] = In(row), Out(unsigned(8 * word_bytes))
        if word_write:
            ports.update(ww_addr=In(row), ww_data=In(unsigned(8 * word_bytes)), ww_mask=In(word_bytes))
        super().__init__(ports)
        # One memory per G lanes, lane j at bits [8 (j mod G), 8 (j mod G) + 8) of memory j // G (a testbench
        # reads and sets their rows: ``memories[g].data[row]``).
        # Monitors, not ports (synthesis drops them), per read port ("window", "rd0", ...): high in a cycle where
        # the port addresses a row a write port writes. A collision_free buffer's user checks them in simulation
        # wherever it uses the port's data (an idle port's reads may collide: their data goes nowhere).
        self.read_collisions = {name: Signal(name=f"{name}_collision")
                                for name in ["window"] + [f"rd{k}" for k in range(word_reads)]}
        attrs = {"no_rw_check": 1} if collision_free else {}
        self.memories = [Memory(shape=unsigned(8 * G), depth=depth, init=[], attrs=attrs)
                         for _ in range(word_bytes // G)]

    def elaborate(self, platform) -> Module:
        m = Module()
        N, W, G = self.word_bytes, self.window, self.lanes_per_memory

        def staged(value, shape, name: str) -> Signal:
            """The window write's ``value`` as the memories take it: this cycle's, or with the write stage the
            previous cycle's, from a register."""
            signal = Signal(shape, name=name, attrs=KEEP if self.write_stage else {})
            m.d["sync" if self.write_stage else "comb"] += signal.eq(value)
            return signal

        w_row = staged(self.w_row, self.w_row.shape(), "staged_row")
        w_next = staged(self.w_row + 1, self.w_row.shape(), "staged_next_row")
        w_mask = staged(self.w_mask, self.w_mask.shape(), "staged_mask")
        r_next = self.r_row + 1
        collisions = {name: [] for name in self.read_collisions}
        lane_data = []
        for number, memory in enumerate(self.memories):
            m.submodules[f"lanes{number}"] = memory
            # The memory's window bytes are in the window's word if its last lane is at or past the position, else
            # in the next (the module docstring).
            top = (number + 1) * G - 1
            write = memory.write_port(granularity=8)
            in_word = staged(self.w_pos <= top, 1, f"lanes{number}_in_word")
            m.d.comb += write.addr.eq(Mux(in_word, w_row, w_next))
            for k in range(G):
                lane = number * G + k
                # The window byte this lane takes: i = lane - pos in the window's word, lane + N - pos in the next.
                # Its byte is chosen before the write stage (one choice for every buffer the writer feeds: synthesis
                # shares it), so the staged byte goes straight into the block RAM.
                arriving = Signal(range(N), name=f"lane{lane}_arriving")
                m.d.comb += arriving.eq(Mux(self.w_pos <= lane, lane - self.w_pos, lane + N - self.w_pos))
                index = staged(arriving, range(N), f"lane{lane}_index")
                byte = staged(self.w_data.word_select(arriving, 8), 8, f"lane{lane}_byte")
                window_en = Signal(name=f"lane{lane}_window_en")
                m.d.comb += [window_en.eq((index < W) & w_mask.bit_select(index, 1)),
                             write.data.word_select(k, 8).eq(byte), write.en[k].eq(window_en)]
                if self.word_write:  # one lane a memory
                    with m.If(~window_en):
                        m.d.comb += [write.addr.eq(self.ww_addr), write.data.eq(self.ww_data.word_select(lane, 8)),
                                     write.en.eq(self.ww_mask[lane])]
            read = memory.read_port(transparent_for=())
            m.d.comb += [read.addr.eq(Mux(self.r_pos <= top, self.r_row, r_next)), read.en.eq(1)]
            lane_data += [read.data.word_select(k, 8) for k in range(G)]
            reads = {"window": read}
            for j in range(self.word_reads):
                word = memory.read_port(transparent_for=())
                m.d.comb += [word.addr.eq(getattr(self, f"rd{j}_addr")), word.en.eq(1),
                             getattr(self, f"rd{j}_data").word_select(number, 8 * G).eq(word.data)]
                reads[f"rd{j}"] = word
            for name, port in reads.items():
                collisions[name].append((write.en != 0) & (port.addr == write.addr))
        m.d.comb += [self.read_collisions[name].eq(Cat(*terms).any()) for name, terms in collisions.items()]
        # Window byte i of the read is lane pos + i, less N past the word's end: computed beside the address and
        # registered, so the block RAM's data meets a plain N:1 multiplexer (a selector from a flip-flop).
        lanes = Cat(*lane_data)
        for i in range(W):
            lane = Signal(range(N), name=f"r_lane{i}")
            m.d.sync += lane.eq(Mux(self.r_pos + i < N, self.r_pos + i, self.r_pos + i - N))
            m.d.comb += self.r_data.word_select(i, 8).eq(lanes.word_select(lane, 8))
        return m
