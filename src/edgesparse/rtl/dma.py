"""A simulation DRAM and the DMA that moves transfers between it and the on-chip buffers at a fixed rate in bytes per
cycle, with the rounding contract of :func:`edgesparse.accel.geometry.transfer_cycles`.

The contract: transfers run in queue order, one at a time; a transfer of ``n`` bytes at ``r`` bytes per cycle that
starts in cycle ``s`` moves its bytes in cycles ``s .. s + T - 1``, ``T = ceil(n / r)``, and is done in cycle
``s + T`` (its bytes are in the destination then, and the next transfer may start in that same cycle: a transfer
never shares a cycle with the next). The DMA realizes a fractional rate ``r = p / 2^k`` (every float rate is such a
fraction; the DMA accepts ``k <= 16``) exactly: in its j-th cycle (from 0) a transfer has moved
``min(n, floor((j + 1) p / 2^k))`` bytes, so it ends after ``ceil(n 2^k / p) = ceil(n / r)`` cycles.

:class:`SimDRAM` is a byte-addressed memory read and written ``beat`` bytes at a time at any byte address (``beat``
byte-wide banks, combinational reads: a simulation model of a memory whose latency the rate already covers; the
on-chip buffers take the same shape in tests). :class:`DMA` runs a descriptor queue (:func:`pack_descriptor`)
against two such ports, the DRAM's and the buffers', and starts each transfer in the first cycle the previous one
is done and ``allow`` holds (the controller's "the destination has room", the schedule's ``free_at``).
"""

from __future__ import annotations

import math
from fractions import Fraction

from amaranth import Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError

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


def descriptor_fields(dram_size: int, buffer_size: int, buffers: int) -> dict[str, int]:
    """Bit widths of a descriptor's fields, low bits first: direction, buffer, DRAM address, buffer address, bytes."""
    return {"to_dram": 1, "buffer": _bits(buffers), "dram_addr": _bits(dram_size), "buf_addr": _bits(buffer_size),
            "bytes": BYTES_BITS}


def pack_descriptor(widths: dict[str, int], *, to_dram: bool, buffer: int, dram_addr: int, buf_addr: int,
                    size: int) -> int:
    """One queue word: move ``size`` bytes between DRAM ``dram_addr`` and buffer ``buffer`` at ``buf_addr``
    (``to_dram``: from the buffer to DRAM, an output write-back)."""
    values = {"to_dram": int(to_dram), "buffer": buffer, "dram_addr": dram_addr, "buf_addr": buf_addr, "bytes": size}
    if not 0 < size < 1 << BYTES_BITS:
        raise ConfigError(f"a DMA transfer moves 1 to {(1 << BYTES_BITS) - 1} bytes, got {size!r}")
    word, offset = 0, 0
    for name, width in widths.items():
        if not 0 <= values[name] < 1 << width:
            raise ConfigError(f"descriptor field {name} = {values[name]!r} does not fit {width} bits")
        word |= values[name] << offset
        offset += width
    return word


class DMA(wiring.Component):
    """Runs a queue of up to ``queue`` transfers between a :class:`SimDRAM` of ``dram_size`` bytes and ``buffers``
    byte-addressed buffers of ``buffer_size`` bytes, at ``rate`` bytes per cycle (the contract in the module
    docstring), one transfer at a time, in order.

    Ports (W = :func:`beat_bytes` of ``rate``, D = the descriptor's width, :func:`descriptor_fields`):

    - ``q_we : Signal(1), in`` / ``q_addr : Signal(range(queue)), in`` / ``q_data : Signal(D), in``: write queue
      entry ``q_addr`` (:func:`pack_descriptor`);
    - ``q_count : Signal(range(queue + 1)), in``: entries ``[0, q_count)`` are ready to run (raise it to append);
    - ``reset_queue : Signal(1), in``: start again from entry 0 (nothing may be in flight);
    - ``allow : Signal(1), in``: the head entry may start this cycle (its destination has room);
    - ``head : Signal(range(queue + 1)), out``: the entry to start next (== ``q_count``: none queued);
    - ``busy : Signal(1), out``: a transfer moves bytes this cycle;
    - ``done : Signal(1), out`` / ``done_index : out``: entry ``done_index`` finished in the previous cycle: its
      bytes are in place in this one (a pulse);
    - ``dram_r_addr``, ``dram_w_addr : out``, ``dram_r_data : Signal(8 W), in``, ``dram_w_data : Signal(8 W),
      out``, ``dram_w_mask : Signal(W), out``: a :class:`SimDRAM`'s ports;
    - ``buf_sel : Signal(range(buffers)), out``: the buffer both sides below address this cycle;
      ``buf_r_addr``, ``buf_w_addr``, ``buf_r_data``, ``buf_w_data``, ``buf_w_mask``: its ports, the same shapes.
    """

    def __init__(self, rate: float, dram_size: int, buffer_size: int, buffers: int = 1, queue: int = 16):
        self.p, self.k = rate_fraction(rate)
        for name, value in (("DRAM size", dram_size), ("buffer size", buffer_size), ("buffer count", buffers),
                            ("queue depth", queue)):
            _check_positive("DMA", name, value)
        self.rate, self.beat = rate, beat_bytes(rate)
        self.dram_size, self.buffer_size, self.buffers, self.queue = dram_size, buffer_size, buffers, queue
        self.fields = descriptor_fields(dram_size, buffer_size, buffers)
        W, da, ba = self.beat, self.fields["dram_addr"], self.fields["buf_addr"]
        super().__init__({
            "q_we": In(1), "q_addr": In(range(queue)), "q_data": In(unsigned(sum(self.fields.values()))),
            "q_count": In(range(queue + 1)), "reset_queue": In(1), "allow": In(1),
            "head": Out(range(queue + 1)), "busy": Out(1), "done": Out(1), "done_index": Out(range(queue + 1)),
            "dram_r_addr": Out(unsigned(da)), "dram_r_data": In(unsigned(8 * W)), "dram_w_addr": Out(unsigned(da)),
            "dram_w_data": Out(unsigned(8 * W)), "dram_w_mask": Out(unsigned(W)),
            "buf_sel": Out(range(max(2, buffers))), "buf_r_addr": Out(unsigned(ba)),
            "buf_r_data": In(unsigned(8 * W)), "buf_w_addr": Out(unsigned(ba)), "buf_w_data": Out(unsigned(8 * W)),
            "buf_w_mask": Out(unsigned(W)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self.beat
        m.submodules.queue = queue = Memory(shape=unsigned(sum(self.fields.values())), depth=self.queue, init=[])
        write = queue.write_port()
        m.d.comb += [write.en.eq(self.q_we), write.addr.eq(self.q_addr), write.data.eq(self.q_data)]
        read = queue.read_port(domain="comb")
        head = Signal(range(self.queue + 1))
        m.d.comb += [read.addr.eq(head), self.head.eq(head)]
        fields, offset = {}, 0
        for name, width in self.fields.items():
            fields[name] = read.data[offset:offset + width]
            offset += width

        # The transfer in flight, held in registers; a starting one is read straight from the queue.
        active = Signal()
        held = {name: Signal(width, name=f"cur_{name}") for name, width in self.fields.items()}
        index = Signal.like(head)
        units = Signal(BYTES_BITS + RATE_FRACTION_BITS + self.p.bit_length() + 1)  # (j + 1) p so far, in 2^-k B
        sent = Signal(BYTES_BITS)
        start = ~active & (head < self.q_count) & self.allow
        moving = active | start
        cur = {name: Mux(active, held[name], fields[name]) for name in self.fields}
        next_units = Mux(active, units, 0) + self.p
        sent_now = Mux(active, sent, 0)
        allowed = next_units >> self.k
        target = Mux(allowed < cur["bytes"], allowed, cur["bytes"])
        count = (target - sent_now)[:W.bit_length()]
        mask = Signal(W)
        m.d.comb += mask.eq(Mux(moving, (Const(1, W + 1) << count) - 1, 0))
        finish = moving & (target == cur["bytes"])

        dram_addr = (cur["dram_addr"] + sent_now)[:self.fields["dram_addr"]]
        buf_addr = (cur["buf_addr"] + sent_now)[:self.fields["buf_addr"]]
        to_dram = cur["to_dram"]
        m.d.comb += [self.busy.eq(moving), self.buf_sel.eq(cur["buffer"]),
                     self.dram_r_addr.eq(dram_addr), self.dram_w_addr.eq(dram_addr),
                     self.buf_r_addr.eq(buf_addr), self.buf_w_addr.eq(buf_addr),
                     self.dram_w_data.eq(self.buf_r_data), self.buf_w_data.eq(self.dram_r_data),
                     self.dram_w_mask.eq(Mux(to_dram, mask, 0)), self.buf_w_mask.eq(Mux(to_dram, 0, mask))]

        m.d.sync += [self.done.eq(finish), self.done_index.eq(Mux(active, index, head))]
        with m.If(self.reset_queue):
            m.d.sync += [head.eq(0), active.eq(0)]
        with m.Else():
            with m.If(start):
                m.d.sync += [held[name].eq(fields[name]) for name in self.fields]
                m.d.sync += [index.eq(head), head.eq(head + 1)]
            m.d.sync += [active.eq(moving & ~finish), units.eq(next_units), sent.eq(target)]
        return m
