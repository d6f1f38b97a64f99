"""The cycle model's engine contract, by hand: maps padded to M, exact input rows, pooled tiles of whole windows,
per-tile write-back, the output stage's write cycles and the row-word memory image."""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgesparse.accel import AcceleratorConfig, lower
from edgesparse.accel.array import clock_layer
from edgesparse.accel.geometry import INPUT, OUTPUT, WEIGHTS, LayerShape, fold_geometry, tile_pixels
from edgesparse.accel.memory_image import build_memory_image, read_fold
from edgesparse.accel.schedule import Boundary, schedule_layer
from edgesparse.errors import AcceleratorError
from edgesparse.export_flow import export_random

sys.path.insert(0, str(Path(__file__).parent))
from test_accel import _layer_case  # noqa: E402


def _padded_conv(**changes) -> LayerShape:
    """A 3 -> 8 3x3 conv, padding 1, on an 8x8 map, on an array of M = 16: every pixel holds 16 channels."""
    shape = LayerShape("conv", 9, 8, (8, 8), (3, 8, 8), (3, 3), (1, 1), 0, channel_block=16, padding=(1, 1))
    return replace(shape, **changes)


def test_a_tile_reads_exactly_the_input_rows_its_windows_cover():
    """Rows ``[max(0, first * sh - ph), min(H - 1, last * sh - ph + kh - 1)]``, 8 pixels of 16 channels each."""
    shape = _padded_conv()
    row = 16 * 8  # one input row: 3 channels padded to 16, 8 pixels
    assert shape.input_row_bytes() == row
    assert shape.input_rows_bytes(0, 16) == 3 * row  # output rows 0-1 read rows 0..2 (row -1 is padding)
    assert shape.input_rows_bytes(16, 16) == 4 * row  # output rows 2-3 read rows 1..4
    assert shape.input_rows_bytes(48, 16) == 3 * row  # output rows 6-7 read rows 5..7 (row 8 is padding)
    assert shape.input_rows_bytes(0, 64) == 8 * row  # the whole map, once
    strided = _padded_conv(stride=(2, 2), out_hw=(4, 4))
    assert strided.input_rows_bytes(0, 8) == 4 * row  # output rows 0-1 read rows 0..3
    assert strided.input_rows_bytes(8, 8) == 5 * row  # output rows 2-3 read rows 3..7 (row 8 is padding)
    batch = _padded_conv(batch=2)
    assert batch.input_rows_bytes(56, 16) == 2 * row + 2 * row  # image 0's row 7 (rows 6..7), image 1's row 0 (0..1)
    assert replace(shape, input_resident=True).input_rows_bytes(0, 64) == 0


def test_maps_and_written_bytes_are_padded_to_the_block():
    shape = _padded_conv()
    assert shape.written_bytes == 64 * 16  # 8 filters written as 16 channels
    geometry = fold_geometry(shape, AcceleratorConfig(rows=4, cols=4))
    assert geometry.input_bytes.tolist() == [8 * 16 * 8]
    assert geometry.weight_bytes.tolist() == [[4 * (4 + 2)] * 3] * 2  # every fold's 4 whole row words


def test_a_2x2_pooled_layer_tiles_whole_windows():
    """The output buffer holds 28 pixels of partial sums for one column: 3.5 output rows of 8. Unpooled, a tile
    holds 28 pixels; 2x2-pooled it rounds down to 2 whole rows, so every window lies in one tile."""
    config = AcceleratorConfig(rows=4, cols=1, output_buffer_kib=28 * 4 / 1024)
    assert tile_pixels(_padded_conv(), config) == 28
    pooled = _padded_conv(pool=2, output_bytes=4 * 4 * 16)  # the pooled 4x4 map of 16 padded channels
    geometry = fold_geometry(pooled, config)
    assert geometry.tile_pixels == 16 and geometry.tiles == 4
    assert geometry.output_bytes.tolist() == [64] * 4  # each tile writes its 4 pooled pixels
    assert tile_pixels(_padded_conv(pool=3), config) == 28  # the 3x3 pool leaves tiles alone
    with pytest.raises(AcceleratorError, match="layer 'conv': its 2x2 max pool needs tiles of two whole output"):
        tile_pixels(pooled, replace(config, output_buffer_kib=15 * 4 / 1024))


def test_pooled_pixels_are_completed_by_their_windows_last_pixel():
    two = _padded_conv(pool=2)
    assert two.written_pixels().tolist() == [(2 * y + 1) * 8 + 2 * x + 1 for y in range(4) for x in range(4)]
    three = _padded_conv(pool=3, out_hw=(5, 5), batch=2)  # 3x3 stride 2 padding 1 on 5x5: a 3x3 pooled map
    rows = [1, 3, 4]  # min(2 py + 1, 4)
    assert three.written_pixels().tolist() == [image * 25 + y * 5 + x for image in range(2) for y in rows
                                               for x in rows]


def test_outputs_are_written_back_per_tile_behind_the_next_tiles_weights():
    """Two tiles of 2 pixels, two column folds of 2 filters, one row fold, on a 2x2 dense array: the DMA's list."""
    config = AcceleratorConfig(rows=2, cols=2, m=1, n=1, output_buffer_kib=2 * 2 * 4 / 1024)
    shape = LayerShape("conv", 2, 4, (2, 2), (2, 2, 2), (1, 1), (1, 1), 0)
    geometry = fold_geometry(shape, config)
    assert geometry.tiles == 2 and geometry.col_folds == 2
    assert geometry.transfers() == [(WEIGHTS, 0, 4), (INPUT, 0, 4), (WEIGHTS, 1, 4), (INPUT, 1, 4), (WEIGHTS, 2, 4),
                                    (WEIGHTS, 3, 4), (OUTPUT, 0, 8), (OUTPUT, 1, 8)]


def test_a_pooled_layer_writes_when_its_window_completes():
    """The hand-timed 1x1 conv of test_accel (2 -> 2 on 2x2, 2x2 dense array, 1 B/cycle), 2x2-pooled: fold 0 streams
    at 12, the window's last pixel (1, 1) is group 3, its sum leaves column 0 at 12 + 3 + 1 + 2 = 18 and the pooled
    pixel is written at 18 + (C - 1) + FEED 3 + the sum's register 1 + POOLED 13 = 36; its 2 bytes move in
    [37, 39)."""
    config = AcceleratorConfig(rows=2, cols=2, m=1, n=1, dram_bytes_per_cycle=1.0)
    shape = LayerShape("conv", 2, 2, (2, 2), (2, 2, 2), (1, 1), (1, 1), 0, output_bytes=2, pool=2)
    plan = schedule_layer(shape, config)
    assert plan.write_cycles(config).tolist() == [[36]] and plan.total_cycles == 39
    _, layer, x, _, _, _ = _layer_case(2, 2, 2, 1, 1, 0, 1, 1.0, 0, dict(rows=2, cols=2))
    clock = clock_layer(layer, x, shape, config)[2]
    assert clock.write_cycles.tolist() == [[36]] and clock.total_cycles == 39
    with pytest.raises(AcceleratorError, match="the classic array has no output stage"):
        schedule_layer(shape, replace(config, classic=True)).write_cycles(replace(config, classic=True))


@pytest.mark.parametrize("kernel, stride, padding, pool, size, config", [
    (3, 1, 1, 2, 8, dict(rows=4, cols=3, output_buffer_kib=0.2, dram_bytes_per_cycle=3.0)),  # pooled, 4 tiles
    (3, 2, 1, 3, 9, dict(rows=8, cols=2, segments=2, pixels_per_cycle=2, dram_bytes_per_cycle=0.75)),  # strided
    (1, 2, 0, 0, 7, dict(rows=2, cols=4, output_buffer_kib=0.05)),  # strided, several tiles, unpooled
])
def test_stepped_and_analytic_write_cycles_agree(kernel, stride, padding, pool, size, config):
    op, layer, x, shape, config, _ = _layer_case(12, 5, size, kernel, stride, padding, 4, 0.5, 7, config)
    shape = replace(shape, pool=pool)
    plan = schedule_layer(shape, config, boundary=Boundary(shadow_free=-4))
    _, _, clock = clock_layer(layer, x, shape, config, plan.boundary)
    writes = plan.write_cycles(config)
    assert writes.shape == (len(shape.written_pixels()), plan.col_folds) and (plan.tiles > 1 or pool == 3)
    assert np.array_equal(clock.write_cycles, writes) and clock.total_cycles == plan.total_cycles
    assert plan.total_cycles > writes.max()  # the layer ends after its last write


def test_the_memory_image_stores_row_words():
    """A 2x3 array built for 1:4 (2-bit indices): a row word is 3 int8 values, then 3 indices packed little-endian
    into one byte (index k at bits 2k..2k+1); a fold is the bottom row's word, then the top row's."""
    graph = export_random("vgg16_small", "1:4", in_chans=1, num_classes=10, width=0.125, seed=1)
    config = AcceleratorConfig(rows=2, cols=3, m=4, n=1)
    image, layout = build_memory_image(graph, config)
    assert layout["version"] == 2 and layout["fold"]["row_word_bytes"] == 4 and layout["fold"]["bytes"] == 8
    entry = layout["layers"][1]
    layer = lower(graph.op(entry["name"]), graph.patterns.get(entry["name"]), config)
    col_fold, row_fold = 1, 2
    values = layer.values[2 * row_fold:2 * row_fold + 2, 3 * col_fold:3 * col_fold + 3]
    index = layer.index[2 * row_fold:2 * row_fold + 2, 3 * col_fold:3 * col_fold + 3]
    expected = b"".join(values[r].astype(np.int8).tobytes() + bytes([int(index[r] @ np.array([1, 4, 16]))])
                        for r in (1, 0))
    start = entry["weights_offset"] + (col_fold * entry["row_folds"] + row_fold) * 8
    assert image[start:start + 8] == expected
    read_values, read_index = read_fold(image, layout, entry["name"], col_fold, row_fold)
    assert np.array_equal(read_values, values) and np.array_equal(read_index, index)


def test_maps_are_padded_to_the_block_and_int32_logits_by_four_byte_channels():
    """A 3 -> 8 3x3 conv on 5x5, flattened (72 values) into a linear layer of 5 int32 logits, on an array of
    M = 16: the flattened map is stored as 80 bytes (72 padded to 16); the logits are 4 bytes each, 20 padded to 32
    (the output stage writes a column fold's int32 sums in the same layout with 4-byte channels). With
    0.5 KiB of input buffer the conv's double-buffered input rows (2 x 3 rows x 16 channels x 5 pixels = 480 bytes)
    leave no room for the map: it goes through DRAM."""
    import torch
    from torch import nn

    from edgesparse.accel.residency import map_bytes, plan_maps
    from edgesparse.quant import export_model

    assert map_bytes((3, 8, 8), 16) == 16 * 64 and map_bytes((72,), 16) == 80 and map_bytes((3, 2, 2), 1) == 12
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(72, 5)).eval()
    graph = export_model(model, [torch.randn(4, 3, 5, 5)], (3, 5, 5))
    conv, linear = plan_maps(graph, AcceleratorConfig(rows=4, cols=4, m=16, input_buffer_kib=0.5)).values()
    assert (conv.output_bytes, linear.input_resident, linear.output_bytes) == (80, False, 32)
    assert plan_maps(graph, AcceleratorConfig(rows=4, cols=4, m=16, input_buffer_kib=0.55))["0"].output_bytes == 0


def test_the_resource_model_adds_the_synthesized_engine_s_logic():
    """The engine's logic beyond its array and post-processing lanes, by hand from a table: engine 164 DSP / 5000
    LUT / 6000 FF, array 64 / 1000 / 2000, 8 lanes each of requantizer, residual add and average pool of 4 / 100 /
    150: 4 / 1600 / 400 more than array and post-processing (8 lanes of requantizer, max pool and residual add, 8
    average-pool lanes, one per column); a size with no synthesized engine adds nothing and says so."""
    from edgesparse.accel.resources import engine_logic, estimate_resources

    table = {"status": "synthesized", "source": "hand",
             "engine": {"8x8 M16": {"dsp": 164, "lut": 5000, "ff": 6000}},
             "array_pipelined": {"8x8 M16 L1 S1": {"dsp": 64, "lut": 1000, "ff": 2000}},
             "ppu": {unit: {"dsp": 4, "lut": 100, "ff": 150} for unit in ("requantizer", "max_pool", "residual_add",
                                                                           "avgpool")}}
    config = AcceleratorConfig(rows=8, cols=8, pixels_per_cycle=1, segments=1)
    assert engine_logic(config, table) == {"dsp": 4, "lut": 1600, "ff": 400}
    counted = estimate_resources(config, table)
    assert (counted.dsps, counted.luts) == (64 + 8 * 12 + 8 * 4 + 4, 1000 + 8 * 300 + 8 * 100 + 1600)
    other = estimate_resources(AcceleratorConfig(rows=4, cols=4, pixels_per_cycle=1, segments=1), table)
    assert "engine's control, feeders and DMA not counted" in other.source
