"""The packed model file: round trip, block packing, and 1000+ seeded ways of damaging it."""

import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save as save_tensors

from edgesparse.errors import PackError
from edgesparse.export_flow import random_sparse_model
from edgesparse.pack import decode_packed, encode_packed, load_packed, pack_bits, save_packed, unpack_bits
from edgesparse.pack.blocks import pack_block_weight, unpack_block_weight
from edgesparse.pack.inspect import stored_layers, total_stored
from edgesparse.pack.packed import _checksum, _read_metadata
from edgesparse.quant import export_model, quantize_input, run_graph
from edgesparse.pattern import BlockPattern


@pytest.fixture(scope="module")
def graph():
    """A small VGG with 1:16 layers, one 2:12 layer (4-bit indices with unused codes) and one 1:4/g2 layer."""
    torch.manual_seed(0)
    model = random_sparse_model("vgg16_small", "1:16", in_chans=1, num_classes=10, width=0.125)
    from edgesparse.sparsity import attach_mask
    from torch.nn.utils import parametrize
    for name, spec in (("features.10", "2:12"), ("features.14", "1:4/g2")):
        layer = model.get_submodule(name)
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
        holder = attach_mask(layer, spec)
        holder.mask.copy_(holder.pattern.mask(layer.weight.detach().abs(), holder.pattern.final_density))
    return export_model(model, [torch.randn(8, 1, 32, 32)], (1, 32, 32))


def test_round_trip_gives_the_identical_graph_and_outputs(graph, tmp_path):
    path = tmp_path / "model.packed"
    size = save_packed(graph, path)
    assert size == path.stat().st_size
    loaded = load_packed(path)
    assert loaded.equals(graph)
    x = quantize_input(graph, torch.randn(6, 1, 32, 32))
    assert np.array_equal(run_graph(graph, x), run_graph(loaded, x))


def test_stored_bytes_are_1_16_values_and_1_32_index(graph):
    rows = {r.name: r for r in stored_layers(graph)}
    row = rows["features.20"]  # 1:16, Cin = 16
    assert row.kept_weights * 16 == row.dense_weights
    assert row.ratios()["index_overhead"] == 1 / 32 and row.value_bytes * 16 == row.dense_weights
    full = [r for r in rows.values() if r.pattern == "1:16" and graph.op(r.name).arrays["weight"].shape[1] % 16 == 0]
    total = total_stored(full)
    assert len(full) >= 8 and total.index_bytes * 32 == total.dense_weights == total.kept_weights * 16


@given(st.integers(1, 7), st.lists(st.integers(0, 127), min_size=1, max_size=50))
def test_bit_packing_round_trips(width, values):
    values = np.array(values) % (1 << width)
    assert unpack_bits(pack_bits(values, width), width, len(values)).tolist() == values.tolist()


def test_block_packing_handles_groups_padding_and_zero_kept_weights():
    pattern = BlockPattern(2, 8, 2)
    rng = np.random.default_rng(0)
    weight = np.zeros((5, 11, 3, 3), dtype=np.int8)  # Cin 11: the second block is padded; Cout 5: a group of 1
    for group in range(3):
        for pos in range(9):
            for block, width in ((0, 8), (1, 3)):
                channels = rng.choice(width, size=min(2, width), replace=False) + 8 * block
                for f in range(group * 2, min(5, group * 2 + 2)):
                    weight[f, channels, pos // 3, pos % 3] = rng.integers(-127, 128, size=len(channels))
    weight[0, :, 0, 0] = 0  # a kept position that quantized to zero still packs
    values, index = pack_block_weight(weight, pattern)
    assert values.shape == (5, 9, 2, 2) and index.shape == (3 * 9 * 2 * 2 * 3 // 8 + 1,)
    assert np.array_equal(unpack_block_weight(values, index, weight.shape, pattern), weight)


def test_weights_breaking_the_pattern_refuse_to_pack():
    weight = np.zeros((2, 16, 1, 1), dtype=np.int8)
    weight[1, [3, 9], 0, 0] = 5
    with pytest.raises(PackError, match="filter group 1, kernel position 0, block 0 has 2 non-zeros"):
        pack_block_weight(weight, BlockPattern(1, 16))


def _tensors_and_metadata(payload):
    from safetensors.numpy import load
    return load(payload), _read_metadata(payload)


def _resealed(tensors, metadata):
    """Re-encode with a fresh checksum: a crafted file whose damage only validation can catch."""
    metadata = dict(metadata)
    metadata["sha256"] = _checksum(metadata["graph"], tensors)
    return save_tensors(tensors, metadata=metadata)


DAMAGE_KINDS = 5  # kinds below this damage the bytes; the others craft an invalid file with a valid checksum


def _mutate(payload: bytes, rng: random.Random, tensors, metadata) -> tuple[int, bytes]:
    kind = rng.randrange(9)
    return kind, _mutated(payload, kind, rng, tensors, metadata)


def _mutated(payload: bytes, kind: int, rng: random.Random, tensors, metadata) -> bytes:
    data = bytearray(payload)
    if kind == 0:  # flip 1-3 random bits anywhere
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 1:  # truncate
        return bytes(data[:rng.randrange(len(data))])
    if kind == 2:  # flip a bit inside the header
        size = int.from_bytes(data[:8], "little")
        data[8 + rng.randrange(size)] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 3:  # corrupt the header length
        data[:8] = rng.randrange(2**40).to_bytes(8, "little")
        return bytes(data)
    if kind == 4:  # edit a tensor's declared shape or dtype in the header, keeping the file self-consistent
        size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + size])
        name = rng.choice([k for k in header if k != "__metadata__"])
        if rng.random() < 0.5:
            header[name]["shape"] = [max(0, s + rng.choice([-1, 1])) for s in header[name]["shape"]] or [1]
        else:
            header[name]["dtype"] = rng.choice(["U8", "I16", "I32", "F32", "I64", "BOOL"])
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(8, "little") + raw + bytes(data[8 + size:])
    description = json.loads(metadata["graph"])
    edited_tensors = dict(tensors)
    if kind == 5:  # an invalid edit of the graph description (a shape, an input, an attribute, a pattern), resealed
        weighted = [op for op in description["ops"] if op["arrays"]]
        choice = rng.randrange(5)
        if choice == 0:
            op = rng.choice(weighted)
            key = rng.choice(list(op["arrays"]))
            op["arrays"][key][rng.randrange(len(op["arrays"][key]))] += rng.choice([-1, 1, 5])
        elif choice == 1:
            op = rng.choice(description["ops"])
            op["inputs"] = [rng.choice(["nowhere", op["name"]])] * len(op["inputs"])
        elif choice == 2:
            op = rng.choice([op for op in description["ops"] if op["attrs"]])
            key = rng.choice(list(op["attrs"]))
            op["attrs"][key] = rng.choice([-3, "x", None, 2**40, [0]])
        elif choice == 3:
            op = rng.choice(weighted)
            description["patterns"][op["name"]] = rng.choice(["3:16", "1:8", "dense", "bogus", "1:16/g4"])
        else:
            description["input_shape"] = rng.choice([[0, 32, 32], [1, 32], [3, 32, 32]])
        return _resealed(edited_tensors, {**metadata, "graph": json.dumps(description)})
    if kind == 6:  # out-of-range (>= 12) or duplicate indices in the 2:12 layer, resealed
        index = tensors["features.10.index"].copy()  # one byte = the two 4-bit indices of one block
        index[rng.randrange(index.size)] = rng.choice([0xFF, 0xEC, 0xDC, 0x00, 0x11, 0x77])
        edited_tensors["features.10.index"] = index
        return _resealed(edited_tensors, metadata)
    if kind == 7:  # a tensor of the wrong shape or dtype, resealed
        name = rng.choice(list(tensors))
        array = tensors[name]
        edited_tensors[name] = array.reshape(-1)[:-1].copy() if rng.random() < 0.5 else array.astype(np.int16)
        return _resealed(edited_tensors, metadata)
    # kind 8: format or version edited, or a tensor dropped or added, resealed
    choice = rng.randrange(3)
    if choice == 0:
        return _resealed(edited_tensors, {**metadata, rng.choice(["format", "version"]): "2"})
    if choice == 1:
        edited_tensors.pop(rng.choice(list(tensors)))
    else:
        edited_tensors["extra.weight"] = np.zeros(3, dtype=np.int8)
    return _resealed(edited_tensors, metadata)


def test_a_thousand_damaged_files_load_identically_or_fail_clearly(graph):
    payload = encode_packed(graph)
    tensors, metadata = _tensors_and_metadata(payload)
    rng = random.Random(1234)
    outcomes = {"identical": 0, "rejected": 0}
    for trial in range(1200):
        kind, damaged = _mutate(payload, rng, tensors, metadata)
        try:
            loaded = decode_packed(damaged, f"trial {trial}")
        except PackError as error:
            message = str(error)
            assert message.startswith(f"trial {trial}: ") and len(message) > len(f"trial {trial}: ") + 10
            outcomes["rejected"] += 1
            continue
        assert kind < DAMAGE_KINDS, f"trial {trial}: a crafted invalid file (kind {kind}) was accepted"
        assert loaded.equals(graph), f"trial {trial} (kind {kind}) loaded a different model"
        outcomes["identical"] += 1
    assert outcomes["rejected"] >= 1000 and outcomes["identical"] >= 1  # e.g. a flip in the header's padding


def test_unreadable_file_is_a_pack_error(tmp_path):
    with pytest.raises(PackError, match="cannot read"):
        load_packed(tmp_path / "missing.packed")
