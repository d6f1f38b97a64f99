"""``--json`` on every command that prints figures: the JSON's figures equal the ones the text output prints.

Each command runs twice on the same input, once as text and once with ``--json``; every figure of the JSON is
formatted as the text formats it and must appear there (tables: in the row of its layer)."""

import json

import pytest

from edgesparse.cli import main


def _outputs(capsys, args: list[str], json_args: list[str] | None = None) -> tuple[str, dict]:
    assert main(args) == 0
    text = capsys.readouterr().out
    assert main([*(json_args or args), "--json"]) == 0
    return text, json.loads(capsys.readouterr().out)


def _row(text: str, name: str) -> str:
    """The table line of layer ``name``."""
    return next(line for line in text.splitlines() if line.split() and line.split()[0] == name)


def _check_layers(text: str, layers: list[dict], columns: list[tuple[str | None, str]]) -> None:
    """Each layer's row holds its figures in the table's columns after the name (None: a column not checked)."""
    assert layers
    for layer in layers:
        cells = _row(text, layer["name"]).split()[1:]
        for cell, (key, spec) in zip(cells, columns, strict=False):
            assert key is None or cell == format(layer[key], spec), (layer["name"], key, layer[key], cells)


COUNTS = [("pattern", ""), ("dense_weights", ","), ("kept_weights", ",")]
STORED = [*COUNTS, ("value_bytes", ","), ("index_bytes", ","), ("scale_bytes", ","), (None, ""), (None, ""),
          ("vs_dense_int8", ".4f"), ("vs_dense_fp32", ".4f")]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    path = tmp_path_factory.mktemp("json") / "model.packed"
    assert main(["export", "--model", "vgg16_small", "--in-chans", "1", "--num-classes", "10", "--width", "0.25",
                 "-o", str(path)]) == 0
    return path


def test_train_and_figures_json(tmp_path, capsys):
    flags = ["--dataset", "synthetic", "--width", "0.125", "--epochs", "1", "--batch-size", "64", "--no-progress"]
    text, figures = _outputs(capsys, ["train", "--out", str(tmp_path / "a"), *flags],
                             ["train", "--out", str(tmp_path / "b"), *flags])
    summary = text.splitlines()[-1]
    for key, spec in (("test_accuracy", ".4f"), ("compression", ".2f"), ("index_ratio", ".5f"), ("steps", "")):
        assert format(figures[key], spec) in summary, (key, summary)
    _check_layers(text, figures["layers"], COUNTS)
    text, figures = _outputs(capsys, ["figures", str(tmp_path / "a")])
    _check_layers(text, figures["layers"], COUNTS)
    total, last = figures["total"], text.splitlines()[-1].split()  # the table ends with the whole-model total
    assert last[0] == "total" and [f"{total[k]:,}" for k in ("dense_weights", "kept_weights")] == last[2:4]
    assert f"{total['compression']:.2f}x" == last[4]


def test_export_and_inspect_json(tmp_path, capsys, packed):
    flags = ["--model", "vgg16_small", "--in-chans", "1", "--num-classes", "10", "--width", "0.25"]
    text, figures = _outputs(capsys, ["export", *flags, "-o", str(tmp_path / "a.packed")],
                             ["export", *flags, "-o", str(tmp_path / "b.packed")])
    _check_layers(text, figures["layers"], STORED)
    assert f"{figures['file_bytes']:,} bytes, {figures['ops']} integer ops" in text
    text, figures = _outputs(capsys, ["inspect", str(packed)])
    _check_layers(text, figures["layers"], STORED)
    assert f"{figures['file_bytes']:,} bytes, {figures['ops']} integer ops" in text


def test_simulate_json(capsys, packed):
    text, figures = _outputs(capsys, ["simulate", str(packed), "--array", "8x8", "--mode", "analytic"])
    _check_layers(text, figures["layers"], [("kind", ""), ("folds", ","), ("cycles", ","), ("stall_cycles", ","),
                                            ("pe_utilization", ".3f"), ("dram_bytes", ",")])
    for key, spec in (("total_cycles", ","), ("fps", ".2f"), ("pe_utilization", ".3f"), ("effective_gops", ".1f"),
                      ("actual_gops", ".1f"), ("energy_mj", ".3f"), ("power_w", ".3f"), ("gops_per_w", ",.0f"),
                      ("dsps", ""), ("gops_per_dsp", ".2f")):
        assert format(figures[key], spec) in text, key


def test_rtl_json(tmp_path, capsys):
    text, figures = _outputs(capsys, ["rtl", "--array", "4x4", "--pattern", "1:4", "--max-pixels", "9",
                                      "-o", str(tmp_path)])
    assert text.splitlines()[:len(figures["files"])] == figures["files"]
    assert f"{figures['design']} (index {figures['index_bits']} bits). Check: {figures['check']}" in text
