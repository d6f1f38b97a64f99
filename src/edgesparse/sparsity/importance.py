"""Weight importance judgment: the score that decides which weights a pattern keeps.

Scores are pluggable through :data:`IMPORTANCE`. Gradient-aware scores keep an exponential moving average of
each layer's gradient (the gradient of the *masked* model, passed straight through to every dense weight, so a
pruned weight is judged by what it would contribute if it came back).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Protocol

import torch

from edgesparse.errors import ConfigError


class Importance(Protocol):
    """Scores weights; stateful scores observe every step's gradient."""

    name: str

    def observe(self, layer: str, weight: torch.Tensor, grad: torch.Tensor | None) -> None: ...

    def score(self, layer: str, weight: torch.Tensor) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None: ...


class MagnitudeImportance:
    """|w|: the classic magnitude criterion (no state)."""

    name = "magnitude"

    def observe(self, layer: str, weight: torch.Tensor, grad: torch.Tensor | None) -> None:
        pass

    def score(self, layer: str, weight: torch.Tensor) -> torch.Tensor:
        return weight.detach().abs()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class _GradientAverage(ABC):
    """Keeps an exponential moving average of a per-weight gradient statistic for each layer."""

    def __init__(self, beta: float = 0.9) -> None:
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"importance EMA beta must be in [0, 1), got {beta!r}")
        self.beta = beta
        self.averages: dict[str, torch.Tensor] = {}

    @abstractmethod
    def statistic(self, grad: torch.Tensor) -> torch.Tensor:
        """The per-weight quantity whose moving average is kept."""

    @abstractmethod
    def score(self, layer: str, weight: torch.Tensor) -> torch.Tensor:
        """Importance of each weight (falls back to magnitude before the first gradient)."""

    def observe(self, layer: str, weight: torch.Tensor, grad: torch.Tensor | None) -> None:
        if grad is None:
            return
        value = self.statistic(grad.detach().float())
        average = self.averages.get(layer)
        if average is None:
            self.averages[layer] = value.clone()
        else:
            average.mul_(self.beta).add_(value, alpha=1.0 - self.beta)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {layer: average.clone() for layer, average in self.averages.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averages = {layer: average.clone() for layer, average in state.items()}


class TaylorImportance(_GradientAverage):
    """|w * EMA(g)|: first-order estimate of the loss change if the weight were removed."""

    name = "taylor"

    def statistic(self, grad: torch.Tensor) -> torch.Tensor:
        return grad

    def score(self, layer: str, weight: torch.Tensor) -> torch.Tensor:
        average = self.averages.get(layer)
        w = weight.detach().float()
        return w.abs() if average is None else (w * average).abs()


class FisherImportance(_GradientAverage):
    """w^2 * EMA(g^2): the diagonal-Fisher (optimal brain damage) estimate of a weight's saliency."""

    name = "fisher"

    def statistic(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * grad

    def score(self, layer: str, weight: torch.Tensor) -> torch.Tensor:
        average = self.averages.get(layer)
        w = weight.detach().float()
        return w.abs() if average is None else w * w * average


IMPORTANCE: dict[str, Callable[[], Importance]] = {
    "magnitude": MagnitudeImportance,
    "taylor": TaylorImportance,
    "fisher": FisherImportance,
}


def create_importance(name: str) -> Importance:
    """Build an importance score by name (see :data:`IMPORTANCE`)."""
    try:
        return IMPORTANCE[name]()
    except KeyError:
        raise ConfigError(f"unknown importance {name!r}: choose one of {', '.join(IMPORTANCE)}") from None
