"""Layer-wise N:M allocation under a model-wide budget.

The budget is the model's (DESIGN.md section 2): the prunable weights (every Conv2d/Linear but the first conv)
keep at most ``1/compression`` of their weights, and their index bytes stay at most ``1/(2*compression)`` of their
dense int8 bytes (1/16 and 1/32 at 16x, where uniform 1:16 sits exactly on both limits). A layer may take any N:M
with M a power of two up to the array's M and N <= M/2, so at 16x some layers must go sparser than 1/16 (an
array built for M = 32 runs 1:32, and 1:16 as two slots per block of 32).

A *criterion* values every (layer, option); :func:`allocate` then starts every layer at its cheapest option and
greedily takes the upgrade with the best value gained per budget spent (the largest fraction of any limit it
uses) until no upgrade fits. Criteria:

- ``sensitivity``: the Fisher saliency (``w^2 * E[g^2]``, optimal brain damage) the option's mask keeps, measured
  after a short warm-up (or on the pretrained model);
- ``erk``: Erdos-Renyi-kernel densities (``(Cin + Cout + kh + kw) / (Cin * Cout * kh * kw)``, scaled to the budget);
  an option's value is minus its log-distance from the layer's ERK density, weighted by the layer's size.

Extra costs (the accelerator's cycles per layer) join the weights and index bits as further limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from edgesparse.errors import ConfigError, PatternError
from edgesparse.pattern import BlockPattern

CRITERIA = ("sensitivity", "erk")


@dataclass(frozen=True)
class Budget:
    """The model-wide limits: kept weights and index bits, relative to the prunable weights."""

    compression: float = 16.0
    array_m: int = 16

    def __post_init__(self) -> None:
        if not self.compression >= 1.0:
            raise ConfigError(f"budget must be a compression of at least 1, got {self.compression!r}")
        if self.array_m < 2 or self.array_m & (self.array_m - 1):
            raise ConfigError(f"the array's M must be a power of two of at least 2, got {self.array_m}")

    def options(self) -> list[BlockPattern]:
        """Every N:M a layer may take: M a power of two up to the array's M, N <= M / 2."""
        ms = [2 ** k for k in range(1, int(math.log2(self.array_m)) + 1)]
        return [BlockPattern(n, m) for m in ms for n in range(1, m // 2 + 1)]

    def limits(self, shapes: Iterable[torch.Size]) -> tuple[float, float]:
        """(kept weights, index bits) the prunable layers of these shapes may use."""
        weights = sum(math.prod(shape) for shape in shapes)
        return weights / self.compression, 8 * weights / (2 * self.compression)


def check_runs_on(patterns: Mapping[str, object], array_m: int) -> None:
    """Raise naming the first N:M layer an array built for ``array_m`` cannot run (its M must divide the array's)."""
    for name, pattern in patterns.items():
        if isinstance(pattern, BlockPattern) and array_m % pattern.m:
            raise PatternError(f"layer {name!r} follows {pattern}, which an array built for M={array_m} cannot run "
                               f"(M={pattern.m} does not divide {array_m}); use --array-m "
                               f"{max(array_m, pattern.m)} or an N:M with M dividing {array_m}")


def allocate(values: Mapping[str, Mapping[BlockPattern, float]], costs: Mapping[str, Mapping[BlockPattern, tuple]],
             limits: tuple, limit_names: tuple[str, ...]) -> dict[str, BlockPattern]:
    """Greedy multiple-choice knapsack: the plan (layer -> option) whose costs stay within ``limits``.

    ``values[layer][option]``: higher is better. ``costs[layer][option]``: one number per limit.
    Raises :class:`ConfigError` when even the cheapest plan exceeds a limit.
    """
    plan = {layer: min(options, key=lambda o: (*costs[layer][o], -values[layer][o])) for layer, options in
            values.items()}
    used = [sum(costs[layer][plan[layer]][i] for layer in plan) for i in range(len(limits))]
    for i, (total, limit) in enumerate(zip(used, limits)):
        if total > limit * (1 + 1e-9):
            raise ConfigError(f"no allocation meets the budget: even the sparsest plan (every layer at its "
                              f"cheapest N:M) uses {total:,.0f} {limit_names[i]} against a limit of {limit:,.0f}")
    while True:
        best, best_rate = None, 0.0
        for layer, options in values.items():
            current = plan[layer]
            for option, value in options.items():
                gain = value - values[layer][current]
                if gain <= 0:
                    continue
                delta = [costs[layer][option][i] - costs[layer][current][i] for i in range(len(limits))]
                if any(used[i] + delta[i] > limits[i] * (1 + 1e-9) for i in range(len(limits))):
                    continue
                spent = max(max(d / limit for d, limit in zip(delta, limits)), 1e-12)
                if gain / spent > best_rate:
                    best, best_rate = (layer, option, delta), gain / spent
        if best is None:
            return plan
        layer, option, delta = best
        plan[layer] = option
        used = [u + d for u, d in zip(used, delta)]


def sensitivity_values(scores: Mapping[str, torch.Tensor],
                       options: list[BlockPattern]) -> dict[str, dict[BlockPattern, float]]:
    """Saliency each option's final mask keeps, per layer (``scores``: a per-weight saliency, e.g. Fisher)."""
    return {name: {o: float((score * o.mask(score, o.final_density)).sum()) for o in options}
            for name, score in scores.items()}


def erk_values(shapes: Mapping[str, torch.Size], options: list[BlockPattern],
               compression: float) -> dict[str, dict[BlockPattern, float]]:
    """Minus the size-weighted log-distance of each option's density from the layer's ERK density."""
    raw = {name: sum(shape) / math.prod(shape) for name, shape in shapes.items()}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    target = sum(sizes.values()) / compression
    low, high = 0.0, 1.0 / min(raw.values())
    for _ in range(100):  # bisection on the scale: densities capped at 1 keep sum(density * size) = target
        mid = (low + high) / 2
        kept = sum(min(1.0, mid * raw[n]) * sizes[n] for n in raw)
        low, high = (mid, high) if kept < target else (low, mid)
    density = {n: min(1.0, low * raw[n]) for n in raw}
    return {n: {o: -sizes[n] * abs(math.log(o.final_density / density[n])) for o in options} for n in shapes}


def option_costs(shapes: Mapping[str, torch.Size], options: list[BlockPattern],
                 extra: Mapping[str, Mapping[BlockPattern, float]] | None = None) -> dict[str, dict[BlockPattern, tuple]]:
    """(kept weights, index bits[, extra cost]) of every option on every layer, from the patterns' own counts."""
    return {name: {o: (o.kept_slots(shape), o.index_bits(shape), *((extra[name][o],) if extra else ()))
                   for o in options} for name, shape in shapes.items()}


def fisher_saliency(model: nn.Module, layers: list[str], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    lr: float, momentum: float) -> dict[str, torch.Tensor]:
    """``w^2 * mean(g^2)`` per weight of ``layers`` over a short dense warm-up of ``model`` (trained in place).

    The squared gradients are averaged over the second half of the batches, when the warm-up has left the
    random start."""
    batches = list(batches)
    modules = {name: model.get_submodule(name) for name in layers}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    sums = {name: torch.zeros_like(m.weight) for name, m in modules.items()}
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for step, (images, labels) in enumerate(batches):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        if step >= len(batches) // 2:
            for name, module in modules.items():
                sums[name].add_(module.weight.grad.square())
        optimizer.step()
    counted = len(batches) - len(batches) // 2
    return {name: module.weight.detach().square() * sums[name] / counted for name, module in modules.items()}


def allocate_layers(criterion: str, shapes: Mapping[str, torch.Size], budget: Budget,
                    saliency: Callable[[], Mapping[str, torch.Tensor]] | None = None,
                    cycles: tuple[Mapping[str, Mapping[BlockPattern, float]], float] | None = None
                    ) -> dict[str, BlockPattern]:
    """The plan for ``shapes`` (the prunable layers) under ``budget`` by ``criterion``.

    ``saliency`` measures per-weight saliency (the sensitivity criterion calls it); ``cycles`` = (per-layer
    cycles of every option, the limit) adds the accelerator's cycles as a third limit."""
    if criterion not in CRITERIA:
        raise ConfigError(f"unknown allocation criterion {criterion!r}: choose one of none, {', '.join(CRITERIA)}")
    options = budget.options()
    if criterion == "sensitivity":
        if saliency is None:
            raise ConfigError("the sensitivity criterion needs a saliency measurement")
        values = sensitivity_values(saliency(), options)
    else:
        values = erk_values(shapes, options, budget.compression)
    costs = option_costs(shapes, options, cycles[0] if cycles else None)
    limits = budget.limits(shapes.values()) + ((cycles[1],) if cycles else ())
    names = ("kept weights", "index bits") + (("cycles",) if cycles else ())
    try:
        return allocate(values, costs, limits, names)
    except ConfigError as error:
        raise ConfigError(f"budget {budget.compression:g}x with M up to {budget.array_m}: {error}; lower the "
                          f"budget or allow a larger M (--array-m)") from None
