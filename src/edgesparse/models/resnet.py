"""ResNet18 and ResNet50: the ImageNet topology and a small-input (32x32) stem, with a width multiplier."""

from __future__ import annotations

from torch import nn


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """Two 3x3 convs and a residual (ResNet18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(*_conv_bn(cin, planes, 3, stride), nn.ReLU(inplace=True), *_conv_bn(planes, cout, 3))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, and a residual (ResNet50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.body = nn.Sequential(
            *_conv_bn(cin, planes, 1), nn.ReLU(inplace=True),
            *_conv_bn(planes, planes, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(planes, cout, 1))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet: stem, four stages, global average pool, one Linear classifier."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, int, int, int],
                 num_classes: int = 1000, in_chans: int = 3, width: float = 1.0, small: bool = False) -> None:
        super().__init__()
        planes = [max(1, round(p * width)) for p in (64, 128, 256, 512)]
        if small:  # 32x32: 3x3 stem, stride 1, no max pool
            self.stem = nn.Sequential(*_conv_bn(in_chans, planes[0], 3), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(*_conv_bn(in_chans, planes[0], 7, 2), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(3, 2, padding=1))
        stages, cin = [], planes[0]
        for index, (width_planes, depth) in enumerate(zip(planes, depths)):
            blocks = []
            for position in range(depth):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(block(cin, width_planes, stride))
                cin = width_planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(cin, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.pool(self.stages(self.stem(x))))
