"""Channel permutation: reorder a layer's input channels so its N:M blocks keep more importance.

A consumer layer's input channel ``j`` is its producer's output channel ``j`` (through BatchNorm, ReLU, pooling,
dropout or a flatten of C x 1 x 1 maps, all of which act per channel). Permuting the producer's filters (weight
rows, bias, BatchNorm parameters and statistics) and the consumer's input channels the same way changes no
function; on this hardware it is free. A producer whose output also reaches another layer or a residual add,
or a consumer fed by the model input, cannot be permuted: :func:`find_chains` says which and why.

The permutation (Pool & Yu, NeurIPS 2021, did this for 2:4) ranks channels by their total importance and deals
them round-robin over the blocks, so each block holds one of the strongest channels; it is kept only when the
pattern's mask then keeps more importance than in the original order.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import torch
from torch import fx, nn

from edgesparse.errors import PatternError
from edgesparse.pattern import BlockPattern

# Modules that act on each channel alone: a permutation passes through them (BatchNorm is permuted with it).
_PER_CHANNEL = (nn.BatchNorm2d, nn.BatchNorm1d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                nn.Dropout, nn.Identity, nn.Flatten)


@dataclass(frozen=True)
class Chain:
    """A consumer layer, the layer producing its input channels, and the BatchNorms in between."""

    consumer: str
    producer: str
    norms: tuple[str, ...]


def _why_not(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str | None, list[str], str | None]:
    """Walk back from a consumer's input: (producer, norms, None) or (None, [], reason)."""
    norms: list[str] = []
    while True:
        if len(node.users) != 1:
            return None, [], f"the tensor {node.name!r} on its input path also feeds {len(node.users) - 1} other op(s)"
        if node.op == "placeholder":
            return None, [], "its input is the model's input, which no layer produces"
        if node.op != "call_module":
            return None, [], f"its input comes from {node.op} {node.target!r} (e.g. a residual add), not from a layer"
        module = modules[node.target]
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if isinstance(module, nn.Conv2d) and module.groups != 1:
                return None, [], f"its producer {node.target!r} is a grouped convolution"
            return node.target, norms, None
        if not isinstance(module, _PER_CHANNEL):
            return None, [], f"its input passes through {type(module).__name__} {node.target!r}, which mixes channels"
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            norms.append(node.target)
        node = node.args[0]


def find_chains(model: nn.Module, spec: str) -> list[Chain]:
    """The chains of the layers ``spec`` names: 'auto' (every permutable layer) or comma-separated layer globs.

    Raises :class:`PatternError` naming a requested layer whose producer cannot be permuted, and why."""
    modules = dict(model.named_modules())
    graph = fx.symbolic_trace(model).graph
    globs = [] if spec.strip() == "auto" else [g.strip() for g in spec.split(",") if g.strip()]
    consumers = [n for n in graph.nodes if n.op == "call_module" and isinstance(modules[n.target], (nn.Conv2d, nn.Linear))]
    for glob in globs:
        if not any(fnmatch.fnmatchcase(n.target, glob) for n in consumers):
            raise PatternError(f"permutation glob {glob!r} matches no layer; layers are: "
                               f"{', '.join(n.target for n in consumers)}")
    chains = []
    for node in consumers:
        wanted = any(fnmatch.fnmatchcase(node.target, g) for g in globs)
        if not globs or wanted:
            producer, norms, reason = _why_not(node.args[0], modules)
            if producer is None:
                if wanted:
                    raise PatternError(f"cannot permute the input channels of layer {node.target!r}: {reason}")
                continue
            if modules[producer].weight.shape[0] != modules[node.target].weight.shape[1]:
                if wanted:
                    raise PatternError(f"cannot permute the input channels of layer {node.target!r}: its input "
                                       f"has more features than {producer!r} has output channels")
                continue
            chains.append(Chain(node.target, producer, tuple(reversed(norms))))
    return chains


def kept_importance(score: torch.Tensor, pattern: BlockPattern) -> float:
    """Importance the pattern's final mask keeps of ``score``."""
    return float((score * pattern.mask(score, pattern.final_density)).sum())


def choose_permutation(score: torch.Tensor, pattern: BlockPattern) -> torch.Tensor | None:
    """New order of the input channels (``new[i] = old[order[i]]``) that keeps more importance, or None."""
    cin = score.shape[1]
    blocks = -(-cin // pattern.m)
    if blocks < 2:
        return None
    ranked = score.reshape(score.shape[0], cin, -1).sum(dim=(0, 2)).argsort(descending=True)
    slot = torch.arange(cin, device=score.device)
    position = (slot % blocks) * pattern.m + slot // blocks  # rank r goes to block r % B, place r // B
    order = ranked[position.argsort()]
    if kept_importance(score[:, order], pattern) > kept_importance(score, pattern):
        return order
    return None


@torch.no_grad()
def apply_permutation(chain: Chain, order: torch.Tensor, tensors: dict[str, list[torch.Tensor]],
                      norms: list[nn.Module]) -> None:
    """Reorder in place: ``tensors['producer']`` along dim 0, ``tensors['consumer']`` along dim 1 (weights, masks,
    optimizer and importance states shaped like them), and every BatchNorm's parameters and statistics."""
    for tensor in tensors["producer"]:
        tensor.copy_(tensor.index_select(0, order.to(tensor.device)))
    for tensor in tensors["consumer"]:
        tensor.copy_(tensor.index_select(1, order.to(tensor.device)))
    for norm in norms:
        for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
            if tensor is not None:
                tensor.copy_(tensor.index_select(0, order.to(tensor.device)))
