"""The balanced N:M pattern, its baselines, verification and the exact compression figures."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from edgesparse.errors import PatternError
from edgesparse.pattern import BlockPattern, ChannelPattern, DensePattern, UnstructuredPattern, parse_pattern
from edgesparse.sparsity import attach_mask, layer_figures, total_figures, verify_pattern


@pytest.mark.parametrize("spec, expected", [
    ("1:16", BlockPattern(1, 16)), ("2:8/g4", BlockPattern(2, 8, 4)), ("dense", DensePattern()),
    ("unstructured", UnstructuredPattern(16.0, "global")), ("unstructured-layer@8x", UnstructuredPattern(8.0, "layer")),
    ("channel", ChannelPattern(16.0)), (" 4:16 ", BlockPattern(4, 16)),
])
def test_parse_pattern(spec, expected):
    assert parse_pattern(spec) == expected
    assert parse_pattern(str(expected)) == expected


@pytest.mark.parametrize("spec, words", [
    ("17:16", "impossible"), ("0:16", "positive"), ("1:0", "positive"), ("1:16/g0", "positive"),
    ("one-of-sixteen", "unknown sparsity pattern"), ("channel@0.5x", "at least 1"),
])
def test_bad_patterns_are_named(spec, words):
    with pytest.raises(PatternError, match=words):
        parse_pattern(spec)


@settings(max_examples=60, deadline=None)
@given(cout=st.integers(1, 12), cin=st.integers(1, 40), kernel=st.sampled_from([1, 3]),
       m=st.sampled_from([2, 4, 8, 16]), n_frac=st.floats(0.01, 1.0), g=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 1000))
def test_block_mask_keeps_exactly_n_per_block(cout, cin, kernel, m, n_frac, g, seed):
    n = max(1, min(m, round(n_frac * m)))
    pattern = BlockPattern(n, m, g)
    score = torch.rand(cout, cin, kernel, kernel, generator=torch.Generator().manual_seed(seed))
    mask = pattern.mask(score, pattern.final_density)
    assert mask.shape == score.shape and mask.dtype == torch.bool
    assert pattern.check(mask) is None
    rows = mask.permute(0, 2, 3, 1).reshape(cout, kernel * kernel, cin)
    for start in range(0, cin, m):
        block = rows[..., start:start + m]
        assert (block.sum(-1) == min(n, block.shape[-1])).all()
    for first in range(0, cout, g):  # filters of a group share kept positions
        assert (mask[first:first + g] == mask[first]).all()


def test_block_mask_keeps_the_highest_scores():
    score = torch.arange(32.0).view(1, 32)  # Linear-shaped: one filter, 32 inputs
    mask = BlockPattern(2, 16).mask(score, 2 / 16)
    assert mask.nonzero()[:, 1].tolist() == [14, 15, 30, 31]


def test_group_sharing_uses_the_group_score():
    score = torch.zeros(2, 4)
    score[0, 1], score[1, 2] = 5.0, 3.0  # the group's summed score favours channel 1
    mask = BlockPattern(1, 4, 2).mask(score, 0.25)
    assert mask[:, 1].all() and int(mask.sum()) == 2


def test_intermediate_density_keeps_more_per_block():
    pattern = BlockPattern(1, 16)
    assert [pattern.keep_per_block(d) for d in (1.0, 0.5, 0.1, 0.0)] == [16, 8, 2, 1]


def test_unstructured_and_channel_masks_hit_their_compression():
    score = torch.rand(64, 32, 3, 3)
    assert int(UnstructuredPattern(16.0).mask(score, 1 / 16).sum()) == score.numel() // 16
    channel = ChannelPattern(16.0)
    mask = channel.mask(score, 1 / 16)
    assert channel.check(mask) is None
    assert mask.any(dim=(0, 2, 3)).sum() == 2 and (mask == mask[:1, :, :1, :1]).all()


def _masked_net(pattern="1:16"):
    net = nn.Sequential(nn.Conv2d(32, 48, 3), nn.Conv2d(48, 64, 1), nn.Flatten(), nn.Linear(64, 10))
    for layer in (net[0], net[1], net[3]):
        holder = attach_mask(layer, pattern)
        holder.mask.copy_(holder.pattern.mask(layer.weight.detach().abs(), holder.pattern.final_density))
    return net


def test_verify_pattern_accepts_and_names_the_broken_layer_and_block():
    net = _masked_net()
    assert verify_pattern(net) == ["0", "1", "3"]
    net[1].parametrizations.weight[0].mask[5, 16:32, 0, 0] = True
    with pytest.raises(PatternError, match=r"layer '1' .* filter 5, kernel position 0, channels 16..31 keep 16"):
        verify_pattern(net)


def test_figures_are_exactly_16x_and_one_32nd_for_1of16_layers():
    rows = layer_figures(_masked_net())
    for row in rows:
        assert row.compression == 16.0
        assert row.index_ratio == pytest.approx(1 / 32, abs=0) and str(row.index_ratio) == "1/32"
    total = total_figures(rows)
    assert total.kept_weights * 16 == total.dense_weights and str(total.index_ratio) == "1/32"


def test_figures_count_padded_slots_and_group_shared_indices():
    layer = nn.Conv2d(20, 8, 3)  # Cin 20 -> two blocks of 16, the second padded
    attach_mask(layer, "1:16/g4")
    (row,) = layer_figures(nn.Sequential(layer))
    assert row.kept_weights == 8 * 9 * 2 * 1
    assert row.index_bits == (8 // 4) * 9 * 2 * 1 * 4
    assert row.compression == pytest.approx(8 * 20 * 9 / (8 * 9 * 2))
    assert math.isclose(float(row.index_ratio), row.index_bits / (8 * 8 * 20 * 9))
