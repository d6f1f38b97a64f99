"""In-memory image datasets and a deterministic, resumable batch iterator.

Small datasets (Fashion-MNIST, CIFAR-10) fit in memory as uint8; batches are cut from a per-epoch permutation
seeded by ``(seed, epoch)``, so a run resumed mid-epoch sees exactly the batches it would have seen, and each
rank of a distributed run takes its own interleaved share (as ``DistributedSampler`` does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from edgesparse.errors import DataError


@dataclass
class ImageArrays:
    """A split of an image dataset: ``images`` uint8 ``[N, C, H, W]``, ``labels`` int64 ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    _stats: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.classes):
            raise DataError(f"labels must lie in [0, {self.classes}), got {int(self.labels.min())}..{int(self.labels.max())}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[2]

    def subset(self, limit: int | None) -> "ImageArrays":
        """The first ``limit`` examples (all when None)."""
        if limit is None or limit >= len(self):
            return self
        return ImageArrays(self.images[:limit], self.labels[:limit], self.classes, self.mean, self.std)

    def to(self, device: torch.device | str) -> "ImageArrays":
        """The same split with images and labels on ``device`` (a GPU keeps the whole small dataset)."""
        return ImageArrays(self.images.to(device), self.labels.to(device), self.classes, self.mean, self.std)

    def split(self, held_out: int) -> tuple["ImageArrays", "ImageArrays"]:
        """(the first ``len - held_out`` examples, the last ``held_out``): a validation split of a training set."""
        if not 0 < held_out < len(self):
            raise DataError(f"cannot hold out {held_out} of {len(self)} examples for validation")
        keep = len(self) - held_out
        return (ImageArrays(self.images[:keep], self.labels[:keep], self.classes, self.mean, self.std),
                ImageArrays(self.images[keep:], self.labels[keep:], self.classes, self.mean, self.std))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float, scaled to [0, 1] then standardized per channel (on the images' device)."""
        if images.device not in self._stats:  # made once per device: no host-to-device copy per batch
            self._stats[images.device] = tuple(torch.tensor(v, device=images.device).view(1, -1, 1, 1)
                                               for v in (self.mean, self.std))
        mean, std = self._stats[images.device]
        return (images.float() / 255.0 - mean) / std


def steps_per_epoch(count: int, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Batches one rank takes per epoch."""
    per_rank = count // world_size
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def iterate_batches(data: ImageArrays, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0,
                    rank: int = 0, world_size: int = 1, skip: int = 0, flip: bool = False,
                    drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield normalized ``(images, labels)`` batches of one epoch for one rank, skipping the first ``skip``.

    The order is drawn on the CPU (the same on every device) and moved once per epoch to the data's device, so
    a GPU run cuts its batches without a host round trip per step."""
    if batch_size < 1:
        raise DataError(f"batch size must be positive, got {batch_size}")
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(data), generator=generator) if shuffle else torch.arange(len(data))
    flips = torch.rand(len(data), generator=generator) < 0.5 if flip else None
    per_rank = len(data) // world_size
    mine = order[rank:per_rank * world_size:world_size].to(data.images.device)
    if flips is not None:
        flips = flips.to(data.images.device)
    total = steps_per_epoch(len(data), batch_size, world_size, drop_last)
    for step in range(skip, total):
        index = mine[step * batch_size:(step + 1) * batch_size]
        images = data.images[index]
        if flips is not None:
            images = torch.where(flips[index].view(-1, 1, 1, 1), images.flip(-1), images)
        yield data.normalize(images), data.labels[index]
