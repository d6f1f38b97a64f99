"""Training configuration: one dataclass, loaded from a TOML file and overridden by command-line flags.

Every field carries its help text, which the CLI turns into ``--flag`` options, so the file format, the flags
and ``--help`` never drift apart.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesparse.errors import ConfigError


def _opt(default: Any, help: str) -> Any:
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that decides a training run's result (and nothing that does not)."""

    model: str = _opt("vgg16_small", "registered model name (vgg16_small, resnet18_small, resnet50_small, ...)")
    width: float = _opt(0.25, "channel width multiplier")
    dataset: str = _opt("fashion_mnist", "fashion_mnist (installed), cifar10 (needs --data-dir) or synthetic")
    data_dir: str | None = _opt(None, "folder holding the dataset files (default: the dataset's own location)")
    train_limit: int | None = _opt(None, "use only the first N training images (quick runs)")
    test_limit: int | None = _opt(None, "evaluate on only the first N test images")
    flip: bool = _opt(False, "random horizontal flips of training images")
    epochs: int = _opt(5, "training epochs")
    batch_size: int = _opt(128, "images per step on each process")
    lr: float = _opt(0.1, "peak learning rate of the one-cycle schedule (SGD, Nesterov)")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(5e-4, "L2 weight decay")
    seed: int = _opt(0, "seed of weights and data order")
    pattern: str = _opt("1:16", "sparsity pattern: dense, N:M, N:M/gG, unstructured[@Rx], "
                                "unstructured-layer[@Rx], channel[@Rx]")
    first_conv: str = _opt("dense", "pattern of the first convolution (its few input channels rarely fill a block)")
    overrides: dict[str, str] = _opt({}, "per-layer patterns: {layer-name glob = pattern} (TOML table)")
    importance: str = _opt("fisher", "weight importance: magnitude, taylor (|w*EMA(g)|) or fisher (w^2*EMA(g^2))")
    prune_start: float = _opt(0.0, "fraction of training where pruning starts")
    prune_end: float = _opt(0.4, "fraction of training where the final pattern is reached (cubic ramp)")
    freeze: float = _opt(0.5, "fraction of training after which masks are frozen (final fine-tune)")
    update_every: int = _opt(50, "steps between mask recomputations")
    pruned_decay: float = _opt(0.0, "decay pulling pruned weights towards zero (SR-STE); 0 disables")
    label_smoothing: float = _opt(0.0, "label smoothing of the cross-entropy loss (0 disables)")
    val_split: int = _opt(0, "hold out the last N training images as a validation split (for choosing recipes)")
    allocate: str = _opt("none", "layer-wise N:M under the model-wide budget: none (every layer at --pattern), "
                                 "sensitivity (Fisher saliency after a short warm-up) or erk (Erdos-Renyi-kernel)")
    budget: float = _opt(16.0, "allocation budget: kept weights <= 1/budget of the prunable weights and index "
                               "bytes <= 1/(2*budget) of their dense int8 bytes")
    array_m: int = _opt(0, "M the accelerator's select serves (a power of two); every N:M must have M dividing "
                           "it; allocation uses M up to it (0: no check; allocation then uses M up to 16)")
    allocate_cycles: bool = _opt(False, "allocation also keeps the analytic cycles on the 16x16 array at or "
                                        "below uniform 1:16's")
    allocate_steps: int = _opt(100, "warm-up steps that measure the sensitivity criterion's Fisher saliency")
    permute: str = _opt("", "reorder input channels so N:M blocks keep more importance: '' (off), 'auto' (every "
                            "layer whose producer can be permuted) or comma-separated layer globs")
    permute_at: float = _opt(0.1, "fraction of training at which the channel permutation is chosen and applied")
    teacher: str | None = _opt(None, "trained run of the same model and data whose soft targets are distilled")
    distill_temperature: float = _opt(4.0, "distillation temperature")
    distill_weight: float = _opt(0.5, "weight of the soft-target loss (the label loss gets 1 - weight)")
    init: str | None = _opt(None, "trained dense run of the same model and data to start from (instead of "
                                  "random weights)")
    device: str = _opt("auto", "cpu, cuda, cuda:N or auto (cuda when available)")
    channels_last: bool = _opt(True, "channels-last memory format (faster convolutions on CPU)")
    checkpoint_every: int = _opt(0, "also checkpoint every N steps (0: only at the end of each epoch)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), _resolved_types()[f.name])
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "update_every": self.update_every}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for name in ("lr", "width"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 when given, got {value}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"distill_weight must be in [0, 1], got {self.distill_weight}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature must be positive, got {self.distill_temperature}")
        if not 0.0 <= self.permute_at <= self.freeze:
            raise ConfigError(f"permute_at must lie in [0, freeze={self.freeze}] (masks are frozen after), "
                              f"got {self.permute_at}")
        if self.val_split < 0 or self.allocate_steps < 1:
            raise ConfigError(f"val_split must be >= 0 and allocate_steps >= 1, got {self.val_split} and "
                              f"{self.allocate_steps}")
        if self.allocate != "none" and self.pattern == "dense":
            raise ConfigError(f"allocate={self.allocate!r} gives every layer an N:M; it contradicts pattern 'dense' "
                              f"(use allocate='none' for a dense run)")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be 0 or positive, got {self.checkpoint_every}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _resolved_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _check_type(name: str, value: Any, expected: Any) -> None:
    options = typing.get_args(expected) if typing.get_origin(expected) in (typing.Union, type(int | None)) else (expected,)
    for option in options:
        if option is type(None) and value is None:
            return
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if base is dict and isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return
        if base in (str, bool) and type(value) is base:
            return
    raise ConfigError(f"config key {name!r} must be {_type_name(expected)}, got {value!r}")


def _type_name(expected: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    options = typing.get_args(expected) if typing.get_origin(expected) in (typing.Union, type(int | None)) else (expected,)
    return " or ".join(names.get(typing.get_origin(o) or o, "a table of strings") for o in options)


def config_fields() -> list[dataclasses.Field]:
    """The configurable fields, in declaration order, with resolved types in ``field.type``."""
    types = _resolved_types()
    fields = dataclasses.fields(TrainConfig)
    for f in fields:
        f.type = types[f.name]
    return list(fields)


def load_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a TOML config (or start from the defaults) and apply ``overrides`` (None values are ignored)."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    return TrainConfig(**values)
