"""From a trained run (or a random pattern-following model) to an integer graph, ready to pack."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from edgesparse.data import ImageArrays, iterate_batches, load_dataset
from edgesparse.models import INPUT_SIZE, create_model
from edgesparse.quant import IntGraph, dequantize_output, export_model, quantize_input, run_graph
from edgesparse.sparsity import DynamicPruner, PatternPlan, PruningSchedule, create_importance
from edgesparse.trained import load_trained


def int8_accuracy(graph: IntGraph, data: ImageArrays, batch_size: int = 250, device: str = "cpu",
                  progress: bool = False) -> float:
    """Top-1 accuracy of the integer reference executor on ``data`` (the deployed int8 model)."""
    right = 0
    for images, labels in tqdm(iterate_batches(data, batch_size, shuffle=False, drop_last=False),
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


def export_random(name: str, pattern: str = "1:16", first_conv: str = "dense", input_size: int | None = None,
                  num_classes: int = 1000, in_chans: int = 3, width: float = 1.0, seed: int = 0,
                  calibration_images: int = 2, overrides: dict[str, str] | None = None) -> IntGraph:
    """Integer graph of :func:`random_sparse_model`, calibrated on random images."""
    size = input_size or INPUT_SIZE[name]
    model = random_sparse_model(name, pattern, first_conv, num_classes, in_chans, width, seed, overrides)
    generator = torch.Generator().manual_seed(seed)
    calibration = [torch.randn(calibration_images, in_chans, size, size, generator=generator)]
    return export_model(model, calibration, (in_chans, size, size))
