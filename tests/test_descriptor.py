"""Layer descriptors: hand-derived fields, the word encoding, chained addresses, and what the engine refuses."""

import pytest
import torch
from torch import nn

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.descriptor import ON_CHIP, WORDS, LayerDescriptor, describe_network
from edgesparse.accel.memory_image import build_memory_image
from edgesparse.errors import AcceleratorError
from edgesparse.quant import export_model


def _graph(model: nn.Module, shape: tuple[int, int, int]):
    torch.manual_seed(0)
    return export_model(model.eval(), [torch.randn(4, *shape)], shape)


def _describe(graph, **config):
    config = AcceleratorConfig(**{"rows": 4, "cols": 4, "m": 16, **config})
    return describe_network(graph, config, build_memory_image(graph, config)[1])


class Residual(nn.Module):
    """conv -> (conv, conv) + shortcut -> ReLU -> 3x3/2 max pool -> global average -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.pool = nn.MaxPool2d(3, 2, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.pool(torch.relu(self.body(x) + x)))


def test_fields_of_a_small_layer_by_hand():
    """A dense 3 -> 8 3x3 conv (padding 1) with ReLU and a 2x2 max pool on 8x8, on a 4x4 array built for M = 16:
    3 of 16 channels occupied -> 3 slots, 9 x 3 = 27 rows -> 7 row folds, 2 column folds; a fold is 4 row words of
    4 values and 4 x 4 index bits (6 bytes) = 24 bytes, so the bias follows 14 x 24 = 336 bytes of weights, then 8 int32 mantissas and
    8 shifts."""
    graph = _graph(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(8 * 4 * 4, 5)), (3, 8, 8))
    first, last = _describe(graph)
    assert (first.kind, first.cin, first.cout, first.in_h, first.out_h, first.kernel_h, first.pad_h) == (0, 3, 8, 8, 8, 3, 1)
    assert (first.slots, first.row_folds, first.col_folds, first.tile_pixels) == (3, 7, 2, 64)
    assert (first.weights_addr, first.bias_addr, first.m_addr, first.shift_addr) == (0, 336, 368, 400)
    assert (first.relu, first.requant, first.pool, first.gap_m, first.residual_addr) == (1, 1, 2, 0, 0)  # 2x2 pool
    # the dense linear layer: 128 inputs in 8 full blocks of 16 -> 16 slots, 128 rows -> 32 row folds; 5 outputs
    # -> 2 column folds
    assert (last.kind, last.cin, last.cout, last.slots, last.row_folds, last.col_folds, last.requant) == (
        1, 128, 5, 16, 32, 2, 0)
    assert last.weights_addr == 432  # after the conv's 8 shifts


def test_encoding_round_trips_and_refuses_what_does_not_fit():
    edge = LayerDescriptor(*([0] * (WORDS - 1) + [2**32 - 1]))
    data = edge.encode()
    assert len(data) == 4 * WORDS and data[-4:] == b"\xff\xff\xff\xff"
    assert LayerDescriptor.decode(data) == edge
    with pytest.raises(AcceleratorError, match="'gap_shift' = 4294967296 does not fit 32 bits"):
        LayerDescriptor(*([0] * (WORDS - 1) + [2**32])).encode()
    with pytest.raises(AcceleratorError, match=f"is {4 * WORDS} bytes, got {4 * WORDS - 1}"):
        LayerDescriptor.decode(data[:-1])


def test_maps_chain_from_layer_to_layer_and_the_shortcut_is_read_where_it_was_written():
    graph = _graph(Residual(), (3, 16, 16))
    # An 8x16x16 map, its channels padded to M = 16 (4 KiB), does not fit: every map goes through DRAM.
    streamed = _describe(graph, input_buffer_kib=2)
    stem, first, second, head = streamed
    assert stem.output_addr == first.input_addr != ON_CHIP
    assert second.input_addr == first.output_addr != ON_CHIP
    assert second.residual_addr == stem.output_addr  # the add reads the block's input back
    assert second.add_shift > 0 and second.add_relu == 1 and second.pool == 3 and second.gap_m > 0  # ReLU fused
    assert head.input_addr == second.output_addr and head.residual_addr == 0
    resident = _describe(graph)  # 512 KiB: the inner maps stay on chip
    assert resident[1].input_addr == resident[2].residual_addr == ON_CHIP
    assert resident[0].input_addr != ON_CHIP  # the network's input comes from DRAM


def test_what_the_engine_cannot_run_is_refused_by_name():
    odd_pool = _graph(nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(3, 1), nn.Flatten(), nn.Linear(8 * 4 * 4, 2)),
                      (3, 8, 8))
    with pytest.raises(AcceleratorError, match=r"no stage for '1'.s .*kernel=\(3, 3\)"):
        _describe(odd_pool)
    late_relu = _graph(nn.Sequential(nn.Conv2d(3, 8, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(8 * 3 * 3, 2)), (3, 8, 8))
    with pytest.raises(AcceleratorError, match="'2' \\(relu\\) comes too late"):
        _describe(late_relu)
    wide = _graph(nn.Sequential(nn.Conv2d(64, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 2)), (64, 8, 8))
    with pytest.raises(AcceleratorError, match="does not fit the buffers"):
        _describe(wide, input_buffer_kib=1)
    with pytest.raises(AcceleratorError, match="model-only"):
        _describe(wide, classic=True)


def test_a_pooled_map_is_written_once_pooled_and_read_back_by_the_next_layer():
    graph = _graph(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(32, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 8 * 8, 5)), (3, 16, 16))
    conv, second, _ = _describe(graph, input_buffer_kib=2)  # the 2 KiB pooled map does not stay on chip
    assert conv.output_bytes == 32 * 8 * 8 and conv.pool == 2
    assert second.input_addr == conv.output_addr != ON_CHIP
    # The arena: the input image (its 3 channels padded to M = 16), then the pooled map.
    assert conv.input_addr == conv.output_addr - 16 * 16 * 16


def test_the_memory_image_comes_with_the_descriptors(tmp_path):
    from edgesparse.accel.memory_image import write_memory_image

    graph = _graph(Residual(), (3, 16, 16))
    config = AcceleratorConfig(rows=4, cols=4, m=16, input_buffer_kib=2)
    layout = write_memory_image(graph, config, tmp_path)
    data = (tmp_path / "descriptors.bin").read_bytes()
    assert layout["descriptors"]["layers"] == 4 and len(data) == 4 * WORDS * 4
    read = [LayerDescriptor.decode(data[k * 4 * WORDS:(k + 1) * 4 * WORDS]) for k in range(4)]
    assert read == _describe(graph, input_buffer_kib=2)
    assert layout["descriptors"]["fields"][-2:] == ["gap_m", "gap_shift"]
