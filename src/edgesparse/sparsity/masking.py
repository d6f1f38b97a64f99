"""Masks as parametrizations (the way ``torch.ao.pruning`` does it), with a straight-through gradient.

``register_parametrization(module, "weight", SparseMask(...))`` keeps the dense weight as
``module.parametrizations.weight.original`` and makes ``module.weight`` return ``original * mask``. The mask is a
buffer, so it lives in every ``state_dict`` and checkpoint. The backward pass is straight-through: the dense
weight receives the gradient of the masked model everywhere, so a pruned weight keeps learning and can return
when the mask is recomputed. An optional decay on pruned weights (SR-STE, Zhou et al. 2021) pulls them towards
zero so that masks settle.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgesparse.pattern import Pattern, parse_pattern


class _StraightThroughMask(torch.autograd.Function):
    """Forward ``w * mask``; backward passes the gradient to every dense weight (plus decay on pruned ones)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, mask: torch.Tensor, pruned_decay: float) -> torch.Tensor:
        ctx.pruned_decay = pruned_decay
        if pruned_decay:
            ctx.save_for_backward(weight, mask)
        return weight * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if ctx.pruned_decay:
            weight, mask = ctx.saved_tensors
            grad = grad + ctx.pruned_decay * weight * ~mask
        return grad, None, None


class SparseMask(nn.Module):
    """Parametrization holding one layer's boolean mask and the pattern it must follow."""

    def __init__(self, weight: torch.Tensor, pattern: Pattern | str, pruned_decay: float = 0.0) -> None:
        super().__init__()
        self.pattern = parse_pattern(pattern)
        self.pruned_decay = float(pruned_decay)
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _StraightThroughMask.apply(weight, self.mask, self.pruned_decay)

    def extra_repr(self) -> str:
        return f"pattern={self.pattern}, density={float(self.mask.float().mean()):.4f}"


PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every Conv2d and Linear layer of ``model``, by qualified name, in definition order."""
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            yield name, module


def sparse_mask_of(module: nn.Module) -> SparseMask | None:
    """The SparseMask parametrizing ``module.weight``, if any."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for item in module.parametrizations.weight:
        if isinstance(item, SparseMask):
            return item
    return None


def dense_weight(module: nn.Module) -> torch.Tensor:
    """The dense (unmasked) weight parameter of a layer, parametrized or not."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def attach_mask(module: nn.Module, pattern: Pattern | str, pruned_decay: float = 0.0) -> SparseMask:
    """Parametrize ``module.weight`` with a fresh all-ones mask for ``pattern`` and return the mask module."""
    existing = sparse_mask_of(module)
    if existing is not None:
        return existing
    mask = SparseMask(module.weight, pattern, pruned_decay)
    parametrize.register_parametrization(module, "weight", mask)
    return mask
