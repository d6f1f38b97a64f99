"""Models by name, timm-style: ``create_model("vgg16_small", num_classes=10, in_chans=1, width=0.25)``.

``*_small`` variants keep the topology but take 32x32 inputs (Fashion-MNIST is padded to 32x32, CIFAR-10 is).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from edgesparse.errors import ConfigError
from edgesparse.models.resnet import BasicBlock, Bottleneck, ResNet
from edgesparse.models.vgg import VGG

MODELS: dict[str, Callable[..., nn.Module]] = {
    "vgg16": partial(VGG, small=False),
    "vgg16_small": partial(VGG, small=True),
    "resnet18": partial(ResNet, BasicBlock, (2, 2, 2, 2), small=False),
    "resnet18_small": partial(ResNet, BasicBlock, (2, 2, 2, 2), small=True),
    "resnet50": partial(ResNet, Bottleneck, (3, 4, 6, 3), small=False),
    "resnet50_small": partial(ResNet, Bottleneck, (3, 4, 6, 3), small=True),
}

INPUT_SIZE = {name: 32 if name.endswith("_small") else 224 for name in MODELS}


def create_model(name: str, num_classes: int = 1000, in_chans: int = 3, width: float = 1.0) -> nn.Module:
    """Build a registered model; ``width`` scales every layer's channels."""
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(MODELS)}")
    if not width > 0:
        raise ConfigError(f"width multiplier must be positive, got {width!r}")
    for label, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{label} must be a positive integer, got {value!r}")
    return MODELS[name](num_classes=num_classes, in_chans=in_chans, width=width)
