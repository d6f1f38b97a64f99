"""The Python API as a user meets it: the README's example, the examples, foreign models, extras, the wheel and a
quick ``--help``."""

import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import edgesparse as es
from edgesparse.errors import QuantError

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_readme_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use it from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)[1]
    (tmp_path / "example.py").write_text(code)
    out = _run(["example.py"], tmp_path)
    assert "cycles" in out and "patterns ['dense', '1:16', '1:16']" in out, out
    assert es.load_packed(tmp_path / "model.packed").patterns  # the file it wrote is a valid packed model


def test_every_public_name_says_what_it_does():
    undocumented = [name for name in es.__all__ if name != "__version__" and not (getattr(es, name).__doc__ or "").strip()]
    assert not undocumented


class TopPerFilter:
    """A pattern of one's own (the Pattern protocol): each output filter keeps its ``k`` best weights."""

    final_density = 0.0  # the schedule's floor; the mask keeps k per filter whatever the density

    def __init__(self, k: int) -> None:
        self.k = k

    def __str__(self) -> str:
        return f"top{self.k}-per-filter"

    def mask(self, score: torch.Tensor, density: float) -> torch.Tensor:
        keep = max(self.k, round(density * score[0].numel()))
        rows = score.reshape(score.shape[0], -1)
        return torch.zeros_like(rows, dtype=torch.bool).scatter_(1, rows.topk(keep, 1).indices, True).view_as(score)

    def kept_slots(self, shape, mask=None) -> int:
        return shape[0] * self.k

    def index_bits(self, shape) -> int:
        return shape[0] * self.k * 16

    def check(self, mask: torch.Tensor) -> str | None:
        kept = mask.reshape(mask.shape[0], -1).sum(1)
        return None if bool((kept == self.k).all()) else f"a filter keeps {int(kept.max())} weights, not {self.k}"

    def admits(self, nonzero: torch.Tensor) -> str | None:
        return None


def test_a_pattern_of_ones_own_plugs_into_the_pruner():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
    pruner = es.prepare(model, TopPerFilter(5), total_steps=4)
    pruner.finalize()
    assert es.verify_pattern(model) == ["2"]  # the first conv stays dense
    assert [(f.pattern, f.kept_weights) for f in es.layer_figures(model)] == [("dense", 72), ("top5-per-filter", 40)]


@pytest.mark.parametrize("example", ["fashion_mnist_cnn.py", "resnet_style.py"])
def test_the_examples_run_a_few_steps(tmp_path, example):
    out = _run([str(ROOT / "examples" / example), "--steps", "3", "--train-images", "512", "--test-images", "256",
                "--out", str(tmp_path / "model.packed")], tmp_path)
    assert out.startswith("3 steps:") and "FPS" in out, out
    graph = es.load_packed(tmp_path / "model.packed")
    assert set(graph.patterns.values()) == {"1:16"}  # every masked layer at 1:16; the packed file checks each


class Gate(nn.Module):
    """A block whose sigmoid the integer graph lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


@pytest.mark.parametrize("act, words", [
    (nn.GELU(), "cannot export layer 'body.1' of type GELU (from torch.nn.modules.activation)"),
    (Gate(), "cannot export function torch.sigmoid in layer 'body.1' of type Gate"),
])
def test_export_names_the_first_op_the_integer_graph_lacks(act, words):
    model = nn.Sequential()
    model.add_module("stem", nn.Conv2d(1, 16, 3, padding=1))
    model.add_module("body", nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), act, nn.Conv2d(16, 16, 1), nn.GELU()))
    pruner = es.prepare(model, "1:16", total_steps=1)
    pruner.finalize()
    with pytest.raises(QuantError, match=re.escape(words)):
        es.export(model, torch.randn(2, 1, 8, 8))


class Functional(nn.Module):
    """Written the way many models are: functional ReLUs, an in-place residual add, x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.conv = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu(self.stem(x))
        y = self.conv(x)
        y += x
        y = self.pool(torch.relu(y))
        return self.fc(y.view(y.size(0), -1))


def test_export_takes_functional_ops_that_map_onto_the_graph():
    from edgesparse.quant.reference import dequantize_output, quantize_input, run_graph

    model = Functional().eval()
    pruner = es.prepare(model, "1:16", total_steps=1)
    pruner.finalize()
    images = torch.randn(8, 1, 8, 8)
    graph = es.export(model, images)
    assert [op.kind for op in graph.ops] == ["conv", "conv", "add", "maxpool", "flatten", "linear"]
    logits = dequantize_output(graph, run_graph(graph, quantize_input(graph, images)))
    with torch.no_grad():
        expected = model(images).numpy()
    assert abs(logits - expected).max() < 0.1 * abs(expected).max()  # int8 rounding, not a different function


@pytest.mark.parametrize("command, extra", [("report", "report"), ("rtl", "hw")])
def test_a_command_without_its_extra_names_the_extra_in_one_line(tmp_path, command, extra):
    module = {"report": "matplotlib", "hw": "amaranth"}[extra]
    args = {"report": ["report", "run", "model.packed"], "rtl": ["rtl", "-o", "rtl"]}[command]
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # as if the extra were not installed
            f"from edgesparse.cli import main; sys.exit(main({args!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"needs {module}" in done.stderr and f"pip install 'edgesparse[{extra}]'" in done.stderr


def test_import_edgesparse_loads_no_torch_and_help_is_quick():
    code = "import sys, edgesparse, edgesparse.pattern, edgesparse.accel.config; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
    help_code = "import sys; from edgesparse.cli import main; sys.exit(main(['--help']))"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", help_code], capture_output=True, text=True)
    assert done.returncode == 0 and "simulate" in done.stdout
    assert time.perf_counter() - start < 1.0


def test_the_wheel_holds_the_package_data(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("edgesparse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    for data in ("accel/data/energy.toml", "accel/data/resources.toml", "report/data/published_accelerators.csv"):
        assert f"edgesparse/{data}" in names, data
    requires = sorted(line.split(" ", 1)[1] for line in metadata.splitlines()
                      if line.startswith("Requires-Dist:") and "extra ==" not in line)
    assert [re.split(r"[=<>]", r)[0] for r in requires] == ["numpy", "safetensors", "torch", "tqdm"]
    assert "Provides-Extra: report" in metadata and "Provides-Extra: hw" in metadata
