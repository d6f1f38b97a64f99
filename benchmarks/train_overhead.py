"""Step time of dynamic sparse training over dense training, with and without a teacher, alternately in one process.

Three trainers (small VGG16, width 1/4, Fashion-MNIST batches of 128, channels-last) train side by side: rounds of
``--block`` steps alternate dense / sparse / sparse distilled from a dense teacher, so that machine noise hits all
alike. The sparse step includes everything the dynamic method adds: the masked-weight parametrization with its
straight-through backward, the importance statistics every step, and the mask recomputation every
``update_every`` steps; the distilled step adds the teacher's forward pass and the soft-target loss.

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
from edgesparse.train import batch_loss, build_model, build_pruner  # noqa: E402


def make_trainer(pattern: str, data, total_steps: int, teacher: nn.Module | None = None):
    config = load_config(pattern=pattern)
    torch.manual_seed(0)
    model = build_model(config, data)
    pruner = build_pruner(config, model, total_steps)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step(images, labels):
        loss, _ = batch_loss(model, teacher, images, labels, config, loss_fn)
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
    teacher = build_model(load_config(pattern="dense"), data).to(memory_format=torch.channels_last).eval()
    trainers = {"dense": make_trainer("dense", data, total)[0]}
    trainers["1:16 dynamic"], pruner = make_trainer("1:16", data, total)
    trainers["1:16 dynamic + teacher"] = make_trainer("1:16", data, total, teacher)[0]
    for trainer in trainers.values():
        for images, labels in batches[:args.warmup]:
            trainer(images, labels)

    times: dict[str, list[float]] = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            for images, labels in batches:
                trainer(images, labels)
            times[name].append((time.perf_counter() - started) / len(batches))

    dense_ms = statistics.median(times["dense"]) * 1e3
    rows = [{"mode": name, "median_step_ms": f"{statistics.median(t) * 1e3:.1f}",
             "ratio": f"{statistics.median(t) * 1e3 / dense_ms:.3f}"} for name, t in times.items()]
    ratios = {name: [s / d for d, s in zip(times["dense"], t)] for name, t in times.items() if name != "dense"}
    publish("train_overhead", rows, round_ratios=ratios, rounds=args.rounds, block=args.block,
            target="1:16 dynamic ratio <= 1.10 (the teacher's forward pass is the distilled row's extra)")
    for name, values in ratios.items():
        print(f"{name} per-round ratios: min {min(values):.3f}, median {statistics.median(values):.3f}, "
              f"max {max(values):.3f}")
    print(f"mask updates during the run: {pruner.steps // pruner.schedule.update_every}")


if __name__ == "__main__":
    main()
