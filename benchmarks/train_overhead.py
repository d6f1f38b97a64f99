"""Step time of dynamic sparse training over dense training, measured alternately in one process.

Both models (small VGG16, width 1/4, Fashion-MNIST batches of 128, channels-last) train side by side: rounds of
``--block`` steps alternate dense / sparse so that machine noise hits both alike. The sparse step includes
everything the dynamic method adds: the masked-weight parametrization with its straight-through backward, the
importance statistics every step, and the mask recomputation every ``update_every`` steps.

    python benchmarks/train_overhead.py --rounds 12 --block 25
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from _common import publish  # noqa: E402
from torch import nn  # noqa: E402

from edgesparse.config import load_config  # noqa: E402
from edgesparse.data import iterate_batches, load_dataset  # noqa: E402
from edgesparse.train import build_model, build_pruner  # noqa: E402


def make_trainer(pattern: str, data, total_steps: int):
    config = load_config(pattern=pattern)
    torch.manual_seed(0)
    model = build_model(config, data)
    pruner = build_pruner(config, model, total_steps)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(images, labels):
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pruner.step()
    return step, pruner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--block", type=int, default=25, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()

    data = load_dataset("fashion_mnist", "train")
    batches = [(x.contiguous(memory_format=torch.channels_last), y)
               for x, y in iterate_batches(data, 128, shuffle=True, seed=0)][:args.block]
    total = 2 * args.rounds * args.block  # the schedule sees a run of this length: masks move throughout
    dense, _ = make_trainer("dense", data, total)
    sparse, pruner = make_trainer("1:16", data, total)
    for trainer in (dense, sparse):
        for images, labels in batches[:args.warmup]:
            trainer(images, labels)

    times: dict[str, list[float]] = {"dense": [], "1:16 dynamic": []}
    for _ in range(args.rounds):
        for name, trainer in (("dense", dense), ("1:16 dynamic", sparse)):
            started = time.perf_counter()
            for images, labels in batches:
                trainer(images, labels)
            times[name].append((time.perf_counter() - started) / len(batches))

    dense_ms = statistics.median(times["dense"]) * 1e3
    sparse_ms = statistics.median(times["1:16 dynamic"]) * 1e3
    ratios = [s / d for d, s in zip(times["dense"], times["1:16 dynamic"])]
    rows = [{"mode": "dense", "median_step_ms": f"{dense_ms:.1f}", "ratio": "1.000"},
            {"mode": "1:16 dynamic", "median_step_ms": f"{sparse_ms:.1f}", "ratio": f"{sparse_ms / dense_ms:.3f}"}]
    publish("train_overhead", rows, round_ratios=ratios, rounds=args.rounds, block=args.block,
            target="ratio <= 1.10")
    print(f"per-round ratios: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}, max {max(ratios):.3f}; "
          f"mask updates during the run: {pruner.steps // pruner.schedule.update_every}")


if __name__ == "__main__":
    main()
