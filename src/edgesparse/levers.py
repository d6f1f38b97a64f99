"""Training levers around the pruner: a trained dense run as teacher (distillation) or start (--init), and the
channel permutation applied to a run's whole training state.

Teacher and init runs are read with :func:`edgesparse.trained.load_trained`; one of another model, width or
dataset is refused, naming what differs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgesparse.config import TrainConfig
from edgesparse.errors import ConfigError
from edgesparse.pattern import BlockPattern
from edgesparse.sparsity import DynamicPruner, dense_weight, prunable_layers, sparse_mask_of
from edgesparse.sparsity.permute import Chain, apply_permutation, choose_permutation, kept_importance
from edgesparse.trained import load_trained

_SAME = ("model", "width", "dataset")


def load_reference_run(path: str | Path, config: TrainConfig, role: str, dense: bool = False) -> nn.Module:
    """The trained model of run ``path`` (eval mode), checked to be of this run's model, width and dataset.

    ``role`` names the flag in errors (teacher, init); ``dense`` also refuses a run with pruned layers."""
    trained = load_trained(path)
    differ = [f"{key} {getattr(trained.config, key)!r} (this run: {getattr(config, key)!r})" for key in _SAME
              if getattr(trained.config, key) != getattr(config, key)]
    if differ:
        raise ConfigError(f"--{role} run {path} was trained with another {', '.join(differ)}")
    if dense:
        sparse = [name for name, module in prunable_layers(trained.model) if sparse_mask_of(module) is not None]
        if sparse:
            raise ConfigError(f"--{role} run {path} is pruned (layer {sparse[0]!r} has a mask); give a dense run")
    return trained.model


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      temperature: float, weight: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - weight) * CE(labels) + weight * T^2 * KL(teacher_T || student_T)`` (Hinton et al., 2015)."""
    hard = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return (1.0 - weight) * hard + weight * temperature * temperature * soft


@torch.no_grad()
def permute_training_state(model: nn.Module, chains: list[Chain], pruner: DynamicPruner,
                           optimizer: torch.optim.Optimizer) -> list[dict]:
    """Choose and apply each chain's permutation to the weights, masks, importance and optimizer states.

    Returns, per permuted layer, the importance its final mask keeps before and after."""
    averages = getattr(pruner.importance, "averages", {})
    records = []
    for chain in chains:
        holder = pruner.masks.get(chain.consumer)
        if holder is None or not isinstance(holder.pattern, BlockPattern):
            continue
        score = pruner.importance.score(chain.consumer, pruner.weights[chain.consumer])
        order = choose_permutation(score, holder.pattern)
        if order is None:
            continue
        before = kept_importance(score, holder.pattern)
        producer, consumer = model.get_submodule(chain.producer), model.get_submodule(chain.consumer)
        norms = [model.get_submodule(name) for name in chain.norms]
        params = {"producer": [dense_weight(producer)] + ([producer.bias] if producer.bias is not None else [])
                  + [p for norm in norms for p in (norm.weight, norm.bias) if p is not None],
                  "consumer": [dense_weight(consumer)]}
        tensors = {side: [optimizer.state[p]["momentum_buffer"] for p in group
                          if optimizer.state.get(p, {}).get("momentum_buffer") is not None]
                   for side, group in params.items()}
        tensors["producer"] += [dense_weight(producer)] + ([producer.bias] if producer.bias is not None else [])
        tensors["consumer"] += [dense_weight(consumer), holder.mask]
        for side, name in (("producer", chain.producer), ("consumer", chain.consumer)):
            if name in averages:
                tensors[side].append(averages[name])
        if chain.producer in pruner.masks:
            tensors["producer"].append(pruner.masks[chain.producer].mask)
        apply_permutation(chain, order, tensors, norms)
        after = kept_importance(pruner.importance.score(chain.consumer, pruner.weights[chain.consumer]), holder.pattern)
        records.append({"layer": chain.consumer, "producer": chain.producer, "kept_before": before,
                        "kept_after": after})
    if not pruner.frozen:
        pruner.update_masks()
    return records
