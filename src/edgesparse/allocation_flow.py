"""The allocation step of a training run: measure the criterion, apply the budget, return the layer-wise plan."""

from __future__ import annotations

import copy
from itertools import islice
from typing import Iterator

import torch
from torch import nn

from edgesparse.accel.config import AcceleratorConfig
from edgesparse.accel.plan_cycles import option_cycles, plan_layer_cycles
from edgesparse.config import TrainConfig
from edgesparse.data import ImageArrays, iterate_batches
from edgesparse.models import INPUT_SIZE
from edgesparse.sparsity import dense_weight, prunable_layers
from edgesparse.sparsity.allocate import Budget, allocate_layers, fisher_saliency
from edgesparse.sparsity.pruner import first_conv_name


def _warmup_batches(data: ImageArrays, config: TrainConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches in an order of their own (epochs counted from 10^6, apart from training's orders)."""
    epoch = 10**6
    while True:
        yield from iterate_batches(data, config.batch_size, shuffle=True, seed=config.seed, epoch=epoch)
        epoch += 1


def allocation_plan(config: TrainConfig, model: nn.Module, data: ImageArrays) -> dict[str, str]:
    """Layer -> N:M for every prunable layer but the first conv, by ``config.allocate`` under ``config.budget``.

    ``model`` is left untouched (the sensitivity warm-up trains a copy)."""
    first = first_conv_name(model)
    shapes = {name: dense_weight(m).shape for name, m in prunable_layers(model) if name != first}
    budget = Budget(config.budget, config.array_m or 16)

    def saliency() -> dict[str, torch.Tensor]:
        warm = copy.deepcopy(model)
        batches = islice(_warmup_batches(data, config), config.allocate_steps)
        return fisher_saliency(warm, list(shapes), batches, config.lr / 10, config.momentum)

    cycles = None
    if config.allocate_cycles and config.model in INPUT_SIZE:
        array = AcceleratorConfig(m=budget.array_m)
        table = option_cycles(config.model, config.width, data.classes, data.channels, list(shapes),
                              budget.options(), array)
        uniform = plan_layer_cycles(config.model, config.width, data.classes, data.channels,
                                    {name: "1:16" for name in shapes}, AcceleratorConfig(m=16))
        first_here = plan_layer_cycles(config.model, config.width, data.classes, data.channels,
                                       {name: "1:16" for name in shapes}, array)[first]
        cycles = (table, sum(uniform.values()) - first_here)
    plan = allocate_layers(config.allocate, shapes, budget, saliency, cycles)
    return {name: str(pattern) for name, pattern in plan.items()}
