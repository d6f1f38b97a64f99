"""A standalone, self-checking Verilog testbench for the fold unit: one fold's memories and the simulator's expected
sums and cycles as hex files, compared output by output (runs with Icarus alone, no Python)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.schedule import fold_cycles
from edgesparse.checkpoint import atomic_write_bytes
from edgesparse.rtl.array import cycle_bits, pixel_bits
from edgesparse.rtl.cosim import FoldJob
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
