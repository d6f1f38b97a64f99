"""Standalone, self-checking Verilog testbenches (Icarus alone, no Python): the classic fold unit on one fold, output
by output; the pipelined layer unit on a whole layer's folds back to back, the final sums and their cycles against
clock_layer. Memories and expected values come as hex files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.schedule import fold_cycles
from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.rtl.array import cycle_bits, pixel_bits
from edgesparse.errors import ConfigError
from edgesparse.rtl.cosim import FoldJob, LayerProgram
from edgesparse.rtl.pe import PSUM_BITS, index_bits

_TEMPLATE = """`timescale 1ns/1ps
// Self-checking testbench of fold_unit ({rows}x{cols}, M={m}, {lanes} pixel(s) per cycle): one fold, expected values and cycles from
// edgesparse's cycle-accurate simulator. Run: iverilog -g2012 -o tb tb_fold_unit.v fold_unit.v && vvp tb
module tb_fold_unit;
  localparam R = {rows}, C = {cols}, L = {lanes}, T = {pixels}, G = {groups}, WW = {weight_word}, AW = {act_word},
             LENGTH = {length};
  reg clk = 0;
  always #5 clk = ~clk;
  reg rst = 1, w_we = 0, a_we = 0, start = 0;  // a reset first: it also wakes every always @* block
  reg [{w_addr_bits}-1:0] w_addr = 0;
  reg [WW-1:0] w_data = 0;
  reg [{pixel_bits}-1:0] a_addr = 0;
  reg [AW-1:0] a_data = 0;
  reg [{pixels_width}-1:0] pixels = T;
  wire busy, out_live;
  wire signed [{cycle_bits}-1:0] out_cycle, out_group;
  wire [C*L-1:0] out_valid;
  wire [{psum}*C*L-1:0] psum_bottom;
  fold_unit dut(.clk(clk), .rst(rst), .w_we(w_we), .w_addr(w_addr), .w_data(w_data), .a_we(a_we), .a_addr(a_addr),
                .a_data(a_data), .pixels(pixels), .start(start), .busy(busy), .out_live(out_live),
                .out_cycle(out_cycle), .out_valid(out_valid), .out_group(out_group), .psum_bottom(psum_bottom));
  reg [WW-1:0] weights [0:R-1];
  reg [AW-1:0] acts [0:G-1];
  reg [{psum}-1:0] expect_sum [0:T*C-1];
  reg [31:0] expect_cycle [0:T*C-1];
  integer k, j, b, pixel, checked = 0, errors = 0;
  initial begin
    $readmemh("weights.hex", weights);
    $readmemh("acts.hex", acts);
    $readmemh("expect_sum.hex", expect_sum);
    $readmemh("expect_cycle.hex", expect_cycle);
    @(negedge clk); @(negedge clk); rst = 0;
    for (k = 0; k < (R > G ? R : G); k = k + 1) begin
      @(negedge clk);
      w_we = k < R; w_addr = k; w_data = weights[k < R ? k : 0];
      a_we = k < G; a_addr = k; a_data = acts[k < G ? k : 0];
    end
    @(negedge clk); w_we = 0; a_we = 0; start = 1;
    @(negedge clk); start = 0;
    for (k = 0; k < LENGTH; k = k + 1) begin
      @(negedge clk);
      for (b = 0; b < C*L; b = b + 1) begin
        if (out_live && out_valid[b]) begin
          j = b / L;
          pixel = (out_group - j) * L + b % L;
          checked = checked + 1;
          if (psum_bottom[b*{psum} +: {psum}] !== expect_sum[pixel*C + j] || out_cycle !== expect_cycle[pixel*C + j]) begin
            errors = errors + 1;
            $display("MISMATCH pixel %0d column %0d: sum %0d cycle %0d, expected %0d at cycle %0d", pixel, j,
                     $signed(psum_bottom[b*{psum} +: {psum}]), out_cycle, $signed(expect_sum[pixel*C + j]),
                     expect_cycle[pixel*C + j]);
          end
        end
      end
    end
    if (errors == 0 && checked == T*C) $display("PASS: %0d sums, values and cycles equal the simulator", checked);
    else $display("FAIL: %0d mismatches, %0d of %0d sums checked", errors, checked, T*C);
    $finish;
  end
endmodule
"""


def _hex(values: list[int], bits: int) -> bytes:
    digits = -(-bits // 4)
    return ("\n".join(f"{v & ((1 << bits) - 1):0{digits}x}" for v in values) + "\n").encode()


def write_testbench(job: FoldJob, config: AcceleratorConfig, folder: str | Path, max_pixels: int) -> list[Path]:
    """Write ``tb_fold_unit.v`` and its hex files for ``job`` into ``folder``, for a fold unit generated with
    ``max_pixels``."""
    folder = Path(folder)
    R, C, M, L = config.rows, config.cols, config.m, config.pixels_per_cycle
    pixels = job.pixels
    weight_word = (8 + max(1, index_bits(M))) * C
    files = {"weights.hex": _hex(job.weight_words, weight_word), "acts.hex": _hex(job.act_words, 8 * M * L * R),
             "expect_sum.hex": _hex([int(v) for v in np.asarray(job.expected_out).ravel()], PSUM_BITS),
             "expect_cycle.hex": _hex([int(v) for v in np.asarray(job.expected_when).ravel()], 32)}
    files["tb_fold_unit.v"] = _TEMPLATE.format(
        rows=R, cols=C, m=M, lanes=L, pixels=pixels, groups=len(job.act_words), weight_word=weight_word,
        act_word=8 * M * L * R, length=fold_cycles(config, pixels), w_addr_bits=max(1, (R - 1).bit_length()),
        pixel_bits=pixel_bits(max_pixels, L), pixels_width=max_pixels.bit_length(),
        cycle_bits=cycle_bits(R, C, max_pixels), psum=PSUM_BITS).encode()
    paths = []
    for name, payload in files.items():
        atomic_write_bytes(folder / name, payload)
        paths.append(folder / name)
    return paths


_LAYER_TEMPLATE = """`timescale 1ns/1ps
// Self-checking testbench of layer_unit ({rows}x{cols}, M={m}, {lanes} pixel(s) per cycle, {segments} segment(s)): {folds}
// consecutive folds of a layer back to back; the final sums and the cycle each left the array must equal
// edgesparse's clock_layer (cycles counted from the first weight load, plus OFFSET).
// Run: iverilog -g2012 -o tb tb_layer_unit.v layer_unit.v && vvp tb
module tb_layer_unit;
  localparam R = {rows}, C = {cols}, L = {lanes}, S = {segments}, F = {folds}, NW = {words}, COUT = {cout},
             PIX = {pixels}, OFFSET = {offset}, HIST = {history}, LIMIT = {limit},
             D = {stages};
  reg clk = 0;
  always #5 clk = ~clk;
  reg rst = 1, w_we = 0, n_we = 0, a_we = 0, start = 0;  // a reset first: it also wakes every always @* block
  reg [{w_addr_bits}-1:0] w_addr = 0;
  reg [{weight_word}-1:0] w_data = 0;
  reg [{n_addr_bits}-1:0] n_addr = 0;
  reg [{length_bits}-1:0] n_data = 0;
  reg [{a_addr_bits}-1:0] a_addr = 0;
  reg [{stream_word}-1:0] a_data = 0;
  reg [{fold_bits}-1:0] folds = F;
  wire busy, entry_live;
  wire [31:0] out_cycle;
  wire [{fold_bits}-1:0] entry_fold;
  wire [{length_bits}-1:0] entry_group;
  wire [{psum}*L*C*S-1:0] psum_out;
  wire [L*C*S-1:0] valid_out;
  layer_unit dut(.clk(clk), .rst(rst), .w_we(w_we), .w_addr(w_addr), .w_data(w_data), .n_we(n_we), .n_addr(n_addr),
                 .n_data(n_data), .a_we(a_we), .a_addr(a_addr), .a_data(a_data), .folds(folds), .start(start),
                 .busy(busy), .out_cycle(out_cycle), .entry_live(entry_live), .entry_fold(entry_fold),
                 .entry_group(entry_group), .psum_out(psum_out), .valid_out(valid_out));
  reg [{weight_word}-1:0] weights [0:F*R-1];
  reg [{length_bits}-1:0] lengths [0:F-1];
  reg [{stream_word}-1:0] words [0:NW-1];
  reg [31:0] fold_pixel [0:F-1], fold_channel [0:F-1], fold_segment_rows [0:F-1];
  reg [31:0] expect_sum [0:PIX*COUT-1], expect_cycle [0:PIX*COUT-1];
  reg signed [31:0] sum [0:PIX*COUT-1];
  integer when [0:PIX*COUT-1];
  integer hist_fold [0:HIST-1], hist_group [0:HIST-1];
  integer k, b, port, j, lane, row, entered, f, pixel, channel, drain, errors = 0;
  initial begin
    $readmemh("weights.hex", weights);
    $readmemh("lengths.hex", lengths);
    $readmemh("stream.hex", words);
    $readmemh("fold_pixel.hex", fold_pixel);
    $readmemh("fold_channel.hex", fold_channel);
    $readmemh("fold_segment_rows.hex", fold_segment_rows);
    $readmemh("expect_sum.hex", expect_sum);
    $readmemh("expect_cycle.hex", expect_cycle);
    for (k = 0; k < PIX*COUT; k = k + 1) begin sum[k] = 0; when[k] = -1; end
    @(negedge clk); @(negedge clk); rst = 0;
    for (k = 0; k < F*R || k < NW; k = k + 1) begin
      @(negedge clk);
      w_we = k < F*R; w_addr = k; w_data = weights[k < F*R ? k : 0];
      n_we = k < F; n_addr = k; n_data = lengths[k < F ? k : 0];
      a_we = k < NW; a_addr = k; a_data = words[k < NW ? k : 0];
    end
    @(negedge clk); w_we = 0; n_we = 0; a_we = 0; start = 1;
    @(negedge clk); start = 0;
    drain = R + C + D + 4;
    for (k = 0; k < LIMIT && drain > 0; k = k + 1) begin
      @(negedge clk);
      if (!busy) drain = drain - 1;
      if (entry_live) begin hist_fold[out_cycle] = entry_fold; hist_group[out_cycle] = entry_group; end
      for (b = 0; b < S*C*L; b = b + 1) begin
        if (valid_out[b]) begin
          port = b / (C*L); j = (b % (C*L)) / L; lane = b % L;
          row = (port + 1) * (R / S) - 1;
          entered = out_cycle - row - j - D;
          f = hist_fold[entered];
          pixel = fold_pixel[f] + ((row / fold_segment_rows[f]) * lengths[f] + hist_group[entered]) * L + lane;
          channel = fold_channel[f] + j;
          if (channel < COUT) begin
            sum[pixel*COUT + channel] = sum[pixel*COUT + channel] + $signed(psum_out[b*{psum} +: {psum}]);
            when[pixel*COUT + channel] = out_cycle + OFFSET;
          end
        end
      end
    end
    for (k = 0; k < PIX*COUT; k = k + 1) begin
      if (sum[k] !== $signed(expect_sum[k]) || when[k] !== $signed(expect_cycle[k])) begin
        errors = errors + 1;
        $display("MISMATCH pixel %0d channel %0d: sum %0d cycle %0d, expected %0d at cycle %0d", k / COUT, k % COUT,
                 sum[k], when[k], $signed(expect_sum[k]), $signed(expect_cycle[k]));
      end
    end
    if (errors == 0 && drain == 0) $display("PASS: %0d sums, values and cycles equal the simulator", PIX*COUT);
    else $display("FAIL: %0d mismatches of %0d sums%s", errors, PIX*COUT, drain ? " (the unit never finished)" : "");
    $finish;
  end
endmodule
"""


def write_layer_testbench(program: LayerProgram, config: AcceleratorConfig, expected: tuple[np.ndarray, np.ndarray],
                          offset: int, folder: str | Path) -> list[Path]:
    """Write ``tb_layer_unit.v`` and its hex files: ``program`` (every fold of its layer) on a layer unit generated
    for exactly its folds and words (:func:`edgesparse.rtl.cosim.layer_unit_for`), checked against ``expected``
    (clock_layer's sums and cycles), the unit's cycles shifted by ``offset`` (clock_layer's first weight load)."""
    from edgesparse.rtl.layer_unit import port_widths, stream_word_bits

    folder, geometry = Path(folder), program.geometry
    if program.folds != geometry.folds:
        raise ConfigError("the standalone testbench checks a whole layer: give it every fold")
    R, C, M, L = config.rows, config.cols, config.m, config.pixels_per_cycle
    widths = port_widths(R, program.folds, len(program.stream_words))
    positions = [geometry.fold_position(f) for f in range(program.folds)]
    values, cycles = expected
    weight_word = (8 + max(1, index_bits(M))) * C
    history = int(cycles.max()) - offset + R + C + config.product_stages + 5  # the unit's cycles, up to its last output
    files = {"weights.hex": _hex(program.weight_words, weight_word),
             "lengths.hex": _hex(program.lengths, widths["length"]),
             "stream.hex": _hex(program.stream_words, stream_word_bits(R, M, L)),
             "fold_pixel.hex": _hex([t * geometry.tile_pixels for t, _, _ in positions], 32),
             "fold_channel.hex": _hex([c * C for _, c, _ in positions], 32),
             "fold_segment_rows.hex": _hex([geometry.segment_rows(r) for _, _, r in positions], 32),
             "expect_sum.hex": _hex([int(v) for v in values.ravel()], PSUM_BITS),
             "expect_cycle.hex": _hex([int(v) for v in cycles.ravel()], 32)}
    files["tb_layer_unit.v"] = _LAYER_TEMPLATE.format(
        rows=R, cols=C, m=M, lanes=L, segments=config.segments, folds=program.folds, words=len(program.stream_words),
        cout=geometry.shape.cout, pixels=geometry.shape.pixels, offset=offset, history=history,
        limit=4 * history + 4 * R * C, w_addr_bits=widths["w_addr"], weight_word=weight_word,
        n_addr_bits=widths["n_addr"], length_bits=widths["length"], a_addr_bits=widths["a_addr"],
        stream_word=stream_word_bits(R, M, L), fold_bits=widths["fold"], psum=PSUM_BITS,
        stages=config.product_stages).encode()
    paths = []
    for name, payload in files.items():
        atomic_write_bytes(folder / name, payload)
        paths.append(folder / name)
    return paths
