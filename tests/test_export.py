"""BN folding and fusion, calibration, the integer graph and the reference executor."""

import numpy as np
import pytest
import torch
from torch import nn

from edgesparse.errors import QuantError
from edgesparse.export_flow import random_sparse_model
from edgesparse.quant import dequantize_output, export_model, float_graph, quantize_input, run_float, run_graph
from edgesparse.quant.graph import IntGraph


class EveryOp(nn.Module):
    """A small net with every op the graph knows: padded max pool, strided average pool, residual add."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.a = nn.Sequential(nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32))
        self.b = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                               nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32))
        self.avg = nn.AvgPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32 * 2 * 2, 5))

    def forward(self, x):
        x = self.pool(self.stem(x))
        return self.head(self.avg(torch.relu(self.a(x) + self.b(x))))


def _with_running_stats(model, shape, seed=0):
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 0.5)
    return model.eval()


@pytest.mark.parametrize("name", ["vgg16_small", "resnet18_small", "resnet50_small", "every_op"])
def test_fused_float_graph_equals_the_model(name):
    if name == "every_op":
        model, shape = EveryOp(), (3, 16, 16)
    else:
        model, shape = random_sparse_model(name, "1:16", in_chans=1, num_classes=10, width=0.25), (1, 32, 32)
    model = _with_running_stats(model, shape)
    ops, _ = float_graph(model, shape)
    assert not any(op.kind == "relu" and name != "every_op" for op in ops)  # every ReLU fused
    x = torch.randn(4, *shape)
    with torch.no_grad():
        expected = model(x).double()
    assert torch.allclose(run_float(ops, x)[ops[-1].name], expected, atol=1e-5)


def test_folding_keeps_the_sparsity_pattern():
    model = _with_running_stats(random_sparse_model("vgg16_small", "1:16", in_chans=1, num_classes=10, width=0.25),
                                (1, 32, 32))
    graph = export_model(model, [torch.randn(8, 1, 32, 32)], (1, 32, 32))
    conv = graph.op("features.7")
    weight = conv.arrays["weight"]  # [32, 16, 3, 3]: one non-zero per filter and kernel position
    assert ((weight != 0).sum(axis=1) <= 1).all() and graph.patterns["features.7"] == "1:16"


def test_integer_graph_tracks_the_float_model_on_every_op():
    model = _with_running_stats(EveryOp(), (3, 16, 16))
    calibration = [torch.randn(32, 3, 16, 16) * 2 + 0.5 for _ in range(2)]
    graph = export_model(model, calibration, (3, 16, 16))
    assert {op.kind for op in graph.ops} == {"conv", "linear", "maxpool", "avgpool", "add", "flatten"}
    x = torch.randn(64, 3, 16, 16) * 2 + 0.5
    with torch.no_grad():
        expected = model(x).double().numpy()
    logits = dequantize_output(graph, run_graph(graph, quantize_input(graph, x)))
    assert np.abs(logits - expected).max() < 0.05 * np.abs(expected).max()
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_reference_is_integer_exact():
    model = _with_running_stats(EveryOp(), (3, 16, 16))
    graph = export_model(model, [torch.randn(16, 3, 16, 16)], (3, 16, 16))
    x = quantize_input(graph, torch.randn(5, 3, 16, 16))
    tensors = run_graph(graph, x, keep=True)
    for op in graph.ops[:-1]:
        assert tensors[op.name].dtype == np.int8, op.name
    assert tensors[graph.output].dtype == np.int64  # int32-range logits
    stem = graph.ops[0]  # recompute the first conv by brute force in Python integers
    w, b = stem.arrays["weight"].astype(int), stem.arrays["bias"].astype(int)
    padded = np.pad(x.astype(int), ((0, 0), (0, 0), (1, 1), (1, 1)))
    acc = int((padded[1, :, 2:5, 4:7] * w[3]).sum()) + int(b[3])  # image 1, filter 3, output (1, 2)
    m, s = int(stem.arrays["m"][3]), int(stem.arrays["shift"][3])
    assert tensors[stem.name][1, 3, 1, 2] == max(0, min(127, (acc * m + (1 << (s - 1))) >> s))


def test_unsupported_layers_are_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 2))
    with pytest.raises(QuantError, match="layer '1' of type GELU"):
        export_model(model, [torch.randn(2, 1, 32, 32)], (1, 32, 32))


def test_invalid_graphs_are_rejected():
    model = _with_running_stats(EveryOp(), (3, 16, 16))
    graph = export_model(model, [torch.randn(16, 3, 16, 16)], (3, 16, 16))
    broken = IntGraph(graph.input_shape, graph.input_scale, graph.input_mean, graph.input_std,
                      list(reversed(graph.ops)), graph.scales, graph.patterns)
    with pytest.raises(QuantError, match="no earlier op produces"):
        broken.validate()
    with pytest.raises(QuantError, match=r"takes inputs \[N, 3, 16, 16\]"):
        quantize_input(graph, torch.randn(2, 1, 16, 16))


def test_typed_views_of_the_graph_ops():
    """Kernel, stride, padding, ReLU and 'weighted' are read through one typed view, validated once."""
    model = _with_running_stats(EveryOp(), (3, 16, 16))
    graph = export_model(model, [torch.randn(4, 3, 16, 16)], (3, 16, 16))
    by_kind = {op.kind: op for op in graph.ops}
    stem, pool, head = graph.ops[0], by_kind["maxpool"], graph.ops[-1]
    assert stem.weighted and head.weighted and not pool.weighted and not by_kind["add"].weighted
    assert (stem.window.kernel, stem.window.stride, stem.window.padding) == ((3, 3), (2, 2), (1, 1))
    assert stem.relu and not head.relu and not head.requant
    # hand-derived: a 16x16 input, 3x3 window, stride 2, padding 1 -> 8x8; the 3x3/2 pool with padding 1 -> 4x4
    assert stem.window.output_size(16, 16) == (8, 8) == graph.shapes()[stem.name][1:]
    assert pool.window.output_size(8, 8) == (4, 4) == graph.shapes()[pool.name][1:]
    assert head.window.kernel == (1, 1)
    with pytest.raises(QuantError, match="has no window"):
        by_kind["add"].window
    pool.attrs["padding"] = [1]
    with pytest.raises(QuantError, match="'padding' must be two non-negative integers"):
        graph.validate()
