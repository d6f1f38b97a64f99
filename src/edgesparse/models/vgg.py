"""VGG16 with BatchNorm: the ImageNet topology (224x224) and a small-input variant (32x32) with a width multiplier."""

from __future__ import annotations

from torch import nn

# Channels of VGG16's 13 convs; "M" is a 2x2 max pool.
VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                       512, 512, 512, "M", 512, 512, 512, "M")


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class VGG(nn.Module):
    """VGG feature extractor (conv-BN-ReLU, max pools) and a classifier.

    ``small=False``: ImageNet head (7x7 average pool, 4096-4096-classes with dropout).
    ``small=True``: 32x32 inputs, the five pools leave 1x1, one Linear layer classifies.
    """

    def __init__(self, layout: tuple[int | str, ...] = VGG16_LAYOUT, num_classes: int = 1000, in_chans: int = 3,
                 width: float = 1.0, small: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            out = _scaled(int(item), width)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        if small:
            self.pool = nn.Flatten()
            self.classifier = nn.Linear(channels, num_classes)
        else:
            hidden = _scaled(4096, width)
            self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten())
            self.classifier = nn.Sequential(
                nn.Linear(channels * 49, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(hidden, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))
