"""The accelerator's three views agree with each other and with the integer reference."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgesparse.accel import AcceleratorConfig, fold_cycles, lower, parse_array, plan_network
from edgesparse.accel.simulate import simulate
from dataclasses import replace

from edgesparse.accel.array import clock_layer, run_fast, run_stepped
from edgesparse.accel.bound import layer_bound
from edgesparse.accel.schedule import Boundary, LayerShape, schedule_layer
from edgesparse.accel.simulate import _post_process
from edgesparse.errors import AcceleratorError
from edgesparse.export_flow import export_random
from edgesparse.quant import quantize_input, run_graph
from edgesparse.quant.fixedpoint import quantize_multipliers
from edgesparse.quant.graph import IntOp
from edgesparse.quant.reference import run_op
from edgesparse.pattern import BlockPattern


def _random_conv(rng, cin, cout, kernel, stride, padding, n, m):
    weight = rng.integers(-127, 128, size=(cout, cin, kernel, kernel)).astype(np.int8)
    pattern = BlockPattern(n, m)
    mask = pattern.mask(torch.from_numpy(np.abs(weight).astype(np.float32) + rng.random(weight.shape)), n / m)
    weight = weight * mask.numpy()
    mult, shift = quantize_multipliers(rng.uniform(1e-4, 1e-2, size=cout))
    return IntOp("conv", "conv", ["input"], {"kernel": [kernel, kernel], "stride": [stride, stride],
                                             "padding": [padding, padding], "relu": bool(rng.integers(2))},
                 {"weight": weight.astype(np.int8), "bias": rng.integers(-5000, 5000, cout).astype(np.int32),
                  "m": mult, "shift": shift}), str(pattern)


def _layer_case(cin, cout, size, kernel, stride, padding, m, n_frac, seed, config_kwargs):
    rng = np.random.default_rng(seed)
    n = max(1, round(n_frac * m))
    op, spec = _random_conv(rng, cin, cout, kernel, stride, padding, n, m)
    config = AcceleratorConfig(m=m, n=n, **config_kwargs)
    x = rng.integers(-128, 128, size=(cin, size, size)).astype(np.int8)
    x.flat[rng.integers(x.size)] = -128  # the edge value, always present
    layer = lower(op, spec, config)
    assert layer.slots == n and layer.rows_needed == kernel * kernel * -(-cin // m) * n
    out_h, out_w = layer.output_size(size, size)
    shape = LayerShape("conv", layer.rows_needed, cout, (out_h, out_w), (cin, size, size), (kernel, kernel),
                       (stride, stride), cout * cin * kernel**2 * out_h * out_w, channel_block=m,
                       padding=(padding, padding))
    return op, layer, x, shape, config, (cout, out_h, out_w)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 40), cout=st.integers(1, 12), size=st.integers(1, 6), kernel=st.sampled_from([1, 3]),
       stride=st.sampled_from([1, 2]), padding=st.integers(0, 1), m=st.sampled_from([2, 4, 8, 16]),
       n_frac=st.floats(0.0, 1.0), rows=st.sampled_from([1, 2, 3, 4, 8]), cols=st.integers(1, 6),
       seed=st.integers(0, 2**16), output_kib=st.sampled_from([0.06, 0.2, 256.0]),
       pixels_per_cycle=st.sampled_from([1, 2]), segments=st.sampled_from([1, 2, 4]),
       spare_slots=st.sampled_from([0, 1, 100]), rate=st.sampled_from([0.75, 3.0, 16.0]),
       resident=st.booleans(), written=st.sampled_from([None, 0, 7]), residual=st.sampled_from([0, 50]),
       pool=st.sampled_from([0, 2, 3]))
def test_pipelined_stepped_fast_analytic_and_reference_agree(cin, cout, size, kernel, stride, padding, m, n_frac,
                                                             rows, cols, seed, output_kib, pixels_per_cycle,
                                                             segments, spare_slots, rate, resident, written,
                                                             residual, pool):
    """The pipelined array (shadow weights, segments, residency, pooled outputs, tiny buffers and slow DRAM): the
    stepped array clocks its own DMA, loader and controller; its values, every output's and every write's cycle,
    every fold's start and the layer's cycles equal the schedule's, and fast + the post-processing unit equals the
    integer reference."""
    assume(rows % segments == 0 and padding * 2 + size >= kernel)  # a buildable array and a layer with outputs
    fold_bytes = rows * (cols + -(-cols * (m.bit_length() - 1) // 8))  # R row words of values and indices
    op, layer, x, shape, config, out_shape = _layer_case(
        cin, cout, size, kernel, stride, padding, m, n_frac, seed,
        dict(rows=rows, cols=cols, output_buffer_kib=output_kib, pixels_per_cycle=pixels_per_cycle,
             segments=segments, weight_buffer_kib=(2 + spare_slots) * fold_bytes / 1024 + 1e-9,
             dram_bytes_per_cycle=rate))
    shape = replace(shape, input_resident=resident, output_bytes=written, residual_bytes=residual, pool=pool)
    assume(len(shape.written_pixels()) > 0)  # a pooled map of at least one pixel
    try:
        plan = schedule_layer(shape, config, boundary=Boundary(shadow_free=-5))
    except AcceleratorError as error:  # a 2x2 pool whose tiles cannot hold two output rows
        assume("2x2 max pool" not in str(error))
        raise
    stepped_acc, stepped_cycles, clock = clock_layer(layer, x, shape, config, plan.boundary)
    fast_acc, fast_cycles = run_fast(layer, x, plan, config)
    assert np.array_equal(stepped_acc, fast_acc)
    assert np.array_equal(stepped_cycles, fast_cycles)
    assert np.array_equal(clock.write_cycles, plan.write_cycles(config))
    assert np.array_equal(clock.stream_starts, plan.starts) and np.array_equal(clock.load_starts, plan.load_starts)
    assert clock.total_cycles == plan.total_cycles and clock.next_boundary == plan.next_boundary
    assert np.array_equal(_post_process(op, fast_acc, out_shape), run_op(op, [x[None]]))
    bound = layer_bound(shape, config)
    assert plan.total_cycles >= bound.compute_cycles and plan.dram_bytes >= bound.dram_bytes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.integers(1, 40), cout=st.integers(1, 12), size=st.integers(3, 8), kernel=st.sampled_from([1, 3]),
       stride=st.sampled_from([1, 2]), padding=st.integers(0, 1), m=st.sampled_from([2, 4, 8, 16]),
       n_frac=st.floats(0.0, 1.0), rows=st.integers(1, 6), cols=st.integers(1, 6), seed=st.integers(0, 2**16),
       output_kib=st.sampled_from([0.05, 0.2, 256.0]), pixels_per_cycle=st.sampled_from([1, 2]))
def test_classic_stepped_fast_analytic_and_reference_agree(cin, cout, size, kernel, stride, padding, m, n_frac, rows,
                                                           cols, seed, output_kib, pixels_per_cycle):
    op, layer, x, shape, config, out_shape = _layer_case(
        cin, cout, size, kernel, stride, padding, m, n_frac, seed,
        dict(rows=rows, cols=cols, output_buffer_kib=output_kib, pixels_per_cycle=pixels_per_cycle, classic=True))
    plan = schedule_layer(shape, config)
    stepped_acc, stepped_cycles = run_stepped(layer, x, plan, config)
    fast_acc, fast_cycles = run_fast(layer, x, plan, config)
    assert np.array_equal(stepped_acc, fast_acc)
    assert np.array_equal(stepped_cycles, fast_cycles)
    last = plan.total_cycles - 1  # the fold drains through all C columns, used or not
    assert stepped_cycles.max() == last - (-cout % cols)
    assert plan.tiles == -(-out_shape[1] * out_shape[2] // plan.tile_pixels)
    assert np.array_equal(_post_process(op, fast_acc, out_shape), run_op(op, [x[None]]))
    lengths = [fold_cycles(config, len(plan.tile_range(t))) for t in range(plan.tiles)]
    analytic = sum(lengths) * plan.row_folds * plan.col_folds + plan.stall_cycles
    assert analytic == plan.total_cycles


@pytest.mark.parametrize("cout, total, streams, writes", [
    (2, 42, [12], [[30], [31], [32], [33]]), (4, 56, [12, 18], [[30, 36], [31, 37], [32, 38], [33, 39]])])
def test_hand_timed_layer_pins_every_stall_to_the_cycle(cout, total, streams, writes):
    """Derived by hand from the contract (schedule module docstring), 2x2 dense array, 1 B/cycle DRAM, a 1x1 conv
    2 -> cout on 2x2 pixels: weights(0) 4 B in [0, 4), input(0) 8 B in [4, 12), (weights(1) 4 B in [12, 16));
    fold 0 loads at 4 and streams at max(4 + 2, 12) = 12 for 4 groups, pixel g's sum leaves column 0 at
    12 + g + 1 + 2 (bottom row 1, 2 product stages) and is written at + (C - 1) + FEED 3 + the sum's register 1 +
    OUTPUT 10: 30 + g; fold 1 loads at max(16, 12) = 16 and streams at max(18, 12 + 4) = 18, its pixels written at
    36 + g. Outputs move per tile (since the engine writes back tiles, not column folds): the one tile's 4 x cout
    bytes start after its last write: [34, 42) for cout 2, [40, 56) for cout 4."""
    config = AcceleratorConfig(rows=2, cols=2, m=1, n=1, dram_bytes_per_cycle=1.0)
    shape = LayerShape("conv", 2, cout, (2, 2), (2, 2, 2), (1, 1), (1, 1), 0)
    plan = schedule_layer(shape, config)
    assert plan.total_cycles == total and list(plan.starts) == streams
    assert plan.write_cycles(config).tolist() == writes
    rng = np.random.default_rng(0)
    op = IntOp("conv", "conv", ["input"], {"kernel": [1, 1], "stride": [1, 1], "padding": [0, 0]},
               {"weight": rng.integers(-128, 128, (cout, 2, 1, 1)).astype(np.int8),
                "bias": np.zeros(cout, np.int32), "m": np.full(cout, 1 << 30, np.int32), "shift": np.full(cout, 31, np.int32)})
    layer = lower(op, "dense", config)
    _, _, clock = clock_layer(layer, rng.integers(-128, 128, (2, 2, 2)).astype(np.int8), shape, config)
    assert clock.total_cycles == total and list(clock.stream_starts) == streams
    assert clock.write_cycles.tolist() == writes


def _network(name="vgg16_small", pattern="1:16"):
    return export_random(name, pattern, in_chans=1, num_classes=10, width=0.125, seed=1)


@pytest.mark.parametrize("name", ["vgg16_small", "resnet18_small"])
def test_whole_network_fast_and_stepped_equal_the_reference(name):
    graph = _network(name)
    image = quantize_input(graph, torch.randn(1, 1, 32, 32))
    reference = run_graph(graph, image, keep=True)
    config = AcceleratorConfig(rows=8, cols=4)
    fast = simulate(graph, config, "fast", image[0], keep=True)
    for op in graph.ops:
        assert np.array_equal(fast.tensors[op.name][0], reference[op.name][0]), op.name
    analytic = simulate(graph, config, "analytic")
    assert [layer.cycles for layer in analytic.layers] == [layer.cycles for layer in fast.layers]
    if name == "vgg16_small":
        stepped = simulate(graph, config, "stepped", image[0])
        assert np.array_equal(stepped.output, fast.output)
        for a, b in zip(stepped.layers, fast.layers):
            assert (a.output_cycles is None) == (b.output_cycles is None)
            if a.output_cycles is not None:
                assert np.array_equal(a.output_cycles, b.output_cycles), a.name


def test_every_pe_has_the_same_work_so_cycles_are_known_in_advance():
    """The stepped simulator clocks real weights and activations through the array: two weight sets of one
    pattern, on two images, leave every sum at the same cycle, the one the analytic model predicts from shapes."""
    config = AcceleratorConfig(rows=8, cols=8)
    graphs = [_network(), export_random("vgg16_small", "1:16", in_chans=1, num_classes=10, width=0.125, seed=7)]
    weighted = [op.name for op in graphs[0].ops if op.kind in ("conv", "linear")]
    assert all(not np.array_equal(graphs[0].op(n).arrays["weight"], graphs[1].op(n).arrays["weight"])
               for n in weighted)
    images = [quantize_input(g, torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(i)))[0]
              for i, g in enumerate(graphs)]
    stepped = [simulate(g, config, "stepped", image) for g, image in zip(graphs, images)]
    analytic = simulate(graphs[0], config, "analytic")
    assert len(stepped[0].layers) == len(analytic.layers)
    timed = 0
    for a, b, expected in zip(stepped[0].layers, stepped[1].layers, analytic.layers):
        if a.output_cycles is None:
            continue
        predicted = expected.start_cycle + expected.schedule.output_cycles(config)
        assert np.array_equal(a.output_cycles, predicted) and np.array_equal(b.output_cycles, predicted), a.name
        timed += 1
    assert timed == len(weighted)


def test_dense_mode_follows_the_scale_sim_weight_stationary_formula():
    config = AcceleratorConfig(rows=32, cols=32, m=1, n=1, input_buffer_kib=1e9, output_buffer_kib=1e9,
                               dram_bytes_per_cycle=1e9, classic=True)
    shape = LayerShape("conv1_2", 3 * 3 * 64, 64, (224, 224), (64, 226, 226), (3, 3), (1, 1), 0)
    plan = schedule_layer(shape, config)
    assert plan.tiles == 1
    assert plan.compute_cycles - 1 == 1_809_719  # SCALE-Sim v3's figure for VGG16 conv1_2 on 32x32


def test_sparse_layers_need_16x_fewer_rows():
    graph = _network()
    dense = simulate(graph, AcceleratorConfig(16, 16, m=1, n=1), "analytic")
    sparse = simulate(graph, AcceleratorConfig(16, 16), "analytic")
    layer = {layer.name: layer for layer in sparse.layers}["features.20"]
    dense_layer = {layer.name: layer for layer in dense.layers}["features.20"]
    assert dense_layer.schedule.shape.rows_needed == 16 * layer.schedule.shape.rows_needed
    assert sparse.dense_macs == dense.dense_macs and sparse.real_macs < dense.real_macs


@pytest.mark.parametrize("kwargs, words", [
    ({"rows": 0}, "rows must be a positive integer"), ({"n": 17}, "N must not exceed M"),
    ({"clock_mhz": 0}, "clock_mhz must be a positive number"),
    ({"weight_buffer_kib": 0.1}, "cannot double-buffer one fold"),
    ({"segments": 3}, "segments must be a power of two that divides the 16 rows"),
    ({"rows": 12, "segments": 8}, "segments must be a power of two that divides the 12 rows"),
    ({"classic": True, "segments": 2}, "segments must be 1"), ({"batch": 0}, "batch must be a positive integer"),
])
def test_bad_configs_are_named(kwargs, words):
    with pytest.raises(AcceleratorError, match=words):
        AcceleratorConfig(**kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(AcceleratorError, match="RxC"):
        parse_array("16by16")
    graph = _network()
    with pytest.raises(AcceleratorError, match="cannot select from"):
        simulate(graph, AcceleratorConfig(m=8), "analytic")  # 1:16 layers on an array built for M=8
    with pytest.raises(AcceleratorError, match="int8 input image"):
        simulate(graph, AcceleratorConfig(), "fast")
    with pytest.raises(AcceleratorError, match="unknown simulation mode"):
        simulate(graph, AcceleratorConfig(), "turbo")


def test_memory_image_holds_every_fold_in_dma_order(tmp_path):
    from edgesparse.accel.memory_image import read_fold, write_memory_image
    import json

    graph = _network()
    config = AcceleratorConfig(rows=8, cols=4)
    layout = write_memory_image(graph, config, tmp_path)
    image = (tmp_path / "weights.bin").read_bytes()
    assert json.loads((tmp_path / "layout.json").read_text()) == layout and len(image) == layout["total_bytes"]
    for entry in layout["layers"]:
        layer = lower(graph.op(entry["name"]), graph.patterns.get(entry["name"]), config)
        for col_fold in range(entry["col_folds"]):
            for row_fold in range(entry["row_folds"]):
                values, index = read_fold(image, layout, entry["name"], col_fold, row_fold)
                rows = slice(row_fold * 8, min(layer.rows_needed, row_fold * 8 + 8))
                cols = slice(col_fold * 4, min(layer.cout, col_fold * 4 + 4))
                height, width = rows.stop - rows.start, cols.stop - cols.start
                assert np.array_equal(values[:height, :width], layer.values[rows, cols])
                assert np.array_equal(index[:height, :width], layer.index[rows, cols])
                assert not values[height:].any() and not values[:, width:].any()
        bias = np.frombuffer(image, "<i4", layer.cout, entry["bias_offset"])
        assert np.array_equal(bias, graph.op(entry["name"]).arrays["bias"])


def test_a_trained_fashion_mnist_model_runs_bit_exact_on_every_layer(tmp_path):
    from edgesparse.config import load_config
    from edgesparse.data import iterate_batches, load_dataset
    from edgesparse.export_flow import export_run
    from edgesparse.train import train

    train(load_config(epochs=1, train_limit=1024, test_limit=500, channels_last=False), tmp_path / "run",
          progress=False)
    graph = export_run(tmp_path / "run", calibration_batches=2)
    images, _ = next(iterate_batches(load_dataset("fashion_mnist", "test"), 3, shuffle=False))
    config = AcceleratorConfig(rows=16, cols=16)
    for image in quantize_input(graph, images):
        reference = run_graph(graph, image[None], keep=True)
        fast = simulate(graph, config, "fast", image, keep=True)
        for op in graph.ops:
            assert np.array_equal(fast.tensors[op.name], reference[op.name]), op.name


def test_layers_of_other_patterns_run_exactly_and_cost_their_slots():
    from torch.nn.utils import parametrize

    from edgesparse.export_flow import random_sparse_model
    from edgesparse.quant import export_model
    from edgesparse.sparsity import attach_mask

    model = random_sparse_model("vgg16_small", "1:16", in_chans=1, num_classes=10, width=0.25, seed=3)
    layer = model.features[10]  # Cin 32: a 4:16 layer on the 1:16 array
    parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    holder = attach_mask(layer, "4:16")
    holder.mask.copy_(holder.pattern.mask(layer.weight.detach().abs(), holder.pattern.final_density))
    graph = export_model(model, [torch.randn(4, 1, 32, 32)], (1, 32, 32))
    config = AcceleratorConfig(rows=8, cols=8)
    rows = {op.name: shape.rows_needed for op, shape in plan_network(graph, config) if shape is not None}
    assert rows["features.10"] == 9 * 2 * 4 and rows["features.7"] == 9 * 1 * 1
    assert rows["features.0"] == 9 * 1 * 1  # the dense first conv: one input channel, every weight stored
    image = quantize_input(graph, torch.randn(1, 1, 32, 32))
    fast = simulate(graph, config, "fast", image[0])
    assert np.array_equal(fast.output, run_graph(graph, image))


def test_a_layer_that_does_not_fit_the_buffers_is_named():
    with pytest.raises(AcceleratorError, match="does not fit the buffers"):
        simulate(_network(), AcceleratorConfig(input_buffer_kib=0.5), "analytic")


def test_prologue_prefetch_hides_only_what_the_previous_layer_left_idle():
    from edgesparse.accel.schedule import prologue_bytes

    config = AcceleratorConfig(rows=8, cols=8, input_buffer_kib=64, output_buffer_kib=16, classic=True)
    shape = LayerShape("conv", 9 * 4, 64, (56, 56), (64, 58, 58), (3, 3), (1, 1), 0)
    alone = schedule_layer(shape, config)
    full = prologue_bytes(shape, config, with_input=True)
    hidden = schedule_layer(shape, config, prefetched_bytes=full)
    assert alone.tiles > 1 and alone.total_cycles - hidden.total_cycles == -(-full // 16)
    assert hidden.dram_bytes == alone.dram_bytes  # prefetched bytes still cross the DRAM interface
    assert 0 < alone.tail_idle_bytes  # a compute-bound last tile leaves the DRAM idle for the next prologue

    graph = _network()
    result = simulate(graph, AcceleratorConfig(rows=8, cols=4, classic=True), "analytic")
    weighted = [layer for layer in result.layers if layer.schedule is not None]
    first = weighted[0].schedule
    assert first.stall_cycles >= -(-prologue_bytes(first.shape, result.config, True) // 16)  # nothing to hide it


def test_buffer_traffic_counts_each_access_once():
    config = AcceleratorConfig(rows=4, cols=4, m=16, n=1)
    shape = LayerShape("conv", 10, 6, (5, 5), (32, 7, 7), (3, 3), (1, 1), 0)  # 10 rows: 3 row folds; 2 col folds
    plan = schedule_layer(shape, config)
    traffic = plan.buffer_bytes
    assert plan.tiles == 1 and plan.row_folds == 3 and plan.col_folds == 2
    # The loader reads every fold's 4 whole row words (4 values, 4 4-bit indices: 6 bytes), unused PEs' zeros too.
    assert traffic["weight_buffer_reads"] == 3 * 2 * 4 * 6
    assert traffic["input_buffer_reads"] == 10 * 2 * 25 * 16  # every row, every column fold, every pixel, M bytes
    assert traffic["output_buffer_writes"] == traffic["output_buffer_reads"] == 6 * 3 * 25 * 4


def test_a_batch_reuses_every_fold_of_weights_and_stays_bit_exact():
    graph = _network()
    images = np.stack([quantize_input(graph, torch.randn(1, 1, 32, 32))[0] for _ in range(2)])
    single = AcceleratorConfig(rows=8, cols=4, pixels_per_cycle=2, segments=2)
    double = replace(single, batch=2)
    fast = simulate(graph, double, "fast", images)
    for b in range(2):
        assert np.array_equal(fast.output[b], run_graph(graph, images[b][None])[0])
    stepped = simulate(graph, double, "stepped", images)
    assert np.array_equal(stepped.output, fast.output)
    assert [layer.cycles for layer in stepped.layers] == [layer.cycles for layer in fast.layers]
    one = {layer.name: layer.schedule for layer in simulate(graph, single, "analytic").layers if layer.schedule}
    two = {layer.name: layer.schedule for layer in fast.layers if layer.schedule}
    classifier = [name for name in two if name.startswith("classifier")]
    for name in classifier:  # one pass of weights serves both images: the weight bytes do not double
        assert two[name].geometry.weight_bytes.sum() == one[name].geometry.weight_bytes.sum()
        assert two[name].tiles == one[name].tiles == 1
    assert fast.fps > simulate(graph, single, "analytic").fps  # images per second
    with pytest.raises(AcceleratorError, match=r"the input must be int8 \(2, 1, 32, 32\)"):
        simulate(graph, double, "fast", images[0])


def test_residency_counts_every_map_live_at_once():
    from edgesparse.accel.residency import plan_maps

    graph = export_random("resnet18_small", "1:16", in_chans=1, num_classes=10, width=0.25, seed=0)
    roomy = plan_maps(graph, AcceleratorConfig(input_buffer_kib=512))
    assert all(plan.input_resident for name, plan in roomy.items() if name != graph.ops[0].name)
    assert all(plan.residual_bytes == 0 for plan in roomy.values())
    # A buffer that holds one 16x32x32 map but not a block's input and its shortcut together.
    block_map = 16 * 32 * 32
    tight = plan_maps(graph, AcceleratorConfig(input_buffer_kib=(block_map + block_map // 2) / 1024))
    assert any(plan.residual_bytes for plan in tight.values())  # a shortcut goes through DRAM
    written = sum(plan.output_bytes for plan in tight.values())
    assert written > sum(plan.output_bytes for plan in roomy.values())
    # Every map in DRAM (the layer engine's RTL): the roomy buffer holds none, and each layer writes its map and
    # reads its shortcut off chip.
    streamed = plan_maps(graph, AcceleratorConfig(input_buffer_kib=512, resident_maps=False))
    assert not any(plan.input_resident for plan in streamed.values())
    assert all(plan.output_bytes > 0 for plan in streamed.values())
    assert sum(plan.residual_bytes for plan in streamed.values()) > 0
