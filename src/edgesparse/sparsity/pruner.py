"""Dynamic pruning & training: masks recomputed on a schedule from an importance score, with regrowth.

Usage (any ``nn.Module`` with Conv2d/Linear layers)::

    pruner = DynamicPruner(model, PatternPlan("1:16"), create_importance("taylor"), PruningSchedule(), total_steps)
    for batch in data:
        loss.backward(); optimizer.step()
        pruner.step()          # observe gradients, recompute masks when due
        optimizer.zero_grad()
    pruner.finalize()          # masks at the final pattern, frozen

Between ``schedule.start`` and ``schedule.end`` (fractions of training) the kept density falls on a cubic ramp
from 1 to the pattern's final density; masks are recomputed every ``update_every`` steps until
``schedule.freeze``, after which they stay fixed for the final fine-tune. Under ``torch.distributed`` every
recomputed mask is broadcast from rank 0, so all ranks hold identical masks whatever the score's ties.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from edgesparse.errors import ConfigError, PatternError
from edgesparse.sparsity.importance import Importance
from edgesparse.sparsity.masking import SparseMask, attach_mask, dense_weight, prunable_layers
from edgesparse.pattern import (
    DensePattern,
    Pattern,
    UnstructuredPattern,
    parse_pattern,
    scheduled_density,
)


@dataclass(frozen=True)
class PruningSchedule:
    """When masks change, as fractions of the total training steps."""

    start: float = 0.0
    end: float = 0.4
    freeze: float = 0.5
    update_every: int = 50

    def __post_init__(self) -> None:
        if not 0.0 <= self.start <= self.end <= self.freeze <= 1.0:
            raise ConfigError(
                f"pruning schedule needs 0 <= start <= end <= freeze <= 1, got start={self.start}, "
                f"end={self.end}, freeze={self.freeze}")
        if not isinstance(self.update_every, int) or self.update_every < 1:
            raise ConfigError(f"update_every must be a positive integer, got {self.update_every!r}")

    def progress(self, step: int, total_steps: int) -> float:
        """Fraction of the way from dense to the final pattern at ``step``."""
        begin, finish = self.start * total_steps, self.end * total_steps
        if finish <= begin:
            return 1.0 if step >= begin else 0.0
        return min(1.0, max(0.0, (step - begin) / (finish - begin)))


def first_conv_name(model: nn.Module) -> str | None:
    """The first Conv2d of ``model`` (its few input channels rarely fill a block: kept dense by default)."""
    return next((name for name, module in prunable_layers(model) if isinstance(module, nn.Conv2d)), None)


@dataclass
class PatternPlan:
    """Which pattern each layer follows: a default, the first conv's own, and name overrides (fnmatch globs)."""

    default: str | Pattern = "1:16"
    first_conv: str | Pattern | None = "dense"
    overrides: dict[str, str] = field(default_factory=dict)

    def assign(self, model: nn.Module) -> dict[str, Pattern]:
        """Map every Conv2d/Linear layer name of ``model`` to its pattern."""
        layers = list(prunable_layers(model))
        if not layers:
            raise PatternError("the model has no Conv2d or Linear layer to prune")
        names = [name for name, _ in layers]
        for glob in self.overrides:
            if not any(fnmatch.fnmatchcase(name, glob) for name in names):
                raise ConfigError(f"pattern override {glob!r} matches no layer; layers are: {', '.join(names)}")
        first_conv = first_conv_name(model)
        plan: dict[str, Pattern] = {}
        for name, _ in layers:
            spec = self.default
            if name == first_conv and self.first_conv is not None:
                spec = self.first_conv
            for glob, override in self.overrides.items():
                if fnmatch.fnmatchcase(name, glob):
                    spec = override
            plan[name] = parse_pattern(spec)
        return plan


class DynamicPruner:
    """Owns the masks of a model and recomputes them during training."""

    def __init__(self, model: nn.Module, plan: PatternPlan, importance: Importance, schedule: PruningSchedule,
                 total_steps: int, pruned_decay: float = 0.0) -> None:
        if total_steps < 1:
            raise ConfigError(f"total_steps must be positive, got {total_steps}")
        self.importance = importance
        self.schedule = schedule
        self.total_steps = total_steps
        self.steps = 0
        self.frozen = False
        self.masks: dict[str, SparseMask] = {}
        self.weights: dict[str, nn.Parameter] = {}
        for name, pattern in plan.assign(model).items():
            if isinstance(pattern, DensePattern):
                continue
            module = model.get_submodule(name)
            self.masks[name] = attach_mask(module, pattern, pruned_decay)
            self.weights[name] = dense_weight(module)
        self.update_masks()

    @property
    def progress(self) -> float:
        return self.schedule.progress(self.steps, self.total_steps)

    def density(self) -> float:
        """Fraction of the masked layers' weights currently kept."""
        kept = sum(int(m.mask.sum()) for m in self.masks.values())
        total = sum(m.mask.numel() for m in self.masks.values())
        return kept / total if total else 1.0

    @torch.no_grad()
    def step(self) -> None:
        """Call once per optimizer step, after ``optimizer.step()`` and before ``zero_grad()``."""
        if self.frozen:
            self.steps += 1
            return
        for name, weight in self.weights.items():
            self.importance.observe(name, weight, weight.grad)
        self.steps += 1
        if self.steps >= self.schedule.freeze * self.total_steps:
            self.finalize()
        elif self.steps % self.schedule.update_every == 0:
            self.update_masks()

    @torch.no_grad()
    def update_masks(self, progress: float | None = None) -> None:
        """Recompute every mask from the current scores at the schedule's density (regrowth included)."""
        progress = self.progress if progress is None else progress
        scores = {name: self.importance.score(name, weight) for name, weight in self.weights.items()}
        new_masks = {}
        global_layers = [n for n, m in self.masks.items()
                         if isinstance(m.pattern, UnstructuredPattern) and m.pattern.scope == "global"]
        if global_layers:
            new_masks.update(self._global_masks(global_layers, scores, progress))
        for name, holder in self.masks.items():
            if name not in new_masks:
                new_masks[name] = holder.pattern.mask(scores[name], scheduled_density(holder.pattern, progress))
        for name, mask in new_masks.items():
            self.masks[name].mask.copy_(mask)
        self._broadcast_masks()

    def _global_masks(self, names: list[str], scores: dict[str, torch.Tensor],
                      progress: float) -> dict[str, torch.Tensor]:
        patterns = {self.masks[n].pattern for n in names}
        if len(patterns) != 1:
            raise PatternError(f"global unstructured layers must share one compression, got {sorted(map(str, patterns))}")
        flat = torch.cat([scores[n].flatten().float() for n in names])
        joint = patterns.pop().mask(flat, scheduled_density(self.masks[names[0]].pattern, progress))
        out, offset = {}, 0
        for n in names:
            size = scores[n].numel()
            out[n] = joint[offset:offset + size].reshape(scores[n].shape)
            offset += size
        return out

    def _broadcast_masks(self) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for holder in self.masks.values():
                as_bytes = holder.mask.to(torch.uint8)
                dist.broadcast(as_bytes, src=0)
                holder.mask.copy_(as_bytes.bool())

    def finalize(self) -> None:
        """Set every mask to the final pattern and freeze it (idempotent)."""
        if not self.frozen:
            self.update_masks(progress=1.0)
            self.frozen = True

    def state_dict(self) -> dict:
        """Everything needed to resume mid-schedule (the masks themselves live in the model's state_dict)."""
        return {
            "steps": self.steps,
            "frozen": self.frozen,
            "total_steps": self.total_steps,
            "patterns": {name: str(m.pattern) for name, m in self.masks.items()},
            "importance": self.importance.name,
            "importance_state": self.importance.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        mine = {name: str(m.pattern) for name, m in self.masks.items()}
        if state.get("patterns") != mine:
            raise PatternError(f"checkpoint masks follow patterns {state.get('patterns')}, this run expects {mine}")
        if state.get("importance") != self.importance.name:
            raise ConfigError(f"checkpoint used importance {state.get('importance')!r}, this run {self.importance.name!r}")
        self.steps = int(state["steps"])
        self.frozen = bool(state["frozen"])
        self.total_steps = int(state["total_steps"])
        self.importance.load_state_dict({name: average.to(self.weights[name].device)
                                         for name, average in state["importance_state"].items()})
