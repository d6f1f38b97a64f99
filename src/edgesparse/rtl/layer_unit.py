"""The pipelined layer unit: the pipelined array, a weight memory holding consecutive folds, a stream memory, and the
controller that runs the folds back to back by the schedule's recurrence with every fold's weights present.

With the weights always in the buffer (:mod:`edgesparse.accel.schedule`, ``w_f`` never the bottleneck) the
controller is::

    a_f = max(s_{f-1}, start)            the loader shifts fold f in once fold f - 1 took its shadows
    s_f = max(a_f + R, s_{f-1} + L_{f-1})  fold f streams once its shadows are loaded and the previous stream ended

Memories, written by a host before ``start``:

- weights: R words per fold, folds in order, each fold bottom row first; a word is C (int8 value, index) pairs,
  column j at bits ``[(8 + B) j, (8 + B)(j + 1))``, value low (the memory image's order; B = max(1, log2 M));
- lengths: one word per fold, its stream length L_f (cycles);
- stream: L_f words per fold, folds in order. Word g of fold f is what the array's left edge takes for the
  fold's group step g, row by row (the activation feeder's output: each row already holds its segment's group
  ``k L_f + g``): bits ``[0, 8 M L R)`` the vectors (row i lane l at element ``i L + l``), then ``L R`` valid bits
  (bit ``i L + l``: a final sum of a real pixel leaves row i for lane l, set on segment bottom rows), then R top
  bits (row i starts a segment).

The stream memory is R banks, row i's bank holding row i's share of every word (its vectors, valid and top bits),
each with one registered read port whose data is registered once more before the array (the block RAM's slow
clock-to-output stays off the PE's select). Both memories are read two cycles ahead: what the controller decides
in its cycle t the array takes in cycle t + 2, so the unit's cycle count (``out_cycle``) is the array's, with
cycle 0 the cycle fold 0's first weight word enters (``a_0``). Row i reads the address row 0 read i cycles
earlier (it travels down a delay line), so the fold's group g reaches row i at ``s_f + g + i`` and PE (i, j) at
``s_f + g + i + j``; the ``first`` bit of a fold's first word travels with it and switches each PE to its shadow.
Each PE adds its product d cycles later (``stages``, :data:`~edgesparse.accel.config.PRODUCT_STAGES`).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.accel.config import PRODUCT_STAGES
from edgesparse.errors import ConfigError
from edgesparse.rtl.array import PipelinedArray, check_array
from edgesparse.rtl.pe import PSUM_BITS, check_multiplier, index_bits

CYCLE_BITS = 32


def stream_word_bits(rows: int, m: int, lanes: int) -> int:
    """Width of one stream-memory word: R rows of L M-wide int8 vectors, L R valid bits, R top bits."""
    return rows * (8 * m * lanes + lanes + 1)


def bank_bits(m: int, lanes: int) -> int:
    """Width of one row's stream bank: its L M-wide int8 vectors, L valid bits and a top bit."""
    return 8 * m * lanes + lanes + 1


def block_memories(rows: int, cols: int, m: int, lanes: int, max_folds: int, max_words: int) -> list[tuple[int, int]]:
    """(width, depth) of the layer unit's block-RAM memories: the weight memory, then the R stream banks."""
    return [((8 + max(1, index_bits(m))) * cols, max_folds * rows)] + [(bank_bits(m, lanes), max_words)] * rows


def _bits(count: int) -> int:
    """Bits of an address into ``count`` words (at least 1)."""
    return max(1, (count - 1).bit_length())


def port_widths(rows: int, max_folds: int, max_words: int) -> dict[str, int]:
    """Widths of the layer unit's host ports that depend on its size (for testbenches)."""
    return {"w_addr": _bits(max_folds * rows), "n_addr": _bits(max_folds), "a_addr": _bits(max_words),
            "fold": max(1, max_folds.bit_length()), "length": max(1, max_words.bit_length())}


class LayerUnit(wiring.Component):
    """The pipelined array running up to ``max_folds`` consecutive folds, ``max_words`` stream words in all; its PEs
    have ``stages`` product stages from ``multiplier`` (see :class:`~edgesparse.rtl.pe.SparsePE`).

    Ports (B = max(1, log2 M) index bits, L = ``lanes``, S = ``segments``):

    - ``w_we : Signal(1), in`` / ``w_addr``, ``w_data : Signal((8 + B) C), in``: write a weight word (fold f's word
      k at ``f R + k``, bottom row first);
    - ``n_we : Signal(1), in`` / ``n_addr``, ``n_data``: write fold ``n_addr``'s stream length;
    - ``a_we : Signal(1), in`` / ``a_addr``, ``a_data``: write a stream word (see the module docstring);
    - ``folds : Signal, in``: how many folds to run; ``start : Signal(1), in``: a pulse; the third cycle after it
      is the unit's cycle 0, in which fold 0's first weight word enters the array (``a_0``);
    - ``busy : Signal(1), out``: a fold is still to stream (the last sum leaves at most R + C + d + 1 cycles after
      it drops, d the product stages);
    - ``out_cycle : Signal(32), out``: the cycle whose results the registered outputs below hold;
    - ``entry_live``, ``entry_fold``, ``entry_group : out``: what entered row 0 in ``out_cycle``: a fold and its
      group step g (a monitor: a testbench tells pixels apart by it);
    - ``psum_out : Signal(32 L C S), out`` / ``valid_out : Signal(L C S), out``: the array's output ports (see
      :class:`~edgesparse.rtl.array.PipelinedArray`).
    """

    def __init__(self, rows: int, cols: int, m: int, lanes: int = 1, segments: int = 1, max_folds: int = 8,
                 max_words: int = 64, stages: int = PRODUCT_STAGES, multiplier: str = "fabric"):
        check_array(rows, cols, m, lanes, segments)
        check_multiplier(multiplier, lanes, stages)
        for name, value in (("max_folds", max_folds), ("max_words", max_words)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"the layer unit's {name} must be a positive integer, got {value!r}")
        self.rows, self.cols, self.m, self.lanes, self.segments = rows, cols, m, lanes, segments
        self.max_folds, self.max_words, self.stages, self.multiplier = max_folds, max_words, stages, multiplier
        self.index_width = max(1, index_bits(m))
        widths = port_widths(rows, max_folds, max_words)
        self.fold_bits, self.length_bits = widths["fold"], widths["length"]
        self.word_bits = stream_word_bits(rows, m, lanes)
        super().__init__({
            "w_we": In(1), "w_addr": In(unsigned(widths["w_addr"])),
            "w_data": In(unsigned((8 + self.index_width) * cols)),
            "n_we": In(1), "n_addr": In(unsigned(widths["n_addr"])), "n_data": In(unsigned(self.length_bits)),
            "a_we": In(1), "a_addr": In(unsigned(widths["a_addr"])), "a_data": In(unsigned(self.word_bits)),
            "folds": In(unsigned(self.fold_bits)), "start": In(1),
            "busy": Out(1), "out_cycle": Out(unsigned(CYCLE_BITS)),
            "entry_live": Out(1), "entry_fold": Out(unsigned(self.fold_bits)),
            "entry_group": Out(unsigned(self.length_bits)),
            "psum_out": Out(unsigned(PSUM_BITS * lanes * cols * segments)),
            "valid_out": Out(unsigned(lanes * cols * segments)),
        })

    def block_memories(self) -> list[tuple[int, int]]:
        """(width, depth) of the memories built as block RAM (:func:`block_memories`)."""
        return block_memories(self.rows, self.cols, self.m, self.lanes, self.max_folds, self.max_words)

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, M, L = self.rows, self.cols, self.m, self.lanes
        pair = 8 + self.index_width
        block = {"ram_style": "block"}
        (w_width, w_depth), *banks = self.block_memories()
        m.submodules.array = array = PipelinedArray(R, C, M, L, self.segments, self.stages, self.multiplier)
        m.submodules.weights = weights = Memory(shape=unsigned(w_width), depth=w_depth, init=[], attrs=block)
        m.submodules.lengths = lengths = Memory(shape=unsigned(self.length_bits), depth=self.max_folds, init=[])
        for memory, prefix, stored in ((weights, "w", self.w_data), (lengths, "n", self.n_data - 1)):
            port = memory.write_port()  # lengths keep L_f - 1: no subtraction on the controller's read path
            m.d.comb += [port.en.eq(getattr(self, f"{prefix}_we")), port.addr.eq(getattr(self, f"{prefix}_addr")),
                         port.data.eq(stored)]
        vector_bits = 8 * M * L
        stream_reads = []
        for i, (width, depth) in enumerate(banks):  # row i's share: vectors, valid bits, top bit
            bank = Memory(shape=unsigned(width), depth=depth, init=[], attrs=block)
            m.submodules[f"stream_{i}"] = bank
            port = bank.write_port()
            flags = self.a_data[R * vector_bits:]
            m.d.comb += [port.en.eq(self.a_we), port.addr.eq(self.a_addr),
                         port.data.eq(Cat(self.a_data.word_select(i, vector_bits), flags.word_select(i, L),
                                          flags[R * L + i]))]
            stream_reads.append(bank.read_port())

        running, t = Signal(), Signal(CYCLE_BITS)
        fb = self.fold_bits
        # Stream controller: what entered row 0 last cycle, whether its stream has more groups (``left`` of them:
        # counted down, so no compare against the length memory sits on the decision path), the next fold to stream.
        prev_live, prev_fold, prev_group = Signal(), Signal(fb), Signal(self.length_bits)
        more, left = Signal(), Signal(self.length_bits)
        next_stream, ready = Signal(fb), Signal(fb)  # ready: folds whose shadows are loaded
        stream_addr = Signal(_bits(self.max_words))
        length = lengths.read_port(domain="comb")
        m.d.comb += length.addr.eq(next_stream)
        carry_on = prev_live & more
        begin_stream = running & ~carry_on & (next_stream < self.folds) & (ready > next_stream)
        live = Signal()
        fold, group = Signal(fb), Signal(self.length_bits)
        m.d.comb += [live.eq(carry_on | begin_stream), fold.eq(Mux(carry_on, prev_fold, next_stream)),
                     group.eq(Mux(carry_on, prev_group + 1, 0))]
        # Loader: fold f's R words shift in once fold f - 1 has begun streaming (this cycle or earlier).
        loading, step, next_load = Signal(), Signal(range(R)), Signal(fb)
        weight_addr = Signal(_bits(self.max_folds * R))
        carry_load = loading & (step != R - 1)
        streamed = (next_load <= next_stream) | ((next_load == next_stream + 1) & begin_stream)
        begin_load = running & ~carry_load & (next_load < self.folds) & streamed
        shifting, word_step = Signal(), Signal(range(R))
        m.d.comb += [shifting.eq(carry_load | begin_load), word_step.eq(Mux(carry_load, step + 1, 0))]
        w_read = weights.read_port()  # the read and its data register: the array takes the word two cycles later
        read_shift, read_latch, held_word = Signal(), Signal(), Signal.like(w_read.data)
        m.d.comb += w_read.addr.eq(weight_addr)
        m.d.sync += [read_shift.eq(shifting), read_latch.eq(shifting & (word_step == R - 1)),
                     array.shift.eq(read_shift), array.latch.eq(read_latch), held_word.eq(w_read.data)]
        for j in range(C):
            word = held_word.word_select(j, pair)
            m.d.comb += [array.w_top.word_select(j, 8).eq(word[:8]),
                         array.idx_top.word_select(j, self.index_width).eq(word[8:])]

        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), t.eq(0), prev_live.eq(0), next_stream.eq(0), ready.eq(0), loading.eq(0),
                         next_load.eq(0), weight_addr.eq(0), stream_addr.eq(0)]
        with m.Elif(running):
            m.d.sync += [t.eq(t + 1), prev_live.eq(live), prev_fold.eq(fold), prev_group.eq(group),
                         loading.eq(shifting), step.eq(word_step)]
            with m.If(carry_on):
                m.d.sync += [left.eq(left - 1), more.eq(left != 1)]
            with m.If(begin_stream):
                m.d.sync += [next_stream.eq(next_stream + 1), left.eq(length.data), more.eq(length.data != 0)]
            with m.If(live):
                m.d.sync += stream_addr.eq(stream_addr + 1)
            with m.If(shifting):
                m.d.sync += weight_addr.eq(weight_addr + 1)
            with m.If(begin_load):
                m.d.sync += next_load.eq(next_load + 1)
            with m.If(shifting & (word_step == R - 1)):
                m.d.sync += ready.eq(ready + 1)
        m.d.comb += self.busy.eq(running & ((next_stream < self.folds) | carry_on))

        # The left edge: row i reads the address row 0 read i cycles ago; its data, masked by its live bit, is
        # registered before the array.
        address, row_live, first = stream_addr, live, begin_stream
        for i, port in enumerate(stream_reads):
            if i:
                delayed = (Signal.like(address, name=f"addr_{i}"), Signal(name=f"live_{i}"), Signal(name=f"first_{i}"))
                m.d.sync += [delayed[0].eq(address), delayed[1].eq(row_live), delayed[2].eq(first)]
                address, row_live, first = delayed
            read_live, read_first = Signal(name=f"read_live_{i}"), Signal(name=f"read_first_{i}")
            edge, edge_first = Signal.like(port.data, name=f"edge_{i}"), Signal(name=f"edge_first_{i}")
            m.d.comb += port.addr.eq(address)
            m.d.sync += [read_live.eq(row_live), read_first.eq(first), edge.eq(Mux(read_live, port.data, 0)),
                         edge_first.eq(read_live & read_first)]
            m.d.comb += [array.act_left.word_select(i, vector_bits).eq(edge[:vector_bits]),
                         array.valid_left.word_select(i, L).eq(edge[vector_bits:vector_bits + L]),
                         array.first_left[i].eq(edge_first), array.top_left[i].eq(edge[vector_bits + L])]

        # The monitor: the array's cycle is the controller's minus two; row 0 takes the decision of two cycles ago.
        seen_live, seen_fold, seen_group = Signal(), Signal(fb), Signal(self.length_bits)
        m.d.sync += [seen_live.eq(prev_live), seen_fold.eq(prev_fold), seen_group.eq(prev_group),
                     self.out_cycle.eq(t - 2), self.entry_live.eq(seen_live), self.entry_fold.eq(seen_fold),
                     self.entry_group.eq(seen_group)]
        m.d.comb += [self.psum_out.eq(array.psum_out), self.valid_out.eq(array.valid_out)]
        return m
