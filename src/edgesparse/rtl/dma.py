"""A simulation DRAM and the DMA that moves transfers between it and the on-chip word buffers at a fixed rate in
bytes per cycle, with the rounding contract of :func:`edgesparse.accel.geometry.transfer_cycles`.

The contract: transfers run in queue order, one at a time; a transfer of ``n`` bytes at ``r`` bytes per cycle that
starts in cycle ``s`` moves its bytes in cycles ``s .. s + T - 1``, ``T = ceil(n / r)``, and is done in cycle
``s + T`` (the next transfer may start in that same cycle: a transfer never shares a cycle with the next). The DMA
realizes a fractional rate ``r = p / 2^k`` (every float rate is such a fraction; the DMA accepts ``k <= 16``)
exactly: in its j-th cycle (from 0) a transfer has moved ``min(n, floor((j + 1) p / 2^k))`` bytes, so it ends
after ``ceil(n 2^k / p) = ceil(n / r)`` cycles.

Where the bytes are when ``done`` pulses (cycle ``s + T``): a transfer into a buffer wrote its last bytes at the
edge ending cycle ``s + T - 1``, so they are in the buffer in ``s + T`` (a word read then returns them in
``s + T + 1``). A transfer to DRAM reads the buffer through its registered window read: the bytes presented in
cycle ``j`` reach the DRAM's write port in ``j + 1``, so the last ones are written at the edge ending ``s + T`` and
are in the DRAM from ``s + T + 1`` on (a transfer that reads them back from the DRAM must start after ``s + T``).

:class:`SimDRAM` is a byte-addressed memory read and written ``beat`` bytes at a time at any byte address (``beat``
byte-wide banks, combinational reads: a simulation model of a memory whose latency the rate already covers).
:class:`DMA` runs a descriptor queue (:func:`pack_descriptor`) between the DRAM's ports and the window ports of
:class:`~edgesparse.rtl.buffer.WordBuffer` s (a buffer address is a word address: a transfer starts at byte 0 of a
word), and starts each transfer in the first cycle the previous one is done and ``allow`` holds (the controller's
"the destination has room", the schedule's ``free_at``).
"""

from __future__ import annotations

import math
from fractions import Fraction

from amaranth import Array, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError
from edgesparse.rtl.fields import pack_fields

RATE_FRACTION_BITS = 16  # the rate's denominator 2^k, k <= 16
BYTES_BITS = 24  # a transfer moves at most 2^24 - 1 bytes


def rate_fraction(rate: float) -> tuple[int, int]:
    """``(p, k)`` with ``rate = p / 2^k`` exactly; :class:`ConfigError` for a rate that is not positive and finite
    or whose binary fraction needs more than :data:`RATE_FRACTION_BITS` bits."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
        raise ConfigError(f"a DRAM rate must be a positive, finite number of bytes per cycle, got {rate!r}")
    fraction = Fraction(rate)
    k = fraction.denominator.bit_length() - 1  # a float's denominator is a power of two
    if k > RATE_FRACTION_BITS:
        raise ConfigError(f"the DMA takes rates p / 2^k with k <= {RATE_FRACTION_BITS}; {rate!r} needs k = {k}")
    return fraction.numerator, k


def beat_bytes(rate: float) -> int:
    """Bytes a port moves per cycle at ``rate``: the power of two at or above ``ceil(rate)``."""
    p, k = rate_fraction(rate)
    return 1 << max(0, (-(-p // (1 << k)) - 1).bit_length())


def _check_positive(unit: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"the {unit}'s {name} must be a positive integer, got {value!r}")


def _bits(count: int) -> int:
    return max(1, (count - 1).bit_length())


class SimDRAM(wiring.Component):
    """A byte-addressed memory of ``size`` bytes (a multiple of ``beat``), read and written ``beat`` bytes at a time
    at any byte address, byte k of a window at bits ``[8 k, 8 k + 8)``. Bytes past the end wrap around.

    Ports (A = address bits of ``size`` bytes, W = ``beat``):

    - ``r_addr : Signal(A), in`` / ``r_data : Signal(8 W), out``: the W bytes from ``r_addr`` on, in the same cycle;
    - ``w_addr : Signal(A), in`` / ``w_data : Signal(8 W), in`` / ``w_mask : Signal(W), in``: write byte k of
      ``w_data`` to ``w_addr + k`` where bit k of ``w_mask`` is set.
    """

    def __init__(self, size: int, beat: int, init: bytes = b""):
        _check_positive("DRAM", "size", size)
        if not isinstance(beat, int) or beat < 1 or beat & (beat - 1):
            raise ConfigError(f"the DRAM's beat must be a power of two, got {beat!r}")
        if size % beat:
            raise ConfigError(f"the DRAM's size ({size} bytes) must be a multiple of its beat ({beat})")
        if len(init) > size:
            raise ConfigError(f"{len(init)} bytes of initial contents do not fit a DRAM of {size} bytes")
        self.size, self.beat, self.init = size, beat, bytes(init)
        self.addr_bits = _bits(size)
        super().__init__({"r_addr": In(unsigned(self.addr_bits)), "r_data": Out(unsigned(8 * beat)),
                          "w_addr": In(unsigned(self.addr_bits)), "w_data": In(unsigned(8 * beat)),
                          "w_mask": In(unsigned(beat))})

    def elaborate(self, platform) -> Module:
        m = Module()
        W, shift = self.beat, self.beat.bit_length() - 1
        rows = self.size // W
        self.banks = []  # the bank memories (a testbench reads them back)
        for bank in range(W):
            init = list(self.init[bank::W]) + [0] * (rows - len(self.init[bank::W]))
            memory = Memory(shape=unsigned(8), depth=rows, init=init)
            m.submodules[f"bank{bank}"] = memory
            read, write = memory.read_port(domain="comb"), memory.write_port()
            # Window byte i lives in bank (addr + i) mod W, row (addr + i) >> log2 W; bank b holds byte
            # i = (b - addr) mod W of the window.
            self.banks.append(memory)
            for addr, port in ((self.r_addr, read), (self.w_addr, write)):
                offset = (bank - addr[:shift])[:shift] if W > 1 else 0
                m.d.comb += port.addr.eq((addr + offset) >> shift)
            if W == 1:
                m.d.comb += [self.r_data.eq(read.data), write.data.eq(self.w_data), write.en.eq(self.w_mask)]
                continue
            r_index = (bank - self.r_addr[:shift])[:shift]  # window byte this bank serves on the read side
            w_index = (bank - self.w_addr[:shift])[:shift]
            with m.Switch(r_index):
                for i in range(W):
                    with m.Case(i):
                        m.d.comb += self.r_data.word_select(i, 8).eq(read.data)
            m.d.comb += [write.data.eq(self.w_data.word_select(w_index, 8)), write.en.eq(self.w_mask.bit_select(
                w_index, 1))]
        return m


def descriptor_fields(dram_size: int, buffer_words: int, buffers: int) -> dict[str, int]:
    """Bit widths of a descriptor's fields, low bits first: direction, buffer, DRAM address (a byte), buffer address
    (a word), bytes."""
    return {"to_dram": 1, "buffer": _bits(buffers), "dram_addr": _bits(dram_size), "buf_addr": _bits(buffer_words),
            "bytes": BYTES_BITS}


def pack_descriptor(widths: dict[str, int], *, to_dram: bool, buffer: int, dram_addr: int, buf_addr: int,
                    size: int) -> int:
    """One queue word: move ``size`` bytes between DRAM byte ``dram_addr`` and buffer ``buffer`` from byte 0 of its
    word ``buf_addr`` on (``to_dram``: from the buffer to DRAM, an output write-back)."""
    values = {"to_dram": int(to_dram), "buffer": buffer, "dram_addr": dram_addr, "buf_addr": buf_addr, "bytes": size}
    if not 0 < size < 1 << BYTES_BITS:
        raise ConfigError(f"a DMA transfer moves 1 to {(1 << BYTES_BITS) - 1} bytes, got {size!r}")
    return pack_fields(values, widths, "descriptor")


class DMA(wiring.Component):
    """Runs a queue of up to ``queue`` transfers between a :class:`SimDRAM` of ``dram_size`` bytes and
    ``len(word_bytes)`` :class:`~edgesparse.rtl.buffer.WordBuffer` s of up to ``buffer_words`` words, buffer b's of
    ``word_bytes[b]`` bytes, at ``rate`` bytes per cycle (the contract in the module docstring), one transfer at a
    time, in order. A cycle moves at most W bytes, so each word size must be at least W.

    Ports (W = :func:`beat_bytes` of ``rate``, D = the descriptor's width, :func:`descriptor_fields`; A, P: the
    widths of a buffer address and of ``range(max(word_bytes))``):

    - ``q_we : Signal(1), in`` / ``q_addr : Signal(range(queue)), in`` / ``q_data : Signal(D), in``: write queue
      entry ``q_addr`` (:func:`pack_descriptor`);
    - ``q_count : Signal(range(queue + 1)), in``: entries ``[0, q_count)`` are ready to run (raise it to append);
    - ``reset_queue : Signal(1), in``: start again from entry 0 (nothing may be in flight);
    - ``allow : Signal(1), in``: the head entry may start this cycle (its destination has room);
    - ``head : Signal(range(queue + 1)), out``: the entry to start next (== ``q_count``: none queued);
      ``next_head : out``: ``head`` in the next cycle (the address of a synchronous read that follows the head);
      ``head_buffer : out``: the head entry's buffer;
    - ``starting : Signal(1), out``: the head entry starts this cycle;
    - ``busy : Signal(1), out``: a transfer moves bytes this cycle;
    - ``done : Signal(1), out`` / ``done_index : out`` / ``done_buffer : out``: entry ``done_index``, a transfer
      of buffer ``done_buffer``, finished in the previous cycle (a pulse; where its bytes are then: the module
      docstring);
    - ``dram_r_addr``, ``dram_w_addr : out``, ``dram_r_data : Signal(8 W), in``, ``dram_w_data : Signal(8 W),
      out``, ``dram_w_mask : Signal(W), out``: a :class:`SimDRAM`'s ports (a write to DRAM takes the buffer's data
      of the previous cycle: its address and mask are registered);
    - ``buf_sel : Signal(range(len(word_bytes))), out``: the buffer the ports below address this cycle;
    - ``buf_row : Signal(A), out`` / ``buf_pos : Signal(P), out``: the word and byte lane of this cycle's first
      byte, for both directions (a WordBuffer's ``w_row``, ``w_pos`` and ``r_row``, ``r_pos``);
    - ``buf_w_data : Signal(8 W), out`` / ``buf_w_mask : Signal(W), out``: its window write (``w_data``,
      ``w_mask``; gate the mask with ``buf_sel``), zero mask on a transfer to DRAM;
    - ``buf_r_data : Signal(8 W), in`` / ``buf_r_sel : Signal(range(len(word_bytes))), out``: the window read
      (``r_data``) of buffer ``buf_r_sel`` (``buf_sel`` of the previous cycle: the data answers its ``buf_row``,
      ``buf_pos``).
    """

    def __init__(self, rate: float, dram_size: int, buffer_words: int, word_bytes: tuple[int, ...],
                 queue: int = 16):
        self.p, self.k = rate_fraction(rate)
        for name, value in (("DRAM size", dram_size), ("buffer depth", buffer_words), ("queue depth", queue)):
            _check_positive("DMA", name, value)
        self.rate, self.beat = rate, beat_bytes(rate)
        if not isinstance(word_bytes, tuple) or not word_bytes:
            raise ConfigError(f"the DMA takes a tuple of word sizes, one per buffer, got {word_bytes!r}")
        for size in word_bytes:
            _check_positive("DMA", "buffer word size", size)
            if size < self.beat:
                raise ConfigError(f"the DMA's beat of {self.beat} bytes (rate {rate!r}) does not fit a buffer word "
                                  f"of {size} bytes")
        self.dram_size, self.buffer_words, self.word_bytes, self.queue = dram_size, buffer_words, word_bytes, queue
        self.fields = descriptor_fields(dram_size, buffer_words, len(word_bytes))
        W, da, ba = self.beat, self.fields["dram_addr"], self.fields["buf_addr"]
        super().__init__({
            "q_we": In(1), "q_addr": In(range(queue)), "q_data": In(unsigned(sum(self.fields.values()))),
            "q_count": In(range(queue + 1)), "reset_queue": In(1), "allow": In(1),
            "head": Out(range(queue + 1)), "next_head": Out(range(queue + 1)),
            "head_buffer": Out(range(max(2, len(word_bytes)))), "starting": Out(1), "busy": Out(1), "done": Out(1),
            "done_index": Out(range(queue + 1)), "done_buffer": Out(range(max(2, len(word_bytes)))),
            "dram_r_addr": Out(unsigned(da)), "dram_r_data": In(unsigned(8 * W)), "dram_w_addr": Out(unsigned(da)),
            "dram_w_data": Out(unsigned(8 * W)), "dram_w_mask": Out(unsigned(W)),
            "buf_sel": Out(range(max(2, len(word_bytes)))), "buf_row": Out(unsigned(ba)),
            "buf_pos": Out(range(max(word_bytes))), "buf_w_data": Out(unsigned(8 * W)),
            "buf_w_mask": Out(unsigned(W)), "buf_r_data": In(unsigned(8 * W)),
            "buf_r_sel": Out(range(max(2, len(word_bytes)))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self.beat
        m.submodules.queue = queue = Memory(shape=unsigned(sum(self.fields.values())), depth=self.queue, init=[])
        write = queue.write_port()
        m.d.comb += [write.en.eq(self.q_we), write.addr.eq(self.q_addr), write.data.eq(self.q_data)]
        # The head entry is held in a register, so a starting transfer's fields leave a flip-flop, not the block
        # RAM's output (on ECP5 its clock-to-out alone is 4.3 ns). The queue is read one entry ahead (a registered
        # read addressed by the next cycle's head + 1, so its data is the entry after the head; the address is chosen
        # among adders on the head register, none after the start decision) and the register
        # takes that read when a transfer starts; it takes the host's write of the entry that is (or, as a transfer
        # starts, becomes) the head, and entry 0, kept as the host wrote it, when the queue starts again.
        read = queue.read_port(transparent_for=(write,))
        head, next_head = Signal(range(self.queue + 1)), Signal(range(self.queue + 1))
        head_word, first_word = Signal(write.data.shape()), Signal(write.data.shape())
        m.d.comb += [self.head.eq(head), self.next_head.eq(next_head)]
        fields, offset = {}, 0
        for name, width in self.fields.items():
            fields[name] = head_word[offset:offset + width]
            offset += width

        # The transfer in flight, held in registers; a starting one is read from the head register.
        active = Signal()
        held = {name: Signal(width, name=f"cur_{name}") for name, width in self.fields.items()}
        index = Signal.like(head)
        # The contract's floor((j + 1) p / 2^k) bytes after cycle j, a cycle's share at a time: the fraction of a
        # byte carried (j p mod 2^k, in 2^-k B), the bytes left and the next byte's DRAM address, so no adder wider
        # than the fraction sits in front of the byte count.
        frac = Signal(max(1, self.k))
        # A cycle ahead, for the transfer's next cycle: its share, and whether it is the last (it is when the bytes
        # left now fit this cycle's share and the next one's: no subtraction in front of the test).
        share_on, last_on = Signal(range(self.beat + 1)), Signal()
        left = Signal(BYTES_BITS)
        row, pos = Signal.like(self.buf_row, name="row"), Signal.like(self.buf_pos, name="pos")  # the next byte's
        addr = Signal(self.fields["dram_addr"])
        start = ~active & (head < self.q_count) & self.allow
        moving = active | start
        cur = {name: Mux(active, held[name], fields[name]) for name in self.fields}
        units = Mux(active, frac, 0) + self.p  # this cycle's share and the carried fraction, in 2^-k B
        first_share = self.p >> self.k  # a transfer's first cycle carries no fraction
        share = Mux(active, share_on, first_share)  # bytes the rate allows this cycle: a register or a constant
        left_now = Mux(active, left, cur["bytes"])
        low = W.bit_length()  # share <= W < 2^low: the high bits of the bytes left only need to be zero
        last = Mux(active, last_on, (fields["bytes"][low:] == 0) & (fields["bytes"][:low] <= first_share))
        count = Mux(last, left_now, share)[:low]
        mask = Signal(W)
        m.d.comb += [mask.eq(Mux(moving, (Const(1, W + 1) << count) - 1, 0)), self.starting.eq(start),
                     self.head_buffer.eq(fields["buffer"])]
        finish = moving & last

        # The buffer side: the word and lane of this cycle's first byte, stepped by the bytes moved (at most one
        # word boundary a cycle, as W <= the word size).
        row_now, pos_now = Mux(active, row, cur["buf_addr"]), Mux(active, pos, 0)
        held_word_bytes = Signal(range(max(self.word_bytes) + 1))  # the transfer's buffer's word size
        word_bytes = Mux(active, held_word_bytes, Array(Const(size, range(max(self.word_bytes) + 1))
                                                        for size in self.word_bytes)[fields["buffer"]])
        step = pos_now + count
        wrap = step >= word_bytes
        dram_addr = Mux(active, addr, cur["dram_addr"])
        to_dram = cur["to_dram"]
        dram_w_addr, dram_w_mask = Signal.like(self.dram_w_addr), Signal.like(self.dram_w_mask)
        m.d.sync += [dram_w_addr.eq(dram_addr), dram_w_mask.eq(Mux(to_dram, mask, 0)), self.buf_r_sel.eq(cur["buffer"])]
        m.d.comb += [self.busy.eq(moving), self.buf_sel.eq(cur["buffer"]), self.buf_row.eq(row_now),
                     self.buf_pos.eq(pos_now), self.dram_r_addr.eq(dram_addr), self.dram_w_addr.eq(dram_w_addr),
                     self.dram_w_data.eq(self.buf_r_data), self.dram_w_mask.eq(dram_w_mask),
                     self.buf_w_data.eq(self.dram_r_data), self.buf_w_mask.eq(Mux(to_dram, 0, mask))]

        m.d.sync += [self.done.eq(finish), self.done_index.eq(Mux(active, index, head)),
                     self.done_buffer.eq(cur["buffer"]), head.eq(next_head)]
        m.d.comb += [next_head.eq(Mux(self.reset_queue, 0, Mux(start, head + 1, head))),
                     read.addr.eq(Mux(self.reset_queue, 1, Mux(start, head + 2, head + 1)))]  # next_head + 1
        writes_first = self.q_we & (self.q_addr == 0)
        with m.If(writes_first):
            m.d.sync += first_word.eq(self.q_data)
        with m.If(self.reset_queue):
            m.d.sync += head_word.eq(Mux(writes_first, self.q_data, first_word))
        with m.Elif(start):
            m.d.sync += head_word.eq(Mux(self.q_we & (self.q_addr == head + 1), self.q_data, read.data))
        with m.Elif(self.q_we & (self.q_addr == head)):
            m.d.sync += head_word.eq(self.q_data)
        with m.If(self.reset_queue):
            m.d.sync += active.eq(0)
        with m.Else():
            with m.If(start):
                m.d.sync += [held[name].eq(fields[name]) for name in self.fields]
                m.d.sync += [index.eq(head), held_word_bytes.eq(word_bytes)]
            carried = units[:self.k] if self.k else 0
            share_next = Signal.like(share_on)
            m.d.comb += share_next.eq((carried + self.p) >> self.k)
            both = share + share_next  # < 2^(low + 1)
            m.d.sync += [last_on.eq((left_now[low + 1:] == 0) & (left_now[:low + 1] <= both)),
                         active.eq(moving & ~finish), frac.eq(carried), share_on.eq(share_next),
                         left.eq(left_now - count), addr.eq(dram_addr + count),
                         row.eq(Mux(wrap, row_now + 1, row_now)), pos.eq(Mux(wrap, step - word_bytes, step))]
        return m
