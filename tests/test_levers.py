"""Issue 13's levers: layer-wise N:M allocation under a budget, channel permutation, teacher and init runs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgesparse.errors import ConfigError, PatternError
from edgesparse.levers import distillation_loss, load_reference_run
from edgesparse.models import create_model
from edgesparse.quant import export_model, quantize_input, run_graph
from edgesparse.pattern import BlockPattern
from edgesparse.sparsity import dense_weight, prunable_layers
from edgesparse.sparsity.allocate import Budget, allocate_layers, check_runs_on, option_costs
from edgesparse.sparsity.permute import apply_permutation, choose_permutation, find_chains, kept_importance
from edgesparse.train import build_pruner, train


def _shapes(model):
    layers = list(prunable_layers(model))[1:]  # the first conv stays dense
    return {name: dense_weight(m).shape for name, m in layers}


def _use(plan, shapes):
    costs = option_costs(shapes, list(set(plan.values())))
    return [sum(costs[n][plan[n]][i] for n in plan) for i in range(2)]


def test_a_16x_budget_on_an_m16_array_forces_uniform_1of16():
    shapes = _shapes(create_model("vgg16_small", 10, 1, 0.25))
    plan = allocate_layers("erk", shapes, Budget(16.0, 16))
    assert set(plan.values()) == {BlockPattern(1, 16)}


@pytest.mark.parametrize("criterion", ["erk", "sensitivity"])
def test_allocation_stays_within_both_limits_and_feeds_the_sensitive_layer(criterion):
    shapes = _shapes(create_model("vgg16_small", 10, 1, 0.25))
    generator = torch.Generator().manual_seed(0)
    scores = {n: torch.rand(s, generator=generator) * (100.0 if n == "features.24" else 1.0) for n, s in shapes.items()}
    budget = Budget(16.0, 32)
    plan = allocate_layers(criterion, shapes, budget, lambda: scores)
    kept, bits = _use(plan, shapes)
    kept_limit, bits_limit = budget.limits(shapes.values())
    assert kept <= kept_limit and bits <= bits_limit
    assert kept > 0.9 * kept_limit or bits > 0.9 * bits_limit  # the budget is spent, not wasted
    assert len(set(plan.values())) > 1  # not uniform: some layers sparser than 1/16, some denser
    if criterion == "sensitivity":
        assert plan["features.24"].final_density > plan["features.27"].final_density
    else:  # ERK gives small layers more
        assert plan["features.3"].final_density > plan["features.40"].final_density


def test_a_budget_no_allocation_can_meet_is_refused():
    shapes = _shapes(create_model("vgg16_small", 10, 1, 0.25))
    with pytest.raises(ConfigError, match="no allocation meets the budget"):
        allocate_layers("erk", shapes, Budget(20.0, 16))
    with pytest.raises(ConfigError, match="kept weights"):  # Cin = 16 layers keep 1 in 16 even at 1:32
        allocate_layers("erk", shapes, Budget(32.0, 32))


def test_an_n_m_the_array_cannot_run_is_refused(tiny_config):
    with pytest.raises(PatternError, match="'features.3' follows 1:32.*M=16"):
        check_runs_on({"features.3": BlockPattern(1, 32)}, 16)
    config = tiny_config(pattern="1:32", array_m=16)
    with pytest.raises(PatternError, match="cannot run"):
        build_pruner(config, create_model("vgg16_small", 4, 1, 0.125), 10)


def _randomize_norms(model):
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor in (module.weight, module.bias, module.running_mean):
                tensor.data.copy_(torch.randn(tensor.shape, generator=generator) * 0.3 + (1 if tensor is module.weight else 0))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model.eval()


def _permute_everything(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for chain in find_chains(model, "auto"):
        producer, consumer = model.get_submodule(chain.producer), model.get_submodule(chain.consumer)
        order = torch.randperm(dense_weight(consumer).shape[1], generator=generator)
        apply_permutation(chain, order, {"producer": [p for p in (producer.weight, producer.bias) if p is not None],
                                         "consumer": [consumer.weight]},
                          [model.get_submodule(n) for n in chain.norms])


def test_a_permuted_dense_model_computes_the_same_function_float_and_int8():
    torch.manual_seed(0)
    model = _randomize_norms(create_model("vgg16_small", 10, 1, 0.125))
    permuted = _randomize_norms(create_model("vgg16_small", 10, 1, 0.125))
    permuted.load_state_dict(model.state_dict())
    _permute_everything(permuted)
    assert not torch.equal(permuted.features[3].weight, model.features[3].weight)  # something did move
    images = torch.randn(16, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(permuted(images), model(images), rtol=1e-4, atol=1e-4)
    graphs = [export_model(m, [images], (1, 32, 32)) for m in (model, permuted)]
    x = quantize_input(graphs[0], images)
    assert np.array_equal(run_graph(graphs[0], x), run_graph(graphs[1], x))


def test_a_residual_input_cannot_be_permuted_and_auto_skips_it():
    model = create_model("resnet18_small", 10, 1, 0.25)
    with pytest.raises(PatternError, match=r"'stages.0.0.body.0'.*(add|also feeds)"):
        find_chains(model, "stages.0.0.body.0")
    with pytest.raises(PatternError, match="model's input"):
        find_chains(model, "stem.0")
    chains = find_chains(model, "auto")
    assert chains and all(c.consumer.endswith("body.3") for c in chains)  # only the second conv of a block


def test_the_permutation_keeps_more_importance_when_strong_channels_share_a_block():
    score = torch.rand(8, 64, 3, 3) * 0.01
    score[:, :4] += 1.0  # four strong channels, all in the first block of 16
    pattern = BlockPattern(1, 16)
    order = choose_permutation(score, pattern)
    assert order is not None and sorted(order.tolist()) == list(range(64))
    assert kept_importance(score[:, order], pattern) > 3 * kept_importance(score, pattern)
    assert choose_permutation(score[:, :16], pattern) is None  # one block: nothing to gain


def test_distillation_loss_reduces_to_its_parts():
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(distillation_loss(logits, torch.randn(8, 5), labels, 2.0, 0.0), F.cross_entropy(logits, labels))
    assert float(distillation_loss(logits, logits, labels, 3.0, 1.0)) == pytest.approx(0.0, abs=1e-6)


QUICK = dict(epochs=1, train_limit=128, test_limit=64)


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    from edgesparse.config import load_config

    values = dict(model="vgg16_small", width=0.125, dataset="synthetic", batch_size=64, lr=0.05, pattern="dense",
                  channels_last=False, **QUICK)
    folder = tmp_path_factory.mktemp("dense")
    train(load_config(**values), folder, progress=False)
    return folder


def test_teacher_and_init_runs_of_another_model_or_a_sparse_one_are_refused(tmp_path, tiny_config, dense_run):
    train(tiny_config(**QUICK), tmp_path / "sparse", progress=False)
    with pytest.raises(ConfigError, match="another width"):
        load_reference_run(dense_run, tiny_config(width=0.25), "teacher")
    with pytest.raises(ConfigError, match="--init run .* is pruned"):
        load_reference_run(tmp_path / "sparse", tiny_config(pattern="dense"), "init", dense=True)


def test_a_run_with_every_lever_follows_its_plan(tmp_path, tiny_config, dense_run):
    config = tiny_config(teacher=str(dense_run), init=str(dense_run), permute="auto", permute_at=0.0,
                         allocate="erk", array_m=32, label_smoothing=0.1, val_split=64, **QUICK)
    result = train(config, tmp_path / "all", progress=False)
    patterns = {row.name: row.pattern for row in result.figures}
    assert len({p for n, p in patterns.items() if n != "features.0"}) > 1
    assert result.compression >= 16.0 and result.index_ratio <= 1 / 32
    assert result.val_accuracy is not None
    assert (tmp_path / "all" / "plan.json").exists() and (tmp_path / "all" / "permutation.json").exists()
