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

Row i reads the stream word row 0 read i cycles earlier (its address travels down a delay line), so the fold's
group g reaches row i at ``s_f + g + i`` and PE (i, j) at ``s_f + g + i + j``; the ``first`` bit of a fold's first
word travels with it and switches each PE to its shadow.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError
from edgesparse.rtl.array import PipelinedArray, check_array
from edgesparse.rtl.pe import PSUM_BITS, index_bits

CYCLE_BITS = 32


def stream_word_bits(rows: int, m: int, lanes: int) -> int:
    """Width of one stream-memory word: R rows of L M-wide int8 vectors, L R valid bits, R top bits."""
    return rows * (8 * m * lanes + lanes + 1)


def _bits(count: int) -> int:
    """Bits of an address into ``count`` words (at least 1)."""
    return max(1, (count - 1).bit_length())


def port_widths(rows: int, max_folds: int, max_words: int) -> dict[str, int]:
    """Widths of the layer unit's host ports that depend on its size (for testbenches)."""
    return {"w_addr": _bits(max_folds * rows), "n_addr": _bits(max_folds), "a_addr": _bits(max_words),
            "fold": max(1, max_folds.bit_length()), "length": max(1, max_words.bit_length())}


class LayerUnit(wiring.Component):
    """The pipelined array running up to ``max_folds`` consecutive folds, ``max_words`` stream words in all.

    Ports (B = max(1, log2 M) index bits, L = ``lanes``, S = ``segments``):

    - ``w_we : Signal(1), in`` / ``w_addr``, ``w_data : Signal((8 + B) C), in``: write a weight word (fold f's word
      k at ``f R + k``, bottom row first);
    - ``n_we : Signal(1), in`` / ``n_addr``, ``n_data``: write fold ``n_addr``'s stream length;
    - ``a_we : Signal(1), in`` / ``a_addr``, ``a_data``: write a stream word (see the module docstring);
    - ``folds : Signal, in``: how many folds to run; ``start : Signal(1), in``: a pulse; the cycle after it is the
      unit's cycle 0, in which fold 0's load starts (``a_0``);
    - ``busy : Signal(1), out``: a fold is still to stream (the array drains R + C - 1 cycles after it drops);
    - ``out_cycle : Signal(32), out``: the cycle whose results the registered outputs below hold;
    - ``entry_live``, ``entry_fold``, ``entry_group : out``: what entered row 0 in ``out_cycle``: a fold and its
      group step g (a monitor: a testbench tells pixels apart by it);
    - ``psum_out : Signal(32 L C S), out`` / ``valid_out : Signal(L C S), out``: the array's output ports (see
      :class:`~edgesparse.rtl.array.PipelinedArray`).
    """

    def __init__(self, rows: int, cols: int, m: int, lanes: int = 1, segments: int = 1, max_folds: int = 8,
                 max_words: int = 64):
        check_array(rows, cols, m, lanes, segments)
        for name, value in (("max_folds", max_folds), ("max_words", max_words)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"the layer unit's {name} must be a positive integer, got {value!r}")
        self.rows, self.cols, self.m, self.lanes, self.segments = rows, cols, m, lanes, segments
        self.max_folds, self.max_words = max_folds, max_words
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

    def elaborate(self, platform) -> Module:
        m = Module()
        R, C, M, L = self.rows, self.cols, self.m, self.lanes
        pair = 8 + self.index_width
        m.submodules.array = array = PipelinedArray(R, C, M, L, self.segments)
        m.submodules.weights = weights = Memory(shape=unsigned(pair * C), depth=self.max_folds * R, init=[])
        m.submodules.lengths = lengths = Memory(shape=unsigned(self.length_bits), depth=self.max_folds, init=[])
        m.submodules.stream = stream = Memory(shape=unsigned(self.word_bits), depth=self.max_words, init=[])
        for memory, prefix in ((weights, "w"), (lengths, "n"), (stream, "a")):
            port = memory.write_port()
            m.d.comb += [port.en.eq(getattr(self, f"{prefix}_we")), port.addr.eq(getattr(self, f"{prefix}_addr")),
                         port.data.eq(getattr(self, f"{prefix}_data"))]

        running, t = Signal(), Signal(CYCLE_BITS)
        fb = self.fold_bits
        # Stream controller: what entered row 0 last cycle, and the next fold to stream.
        prev_live, prev_fold, prev_group = Signal(), Signal(fb), Signal(self.length_bits)
        next_stream, ready = Signal(fb), Signal(fb)  # ready: folds whose shadows are loaded
        stream_addr = Signal(_bits(self.max_words))
        length = lengths.read_port(domain="comb")
        m.d.comb += length.addr.eq(prev_fold)
        carry_on = prev_live & (prev_group + 1 < length.data)
        begin_stream = running & ~carry_on & (next_stream < self.folds) & (ready > next_stream)
        live = Signal()
        fold, group = Signal(fb), Signal(self.length_bits)
        m.d.comb += [live.eq(carry_on | begin_stream), fold.eq(Mux(carry_on, prev_fold, next_stream)),
                     group.eq(Mux(carry_on, prev_group + 1, 0))]
        # Loader: fold f's R words shift in once fold f - 1 has begun streaming (this cycle or earlier).
        loading, step, next_load = Signal(), Signal(range(R)), Signal(fb)
        weight_addr = Signal(_bits(self.max_folds * R))
        carry_load = loading & (step + 1 < R)
        begin_load = running & ~carry_load & (next_load < self.folds) & (next_stream + begin_stream >= next_load)
        shifting, word_step = Signal(), Signal(range(R))
        m.d.comb += [shifting.eq(carry_load | begin_load), word_step.eq(Mux(carry_load, step + 1, 0))]
        w_read = weights.read_port(domain="comb")
        m.d.comb += [w_read.addr.eq(weight_addr), array.shift.eq(shifting),
                     array.latch.eq(shifting & (word_step == R - 1))]
        for j in range(C):
            word = w_read.data.word_select(j, pair)
            m.d.comb += [array.w_top.word_select(j, 8).eq(word[:8]),
                         array.idx_top.word_select(j, self.index_width).eq(word[8:])]

        with m.If(self.start & ~running):
            m.d.sync += [running.eq(1), t.eq(0), prev_live.eq(0), next_stream.eq(0), ready.eq(0), loading.eq(0),
                         next_load.eq(0), weight_addr.eq(0), stream_addr.eq(0)]
        with m.Elif(running):
            m.d.sync += [t.eq(t + 1), prev_live.eq(live), prev_fold.eq(fold), prev_group.eq(group),
                         loading.eq(shifting), step.eq(word_step), weight_addr.eq(weight_addr + shifting),
                         stream_addr.eq(stream_addr + live)]
            with m.If(begin_stream):
                m.d.sync += next_stream.eq(next_stream + 1)
            with m.If(begin_load):
                m.d.sync += next_load.eq(next_load + 1)
            with m.If(shifting & (word_step == R - 1)):
                m.d.sync += ready.eq(ready + 1)
        m.d.comb += self.busy.eq(running & ((next_stream < self.folds) | carry_on))

        # The left edge: row i reads the word row 0 read i cycles ago.
        vector_bits = 8 * M * L
        address, row_live, first = stream_addr, live, begin_stream
        for i in range(R):
            if i:
                delayed = (Signal.like(address, name=f"addr_{i}"), Signal(name=f"live_{i}"), Signal(name=f"first_{i}"))
                m.d.sync += [delayed[0].eq(address), delayed[1].eq(row_live), delayed[2].eq(first)]
                address, row_live, first = delayed
            port = stream.read_port(domain="comb")
            m.d.comb += port.addr.eq(address)
            data = port.data
            valid = data[R * vector_bits:].word_select(i, L)
            top = data[R * vector_bits + R * L + i]
            m.d.comb += [array.act_left.word_select(i, vector_bits).eq(Mux(row_live, data.word_select(i, vector_bits), 0)),
                         array.valid_left.word_select(i, L).eq(Mux(row_live, valid, 0)),
                         array.first_left[i].eq(row_live & first),
                         array.top_left[i].eq(row_live & top)]

        m.d.sync += [self.out_cycle.eq(t), self.entry_live.eq(live), self.entry_fold.eq(fold),
                     self.entry_group.eq(group)]
        m.d.comb += [self.psum_out.eq(array.psum_out), self.valid_out.eq(array.valid_out)]
        return m
