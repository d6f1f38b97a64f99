"""From a trained run (or a random pattern-following model) to an integer graph, ready to pack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgesparse.data import ImageArrays, iterate_batches, load_dataset
from edgesparse.models import INPUT_SIZE, create_model
from edgesparse.errors import ConfigError
from edgesparse.progress import progress_bar
from edgesparse.quant import IntGraph, dequantize_output, export_model, quantize_input, run_graph
from edgesparse.quant.export import float_graph
from edgesparse.quant.graph import IntOp
from edgesparse.sparsity import DynamicPruner, PatternPlan, PruningSchedule, create_importance
from edgesparse.pattern import BlockPattern, DensePattern
from edgesparse.trained import load_trained


def int8_accuracy(graph: IntGraph, data: ImageArrays, batch_size: int = 250, device: str = "cpu",
                  progress: bool = False) -> float:
    """Top-1 accuracy of the integer reference executor on ``data`` (the deployed int8 model)."""
    right = 0
    for images, labels in progress_bar(iterate_batches(data, batch_size, shuffle=False, drop_last=False),
                                       desc="int8 reference", unit="batch", total=-(-len(data) // batch_size),
                                       disable=not progress):
        logits = dequantize_output(graph, run_graph(graph, quantize_input(graph, images.cpu()), device=device))
        right += int((logits.argmax(1) == labels.cpu().numpy()).sum())
    return right / max(1, len(data))


def export_run(run: str | Path, calibration_batches: int = 8, batch_size: int = 128,
               data_dir: str | None = None) -> IntGraph:
    """Quantize a trained run, calibrating on shuffled batches of its own training set."""
    trained = load_trained(run)
    config = trained.config
    data = load_dataset(config.dataset, "train", data_dir or config.data_dir)
    batches = iterate_batches(data, batch_size, shuffle=True, seed=config.seed)
    calibration = [images for _, (images, _) in zip(range(calibration_batches), batches)]
    return export_model(trained.model, calibration, (data.channels, data.size, data.size), data.mean, data.std)


def random_sparse_model(name: str, pattern: str = "1:16", first_conv: str = "dense", num_classes: int = 1000,
                        in_chans: int = 3, width: float = 1.0, seed: int = 0,
                        overrides: dict[str, str] | None = None) -> nn.Module:
    """A registry model with random weights whose masks follow ``pattern`` (and per-layer ``overrides``) exactly
    (for hardware figures)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=num_classes, in_chans=in_chans, width=width)
    pruner = DynamicPruner(model, PatternPlan(pattern, first_conv, dict(overrides or {})), create_importance("magnitude"),
                           PruningSchedule(), total_steps=1)
    pruner.finalize()
    return model.eval()


def model_input_size(name: str, input_size: int | None) -> int:
    """``input_size``, or the registered model's own when None; a size below 1 is refused."""
    if input_size is None:
        if name not in INPUT_SIZE:
            raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(INPUT_SIZE)}")
        return INPUT_SIZE[name]
    if input_size < 1:
        raise ConfigError(f"input size must be a positive number of pixels, got {input_size}")
    return input_size


def export_random(name: str, pattern: str = "1:16", first_conv: str = "dense", input_size: int | None = None,
                  num_classes: int = 1000, in_chans: int = 3, width: float = 1.0, seed: int = 0,
                  calibration_images: int = 2, overrides: dict[str, str] | None = None) -> IntGraph:
    """Integer graph of :func:`random_sparse_model`, calibrated on random images."""
    size = model_input_size(name, input_size)
    model = random_sparse_model(name, pattern, first_conv, num_classes, in_chans, width, seed, overrides)
    generator = torch.Generator().manual_seed(seed)
    calibration = [torch.randn(calibration_images, in_chans, size, size, generator=generator)]
    return export_model(model, calibration, (in_chans, size, size))


def shape_graph(name: str, pattern: str = "1:16", first_conv: str = "dense", input_size: int | None = None,
                num_classes: int = 1000, in_chans: int = 3, width: float = 1.0) -> IntGraph:
    """The integer graph of a registry model under an N:M (or dense) plan, with shapes but no values: the model is
    built on torch's meta device and traced there, and every weight is a zero-stride view of one int8 one (a dense
    layer keeps every weight). No weight or activation tensor is allocated; this is all the analytic model needs,
    since an N:M pattern fixes every layer's work."""
    size = model_input_size(name, input_size)
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, in_chans=in_chans, width=width)
    patterns = {}
    for layer, chosen in PatternPlan(pattern, first_conv).assign(model).items():
        if isinstance(chosen, BlockPattern):
            patterns[layer] = str(chosen)
        elif not isinstance(chosen, DensePattern):
            raise ConfigError(f"layer {layer!r} follows {chosen}, whose work depends on the weights; a shape-only "
                              f"graph needs N:M or dense layers (export the model and simulate the packed file)")
    ops, _ = float_graph(model, (in_chans, size, size))
    one = np.ones((), dtype=np.int8)
    int_ops = [IntOp(op.name, op.kind, list(op.inputs), dict(op.attrs),
                     {} if op.weight is None else {"weight": np.broadcast_to(one, tuple(op.weight.shape))})
               for op in ops]
    if int_ops and int_ops[-1].weighted:  # as the exporter does: the last layer keeps int32 logits
        int_ops[-1].attrs["requant"] = False
    graph = IntGraph((in_chans, size, size), 1.0, (0.0,), (1.0,), int_ops, {}, patterns)
    graph.shapes()  # every op takes its input's shape
    return graph
