"""A small learnable synthetic dataset for tests: each class is a fixed random template plus noise."""

from __future__ import annotations

import torch

from edgesparse.data.arrays import ImageArrays


def make_synthetic(split: str, count: int = 512, classes: int = 4, channels: int = 1, size: int = 32,
                   seed: int = 0) -> ImageArrays:
    """Images whose class is recoverable from their template; ``split`` only changes the noise draw."""
    templates = torch.rand(classes, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 200
    noise_seed = seed * 2 + (1 if split == "test" else 0) + 1
    generator = torch.Generator().manual_seed(noise_seed)
    labels = torch.randint(0, classes, (count,), generator=generator)
    noise = torch.rand(count, channels, size, size, generator=generator) * 55
    images = (templates[labels] + noise).clamp(0, 255).to(torch.uint8)
    return ImageArrays(images, labels, classes, (0.5,) * channels, (0.25,) * channels)
