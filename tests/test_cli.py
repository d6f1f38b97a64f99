"""Configs and the command line: help, clear errors for bad input, a real run end to end."""

import json
import subprocess
import sys

import pytest

from edgesparse.cli import main
from edgesparse.config import load_config
from edgesparse.errors import ConfigError


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('pattern = "2:8"\nepochs = 3\n[overrides]\n"classifier" = "dense"\n')
    config = load_config(path, epochs=4)
    assert (config.pattern, config.epochs, config.overrides) == ("2:8", 4, {"classifier": "dense"})


@pytest.mark.parametrize("text, words", [
    ("epochs = [", "not valid TOML"), ("epoch = 3", "unknown config key.*epoch"),
    ('epochs = "five"', "'epochs' must be an integer"), ("lr = -1.0", "lr must be positive"),
    ("batch_size = 0", "batch_size must be at least 1"),
])
def test_malformed_configs_are_named(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("flags, words", [
    (["--pattern", "17:16"], "impossible: a block of M=16 cannot keep N=17"),
    (["--pattern", "0:16"], "positive integer"),
    (["--model", "alexnet"], "unknown model 'alexnet'"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent"], "CIFAR-10 files missing"),
    (["--importance", "random"], "unknown importance 'random'"),
    (["--model", "vgg16"], "takes 224x224 inputs"),
])
def test_bad_training_input_exits_with_a_clear_message(tmp_path, capsys, flags, words):
    code = main(["train", "--out", str(tmp_path / "run"), "--dataset", "synthetic", "--no-progress", *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("edgesparse: error:") and words in err and "Traceback" not in err


def test_help_explains_the_flags():
    out = subprocess.run([sys.executable, "-m", "edgesparse.cli", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--pattern" in out and "N:M/gG" in out and "--resume" in out and "--importance" in out


def test_train_and_figures_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--dataset", "synthetic", "--width", "0.125", "--epochs", "1",
                 "--batch-size", "64", "--update-every", "2", "--no-progress"]) == 0
    assert "16.00x" in capsys.readouterr().out
    assert main(["figures", str(run), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    sparse = [layer for layer in figures["layers"] if layer["pattern"] == "1:16" and layer["shape"][1] % 16 == 0]
    assert sparse and all(layer["compression"] == 16.0 and layer["index_ratio"] == 1 / 32 for layer in sparse)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["pattern"] == "1:16" and (run / "metrics.jsonl").read_text().count("\n") == 1
    assert main(["train", "--out", str(run), "--dataset", "synthetic", "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_export_and_inspect_a_trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--dataset", "synthetic", "--width", "0.25", "--epochs", "1",
                 "--batch-size", "64", "--no-progress"]) == 0
    packed = tmp_path / "model.packed"
    assert main(["export", str(run), "-o", str(packed), "--calibration-batches", "2"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(packed), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    layer = next(r for r in report["layers"] if r["name"] == "features.20")  # 1:16, Cin 32
    assert layer["weights_vs_dense"] == 1 / 16 and layer["index_overhead"] == 1 / 32
    assert report["totals_by_pattern"]["1:16"]["kept_weights"] * 16 == report["totals_by_pattern"]["1:16"][
        "dense_weights"]
    assert report["file_bytes"] == packed.stat().st_size


def test_inspect_rejects_a_damaged_file_clearly(tmp_path, capsys):
    packed = tmp_path / "model.packed"
    assert main(["export", "--model", "resnet18_small", "--in-chans", "1", "--num-classes", "10", "--width",
                 "0.25", "-o", str(packed)]) == 0
    data = bytearray(packed.read_bytes())
    data[-5] ^= 0x10
    packed.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["inspect", str(packed)]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and str(packed) in err and "Traceback" not in err


def test_export_needs_a_run_or_a_model(tmp_path, capsys):
    assert main(["export", "-o", str(tmp_path / "x.packed")]) == 2
    assert "either a trained RUN or --model" in capsys.readouterr().err


def test_simulate_reports_the_json_fields(tmp_path, capsys):
    packed = tmp_path / "model.packed"
    assert main(["export", "--model", "vgg16_small", "--in-chans", "1", "--num-classes", "10", "--width", "0.25",
                 "-o", str(packed)]) == 0
    capsys.readouterr()
    for mode in ("analytic", "fast"):
        assert main(["simulate", str(packed), "--mode", mode, "--array", "8x8", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        for key in ("model", "pattern", "array", "clock_mhz", "mode", "total_cycles", "fps", "pe_utilization",
                    "effective_gops", "actual_gops", "dram_bytes", "layers", "power_w", "gops_per_w", "gops_per_dsp"):
            assert key in report, key
        assert report["pattern"] == "1:16" and report["array"] == "8x8" and report["mode"] == mode
        assert {"name", "cycles", "pe_utilization", "dram_bytes"} <= set(report["layers"][0])
        assert sum(layer["cycles"] for layer in report["layers"]) == report["total_cycles"]
    assert main(["simulate", str(packed), "--array", "0x8"]) == 2
    assert "at least 1x1" in capsys.readouterr().err
    assert main(["simulate", str(packed), "--pattern", "1:8"]) == 2
    assert "cannot select from" in capsys.readouterr().err


@pytest.mark.parametrize("size, words", [
    (0, "input size must be a positive number of pixels, got 0"),
    (7, "the input does not fit layer 'features.23'"),  # five 2x2 pools: 7 -> 3 -> 1 -> 0
    (100000, "adaptive pool 3125x3125 -> 7x7 is not a whole window"),
])
def test_simulate_refuses_an_input_size_the_model_cannot_take_in_one_line(capsys, size, words):
    assert main(["simulate", "--model", "vgg16", "--input-size", str(size), "--mode", "analytic"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1, err


def test_analytic_mode_builds_no_weights_or_activations(monkeypatch, capsys):
    import numpy as np

    import edgesparse.export_flow as flow
    from edgesparse.accel import AcceleratorConfig
    from edgesparse.accel.simulate import simulate

    def refuse(*args, **kwargs):
        raise AssertionError("analytic mode built a model with weights")

    monkeypatch.setattr(flow, "export_random", refuse)
    assert main(["simulate", "--model", "vgg16", "--mode", "analytic", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "vgg16-224"
    graph = flow.shape_graph("vgg16", "1:16")
    weights = [op.arrays["weight"] for op in graph.ops if op.kind in ("conv", "linear")]
    assert len(weights) == 16 and all(not any(w.strides) for w in weights)  # zero-stride views of one value
    assert sum(w.size for w in weights) > 10**8  # the views stand for VGG16's 138 M weights
    monkeypatch.undo()
    small = dict(in_chans=1, num_classes=10, width=0.125)
    for name in ("vgg16_small", "resnet18_small"):  # shapes alone give the cycles real weights give
        real, shaped = flow.export_random(name, "1:16", calibration_images=1, **small), flow.shape_graph(name, **small)
        config = AcceleratorConfig(8, 8)
        expected, got = simulate(real, config, "analytic"), simulate(shaped, config, "analytic")
        assert [(a.name, a.cycles, a.dram_bytes) for a in expected.layers] == \
            [(b.name, b.cycles, b.dram_bytes) for b in got.layers]
    assert np.array_equal(real.input_shape, shaped.input_shape)
