"""Training from scratch with dynamic fine-grained pruning: one process, or many under ``torchrun`` (DDP, gloo).

A run lives in one output folder: ``checkpoint.pt`` (the latest state, written atomically at every epoch end and
every ``checkpoint_every`` steps), ``metrics.jsonl`` (one line per epoch), and at the end ``final.pt`` (model
state with masks, config, figures) and ``summary.json``. ``resume=True`` continues from ``checkpoint.pt`` and
ends with exactly the weights and masks an uninterrupted run with the same seed would have.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parametrize

from edgesparse.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from edgesparse.config import TrainConfig
from edgesparse.data import ImageArrays, iterate_batches, load_dataset, steps_per_epoch
from edgesparse.allocation_flow import allocation_plan
from edgesparse.errors import CheckpointError, ConfigError
from edgesparse.levers import distillation_loss, load_reference_run, permute_training_state
from edgesparse.models import INPUT_SIZE, create_model
from edgesparse.progress import progress_bar
from edgesparse.sparsity import (
    DynamicPruner,
    LayerFigures,
    PatternPlan,
    PruningSchedule,
    create_importance,
    layer_figures,
    total_figures,
    verify_pattern,
)
from edgesparse.sparsity.allocate import check_runs_on
from edgesparse.sparsity.permute import find_chains

# Config keys that may differ between a checkpoint and the run resuming it without changing the result.
_RESUMABLE_CHANGES = {"data_dir", "checkpoint_every", "device"}


@dataclass
class TrainResult:
    """What a finished run reports (and the trained model, masks attached)."""

    model: nn.Module
    test_accuracy: float
    compression: float
    index_ratio: float
    figures: list[LayerFigures]
    out_dir: Path
    steps: int
    seconds: float
    val_accuracy: float | None = None


@dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> _Distributed:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); gloo works on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return _Distributed(dist.get_rank(), dist.get_world_size())


def build_model(config: TrainConfig, data: ImageArrays) -> nn.Module:
    """The configured model, sized for the dataset's channels and classes."""
    expected = INPUT_SIZE.get(config.model)
    if expected is not None and expected != data.size:
        raise ConfigError(f"model {config.model!r} takes {expected}x{expected} inputs but dataset {config.dataset!r} "
                          f"has {data.size}x{data.size} images; pick a matching model (e.g. a *_small one)")
    return create_model(config.model, num_classes=data.classes, in_chans=data.channels, width=config.width)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this machine has no CUDA GPU")
    return device


def training_split(config: TrainConfig) -> tuple[ImageArrays, ImageArrays | None]:
    """(training images, validation images or None): the validation split is the training set's last
    ``val_split`` images, held out before ``train_limit`` applies."""
    data = load_dataset(config.dataset, "train", config.data_dir)
    if not config.val_split:
        return data.subset(config.train_limit), None
    train_part, val_part = data.split(config.val_split)
    return train_part.subset(config.train_limit), val_part


def build_pruner(config: TrainConfig, model: nn.Module, total_steps: int,
                 allocated: dict[str, str] | None = None) -> DynamicPruner:
    """Attach masks for the configured pattern plan (an allocated plan under the explicit overrides) to ``model``."""
    plan = PatternPlan(config.pattern, config.first_conv, {**(allocated or {}), **config.overrides})
    if config.array_m:
        check_runs_on(plan.assign(model), config.array_m)
    schedule = PruningSchedule(config.prune_start, config.prune_end, config.freeze, config.update_every)
    return DynamicPruner(model, plan, create_importance(config.importance), schedule, total_steps,
                         config.pruned_decay)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageArrays, channels_last: bool = False, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=data.images.device)
    with parametrize.cached():
        for images, labels in iterate_batches(data, batch_size, shuffle=False, drop_last=False):
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            correct += (model(images).argmax(1) == labels).sum()
    model.train(was_training)
    return int(correct) / max(1, len(data))


def _check_resumable(saved: dict[str, Any], config: TrainConfig) -> None:
    mine = config.to_dict()
    differ = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k) and k not in _RESUMABLE_CHANGES)
    if differ:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {mine.get(k)!r}" for k in differ)
        raise CheckpointError(f"cannot resume: the config changed ({detail}); use a new output folder")


def _write_json(path: Path, payload: Any, main: bool) -> None:
    if main:
        atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode())


def _allocated_plan(config: TrainConfig, model: nn.Module, data: ImageArrays, out_dir: Path, resume: bool,
                    main: bool) -> dict[str, str] | None:
    """The layer-wise plan of ``config.allocate`` (None when off), measured once and kept in ``plan.json``."""
    if config.allocate == "none":
        return None
    path = out_dir / "plan.json"
    if resume and path.exists():
        return json.loads(path.read_text())
    plan = allocation_plan(config, model, data)
    _write_json(path, plan, main)
    return plan


def _append_metrics(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint being resumed."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    atomic_write_bytes(path, "".join(line + "\n" for line in kept).encode())


def batch_loss(net: nn.Module, teacher: nn.Module | None, images: torch.Tensor, labels: torch.Tensor,
               config: TrainConfig, loss_fn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's loss and logits: ``loss_fn`` on the labels, or with a teacher the soft-target distillation loss."""
    logits = net(images)
    if teacher is None:
        return loss_fn(logits, labels), logits
    with torch.no_grad():
        teacher_logits = teacher(images)
    return distillation_loss(logits, teacher_logits, labels, config.distill_temperature, config.distill_weight,
                             config.label_smoothing), logits


def train(config: TrainConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``config`` into ``out_dir``; return the final figures. Only rank 0 writes files."""
    out_dir = Path(out_dir)
    world = _init_distributed()
    started = time.perf_counter()
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    train_data, val_data = training_split(config)
    test_data = load_dataset(config.dataset, "test", config.data_dir).subset(config.test_limit)
    train_data, test_data = train_data.to(device), test_data.to(device)
    val_data = val_data.to(device) if val_data is not None else None
    per_epoch = steps_per_epoch(len(train_data), config.batch_size, world.world_size)
    if per_epoch < 1:
        raise ConfigError(f"{len(train_data)} training images make no full batch of {config.batch_size} "
                          f"on each of {world.world_size} process(es)")
    total_steps = per_epoch * config.epochs

    model = build_model(config, train_data)
    model_args = {"name": config.model, "num_classes": train_data.classes, "in_chans": train_data.channels,
                  "width": config.width}
    if config.init is not None:
        model.load_state_dict(load_reference_run(config.init, config, "init", dense=True).state_dict())
    model = model.to(device)
    teacher = None
    if config.teacher is not None:
        teacher = load_reference_run(config.teacher, config, "teacher").to(device).eval()
        if config.channels_last:
            teacher = teacher.to(memory_format=torch.channels_last)
    chains = find_chains(model, config.permute) if config.permute else []
    allocated = _allocated_plan(config, model, train_data, out_dir, resume, world.main)
    pruner = build_pruner(config, model, total_steps, allocated)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)

    checkpoint_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "metrics.jsonl"
    step = 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state["config"], config)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        pruner.load_state_dict(state["pruner"])
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
        if world.main:
            _truncate_metrics(metrics_path, step)
    elif world.main:
        if checkpoint_path.exists() and not resume:
            raise CheckpointError(f"{out_dir} already holds a run; pass --resume to continue it or pick a new folder")
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path.unlink(missing_ok=True)

    net = nn.parallel.DistributedDataParallel(model) if world.world_size > 1 else model
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    permute_step = round(config.permute_at * total_steps) if chains else -1

    def checkpoint() -> None:
        if world.main:
            save_checkpoint(checkpoint_path, {
                "config": config.to_dict(), "step": step, "model": model.state_dict(), "model_args": model_args,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "pruner": pruner.state_dict(), "rng": torch.get_rng_state()})

    bar = progress_bar(total=total_steps, initial=step, desc=f"train {config.model} {config.pattern}",
                       unit="step", disable=not (progress and world.main), dynamic_ncols=True)
    net.train()
    test_accuracy = None
    while step < total_steps:
        epoch, skip = divmod(step, per_epoch)
        # running figures stay on the device: no host round trip per step
        running_loss = torch.zeros((), device=device)
        running_correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for images, labels in iterate_batches(train_data, config.batch_size, shuffle=True, seed=config.seed,
                                              epoch=epoch, rank=world.rank, world_size=world.world_size,
                                              skip=skip, flip=config.flip):
            if step == permute_step:
                _write_json(out_dir / "permutation.json", permute_training_state(model, chains, pruner, optimizer),
                            world.main)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            loss, logits = batch_loss(net, teacher, images, labels, config, loss_fn)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            pruner.step()
            step += 1
            running_loss += loss.detach() * len(labels)
            running_correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            bar.update(1)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step % per_epoch:
                checkpoint()
        test_accuracy = evaluate(model, test_data, config.channels_last)
        if world.main:
            _append_metrics(metrics_path, {
                "epoch": epoch + 1, "step": step, "lr": scheduler.get_last_lr()[0],
                "train_loss": float(running_loss) / max(1, seen), "train_acc": int(running_correct) / max(1, seen),
                "test_acc": test_accuracy, "density": pruner.density(), "frozen": pruner.frozen,
                "seconds": round(time.perf_counter() - started, 2)})
            bar.write(f"epoch {epoch + 1}/{config.epochs}: test accuracy {test_accuracy:.4f}, "
                      f"density {pruner.density():.4f}", file=sys.stderr)  # a log line; stdout holds the results
        checkpoint()
    bar.close()

    pruner.finalize()
    verify_pattern(model)
    figures = layer_figures(model)
    total = total_figures(figures)
    if test_accuracy is None:  # resumed a run that had already finished
        test_accuracy = evaluate(model, test_data, config.channels_last)
    val_accuracy = evaluate(model, val_data, config.channels_last) if val_data is not None else None
    result = TrainResult(model, test_accuracy, total.compression, float(total.index_ratio), figures, out_dir, step,
                         time.perf_counter() - started, val_accuracy)
    rows = [row.as_row() for row in figures]
    if world.main:
        save_checkpoint(out_dir / "final.pt", {"config": config.to_dict(), "step": step, "model_args": model_args,
                                                "patterns": pruner.state_dict()["patterns"],
                                                "model": model.state_dict(), "figures": rows,
                                                "test_acc": test_accuracy, "val_acc": val_accuracy})
        summary = {"test_acc": test_accuracy, "val_acc": val_accuracy, "allocated": allocated, "compression": total.compression, "index_ratio": float(total.index_ratio),
                   "steps": step, "seconds": round(result.seconds, 2), "config": config.to_dict(),
                   "figures": rows}
        atomic_write_bytes(out_dir / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return result
