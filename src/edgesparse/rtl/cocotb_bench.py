"""The cocotb testbench of the fold unit and the layer unit: runs the work pickled at $EDGESPARSE_PAYLOAD (``(kind,
work, config)``: ``"fold"`` jobs through :func:`drive_folds`, a ``"layer"`` program through :func:`drive_layer`) and
pickles the result to $EDGESPARSE_RESULT. Loaded by cocotb inside the simulator, not imported by users."""

from __future__ import annotations

import os
import pickle

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from edgesparse.rtl.cosim import drive_folds, drive_layer


class CocotbBus:
    """Inputs change and outputs are read at the falling edge: between two rising edges, both settled."""

    def __init__(self, dut):
        self.dut = dut

    def set(self, name: str, value: int) -> None:
        getattr(self.dut, name).value = value

    def get(self, name: str, signed: bool = False) -> int:
        value = getattr(self.dut, name).value
        return value.to_signed() if signed else int(value)

    async def tick(self) -> None:
        await FallingEdge(self.dut.clk)


@cocotb.test()
async def unit_matches_the_simulator(dut):
    with open(os.environ["EDGESPARSE_PAYLOAD"], "rb") as handle:
        kind, work, config = pickle.load(handle)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    bus = CocotbBus(dut)
    for name in ("w_we", "a_we", "start") + (("n_we",) if kind == "layer" else ()):
        bus.set(name, 0)
    bus.set("rst", 1)  # a reset first: it also wakes every always @* block of the generated Verilog
    await bus.tick()
    bus.set("rst", 0)
    await bus.tick()
    driver = drive_layer if kind == "layer" else drive_folds
    results = await driver(bus, work, config)
    with open(os.environ["EDGESPARSE_RESULT"], "wb") as handle:
        pickle.dump(results, handle)
