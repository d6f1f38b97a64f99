"""Your own CNN and your own training loop on Fashion-MNIST, pruned to 1:16, exported to int8 and run on the array.

    python examples/fashion_mnist_cnn.py                 # 2 epochs on the full training set (a few minutes)
    python examples/fashion_mnist_cnn.py --steps 5 --train-images 512 --test-images 256    # a smoke run

Nothing here is edgesparse's but the five calls marked ``es.``: the model, the data handling, the optimizer and
the loop are plain PyTorch.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

import edgesparse as es
from edgesparse.data import load_dataset


class SmallCNN(nn.Module):
    """A user-defined CNN: three conv blocks and a two-layer classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.conv3 = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


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
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "fashion_mnist_cnn.packed")
    args = parser.parse_args()

    torch.manual_seed(0)
    train_x, train_y, mean, std = images_and_labels("train", args.train_images)
    test_x, test_y, _, _ = images_and_labels("test", args.test_images)
    per_epoch = -(-len(train_x) // args.batch_size)
    total = min(args.steps or per_epoch * args.epochs, per_epoch * args.epochs)

    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    pruner = es.prepare(model, "1:16", total_steps=total)        # 1:16 on every layer but the first conv
    step = 0
    while step < total:                                         # a plain training loop
        order = torch.randperm(len(train_x))
        for batch in order.split(args.batch_size):
            loss = nn.functional.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pruner.step()                                       # after every optimizer step
            step += 1
            if step == total:
                break
    pruner.finalize()                                           # masks at exactly 1:16 (a smoke run ends early)

    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    es.verify_pattern(model)
    kept = sum(f.kept_weights for f in es.layer_figures(model))
    dense = sum(f.dense_weights for f in es.layer_figures(model))
    graph = es.export(model, train_x[:256], mean, std)
    size = es.save_packed(graph, args.out)
    result = es.simulate(graph, es.AcceleratorConfig(rows=16, cols=16, m=16, n=1, pixels_per_cycle=2),
                         image=test_x[0])
    figures = es.hardware_figures(result, "SmallCNN")
    print(f"{step} steps: float test accuracy {accuracy:.4f}; {dense / kept:.2f}x fewer weights "
          f"({', '.join(f'{f.name} {f.pattern}' for f in es.layer_figures(model))})")
    print(f"packed model {args.out}: {size:,} bytes; on {result.config.describe()}: {figures.cycles:,} cycles, "
          f"{figures.fps:,.0f} FPS, PE utilization {figures.pe_utilization:.3f}, {figures.gops_per_dsp:.2f} GOPS/DSP")


if __name__ == "__main__":
    main()
