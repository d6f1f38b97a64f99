"""A ResNet-style model written here (residual adds, its own layer names, its own stem and head), pruned to 1:16
inside a plain training loop on Fashion-MNIST, exported to int8 and run on the array, layer by layer.

    python examples/resnet_style.py                      # 2 epochs on the full training set
    python examples/resnet_style.py --steps 5 --train-images 512 --test-images 256     # a smoke run
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

import edgesparse as es
from edgesparse.data import load_dataset


class Residual(nn.Module):
    """Two 3x3 convs and a shortcut (a strided 1x1 projection when the shape changes), added, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm_a = nn.BatchNorm2d(cout)
        self.conv_b = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm_b = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else
                         nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.norm_a(self.conv_a(x)))
        return torch.relu(self.norm_b(self.conv_b(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem (3x3 conv, BN, ReLU, 2x2 max pool), three residual stages, and a pooled two-layer head."""

    def __init__(self, width: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                                  nn.MaxPool2d(2))
        self.stage1 = Residual(width, width, 1)
        self.stage2 = Residual(width, 2 * width, 2)
        self.stage3 = Residual(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * width, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.stage3(self.stage2(self.stage1(self.stem(x))))))


def images_and_labels(split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
    """Normalized float images [N, 1, 32, 32] (28x28 padded), labels, and the normalization."""
    data = load_dataset("fashion_mnist", split).subset(limit)
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    return (data.images.float() / 255 - mean) / std, data.labels, data.mean, data.std


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="stop after this many steps (a smoke run)")
    parser.add_argument("--train-images", type=int, default=None, help="use the first N training images")
    parser.add_argument("--test-images", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "resnet_style.packed")
    args = parser.parse_args()

    torch.manual_seed(0)
    train_x, train_y, mean, std = images_and_labels("train", args.train_images)
    test_x, test_y, _, _ = images_and_labels("test", args.test_images)
    per_epoch = -(-len(train_x) // args.batch_size)
    total = min(args.steps or per_epoch * args.epochs, per_epoch * args.epochs)

    model = TinyResNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    # The stem stays dense (1 input channel fills no block of 16), and so does the last layer, by its own name.
    pruner = es.prepare(model, "1:16", total_steps=total, overrides={"head.3": "dense"})
    step = 0
    while step < total:
        for batch in torch.randperm(len(train_x)).split(args.batch_size):
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pruner.step()
            step += 1
            if step == total:
                break
    pruner.finalize()

    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    es.verify_pattern(model)
    graph = es.export(model, train_x[:256], mean, std)
    size = es.save_packed(graph, args.out)
    result = es.simulate(graph, es.AcceleratorConfig(rows=16, cols=16, m=16, n=1, pixels_per_cycle=2),
                         image=test_x[0])
    figures = es.hardware_figures(result, "TinyResNet")
    print(f"{step} steps: float test accuracy {accuracy:.4f}; packed model {args.out}: {size:,} bytes")
    for layer in result.layers:
        if layer.kind in ("conv", "linear"):
            row = layer.as_row(result.config)
            print(f"  {row['name']:<22} {graph.patterns.get(row['name'], 'dense'):<6} {row['cycles']:>8,} cycles")
    print(f"on {result.config.describe()}: {figures.cycles:,} cycles, {figures.fps:,.0f} FPS, "
          f"PE utilization {figures.pe_utilization:.3f}, {figures.gops_per_dsp:.2f} GOPS/DSP")


if __name__ == "__main__":
    main()
