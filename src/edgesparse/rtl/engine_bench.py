"""A stream testbench for the layer engine's components, the same in Amaranth's simulator and in Icarus Verilog
(cocotb 2): drive a list of per-cycle port values into a component and record every ``out`` with its cycle while
``out_valid`` is set. The cocotb side of it is :func:`streams_through`, loaded by cocotb inside the simulator
(payload and result pickled at $EDGESPARSE_PAYLOAD / $EDGESPARSE_RESULT); tests call :func:`run_stream_amaranth`
and :func:`run_stream_icarus` on the same inputs and compare both records with a Python reference.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Protocol

Step = dict[str, int]  # port -> value for one cycle (ports not named keep their last value)
Record = list[tuple[int, int]]  # (cycle, out) of every cycle with out_valid set


class StreamBus(Protocol):
    def set(self, name: str, value: int) -> None: ...

    def get(self, name: str) -> int: ...

    async def tick(self) -> None: ...


async def drive_stream(bus: StreamBus, steps: list[Step], drain: int) -> Record:
    """Cycle t (from 0) presents ``steps[t]``; after them ``drain`` cycles with ``valid`` low. Returns ``(cycle,
    out)`` for every cycle whose ``out_valid`` is not 0 (its value with its lanes' valid bits: ``out_valid`` is
    read too and must cover every lane)."""
    record = []
    for t in range(len(steps) + drain):
        for name, value in (steps[t] if t < len(steps) else {"valid": 0}).items():
            bus.set(name, value)
        if bus.get("out_valid"):
            record.append((t, bus.get("out")))
        await bus.tick()
    return record


def run_stream_amaranth(unit, steps: list[Step], drain: int) -> Record:
    """:func:`drive_stream` on ``unit`` in Amaranth's simulator."""
    from amaranth.sim import Simulator

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    result = []

    class Bus:
        def __init__(self, ctx):
            self.ctx = ctx

        def set(self, name: str, value: int) -> None:
            self.ctx.set(getattr(unit, name), value)

        def get(self, name: str) -> int:
            return int(self.ctx.get(getattr(unit, name)))

        async def tick(self) -> None:
            await self.ctx.tick()

    async def bench(ctx):
        result.extend(await drive_stream(Bus(ctx), steps, drain))

    simulator.add_testbench(bench)
    simulator.run()
    return result


def run_stream_icarus(text: str, top: str, steps: list[Step], drain: int, build_dir: str | Path) -> Record:
    """:func:`drive_stream` on Verilog ``text`` (module ``top``) in Icarus through cocotb."""
    from edgesparse.rtl.cosim import run_cocotb

    return run_cocotb(text, top, "edgesparse.rtl.engine_bench", (steps, drain), build_dir)


if "EDGESPARSE_PAYLOAD" in os.environ:  # loaded by cocotb inside the simulator
    import cocotb
    from cocotb.clock import Clock
    from cocotb.triggers import FallingEdge

    class _CocotbBus:
        """Inputs change and outputs are read at the falling edge: between two rising edges, both settled."""

        def __init__(self, dut: Any):
            self.dut = dut

        def set(self, name: str, value: int) -> None:
            getattr(self.dut, name).value = value

        def get(self, name: str) -> int:
            return int(getattr(self.dut, name).value)

        async def tick(self) -> None:
            await FallingEdge(self.dut.clk)

    @cocotb.test()
    async def streams_through(dut):
        with open(os.environ["EDGESPARSE_PAYLOAD"], "rb") as handle:
            steps, drain = pickle.load(handle)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        bus = _CocotbBus(dut)
        bus.set("valid", 0)
        bus.set("rst", 1)  # a reset first: it also wakes every always @* block of the generated Verilog
        await bus.tick()
        bus.set("rst", 0)
        await bus.tick()
        record = await drive_stream(bus, steps, drain)
        with open(os.environ["EDGESPARSE_RESULT"], "wb") as handle:
            pickle.dump(record, handle)
