"""Dynamic pruning: schedule, straight-through regrowth, masks as state, baselines, any nn.Module."""

import pytest
import torch
from torch import nn

from edgesparse.errors import ConfigError, PatternError
from edgesparse.sparsity import (
    DynamicPruner,
    PatternPlan,
    PruningSchedule,
    create_importance,
    layer_figures,
    sparse_mask_of,
    verify_pattern,
)


class Custom(nn.Module):
    """Not a registry model: two convs with a skip and a head, to show the pruner needs only Conv2d/Linear."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 32, 3, padding=1)
        self.head = nn.Linear(32, 5)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = torch.relu(self.b(y)) + y
        return self.head(y.mean(dim=(2, 3)))


def _train(model, pruner, steps, seed=0):
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8)
        loss = nn.functional.cross_entropy(model(x), torch.randint(0, 5, (8,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.step()


def test_schedule_validation():
    with pytest.raises(ConfigError, match="start <= end <= freeze"):
        PruningSchedule(start=0.5, end=0.2)
    with pytest.raises(ConfigError, match="update_every"):
        PruningSchedule(update_every=0)


def test_density_falls_on_the_cubic_ramp_and_ends_at_the_pattern():
    torch.manual_seed(0)
    model = Custom()
    pruner = DynamicPruner(model, PatternPlan("1:16"), create_importance("magnitude"),
                           PruningSchedule(0.0, 0.5, 0.75, update_every=5), total_steps=40)
    densities = []
    for _ in range(40):
        _train(model, pruner, 1)
        densities.append(pruner.density())
    assert densities[:4] == [1.0] * 4 and densities[4] < 1.0  # dense until the first update, at step 5
    assert all(a >= b for a, b in zip(densities, densities[1:]))
    assert densities[-1] == pytest.approx(1 / 16)
    assert pruner.frozen and list(pruner.masks) == ["b", "head"]  # the first conv stays dense
    assert verify_pattern(model) == ["b", "head"]


def test_pruned_weights_receive_gradient_and_can_return():
    torch.manual_seed(0)
    model = Custom()
    pruner = DynamicPruner(model, PatternPlan("1:16", first_conv=None), create_importance("taylor"),
                           PruningSchedule(0.0, 0.0, 1.0, update_every=3), total_steps=60)
    holder = sparse_mask_of(model.b)
    before = holder.mask.clone()
    x = torch.randn(4, 3, 8, 8)
    model(x).sum().backward()
    grad = model.b.parametrizations.weight.original.grad
    assert (grad[~holder.mask] != 0).any(), "straight-through: pruned weights still get a gradient"
    model.zero_grad()
    _train(model, pruner, 30)
    assert (holder.mask & ~before).any(), "some pruned weights came back"
    assert holder.pattern.check(holder.mask) is None


def test_masks_live_in_the_state_dict_and_restore():
    torch.manual_seed(0)
    model = Custom()
    pruner = DynamicPruner(model, PatternPlan("2:8"), create_importance("fisher"),
                           PruningSchedule(0.0, 0.5, 1.0, update_every=2), total_steps=20)
    _train(model, pruner, 10)
    state, pruner_state = model.state_dict(), pruner.state_dict()
    assert "b.parametrizations.weight.0.mask" in state

    twin = Custom()
    twin_pruner = DynamicPruner(twin, PatternPlan("2:8"), create_importance("fisher"),
                                PruningSchedule(0.0, 0.5, 1.0, update_every=2), total_steps=20)
    twin.load_state_dict(state)
    twin_pruner.load_state_dict(pruner_state)
    _train(model, pruner, 10, seed=3)
    _train(twin, twin_pruner, 10, seed=3)
    for key, value in model.state_dict().items():
        assert torch.equal(value, twin.state_dict()[key]), key


def test_loading_state_of_another_pattern_is_refused():
    a = DynamicPruner(Custom(), PatternPlan("1:16"), create_importance("magnitude"), PruningSchedule(), 10)
    b = DynamicPruner(Custom(), PatternPlan("2:16"), create_importance("magnitude"), PruningSchedule(), 10)
    with pytest.raises(PatternError, match="patterns"):
        b.load_state_dict(a.state_dict())


@pytest.mark.parametrize("spec", ["unstructured", "unstructured-layer", "channel"])
def test_baselines_reach_16x(spec):
    torch.manual_seed(0)
    model = Custom()
    pruner = DynamicPruner(model, PatternPlan(spec), create_importance("magnitude"),
                           PruningSchedule(0.0, 0.5, 0.8, update_every=2), total_steps=20)
    _train(model, pruner, 20)
    kept = sum(int(h.mask.sum()) for h in pruner.masks.values())
    total = sum(h.mask.numel() for h in pruner.masks.values())
    assert kept / total == pytest.approx(1 / 16, rel=0.08)
    verify_pattern(model)
    assert {r.pattern for r in layer_figures(model)} == {spec, "dense"}


def test_overrides_and_unknown_globs():
    model = Custom()
    plan = PatternPlan("1:16", first_conv="dense", overrides={"head": "4:16"})
    assert {k: str(v) for k, v in plan.assign(model).items()} == {"a": "dense", "b": "1:16", "head": "4:16"}
    with pytest.raises(ConfigError, match="matches no layer"):
        PatternPlan("1:16", overrides={"features.*": "dense"}).assign(model)
    with pytest.raises(PatternError, match="no Conv2d or Linear"):
        PatternPlan().assign(nn.Sequential(nn.ReLU()))
