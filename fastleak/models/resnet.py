"""ResNets for small images (He et al. 2016): ResNet-18 and the CIFAR ResNet-20."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from fastleak._checks import positive_int
from fastleak._registry import Registry
from fastleak.models.layers import image_shape
from fastleak.models.registry import register


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


STEMS: Registry = Registry("resnet stem")


@STEMS.register("cifar")
def _cifar_stem(channels: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())


@STEMS.register("imagenet")
def _imagenet_stem(channels: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, width, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))


class ResNet(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, ...], blocks: Sequence[int], width: int,
                 stem: str, bias: bool, name: str) -> None:
        super().__init__()
        positive_int(width, "width")
        channels = image_shape(in_shape, name)[0]
        self.stem = STEMS.get(stem)(channels, width)
        stages = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            stages.append(nn.Sequential(*[BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1)
                                          for j in range(n)]))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes, bias=bias)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.fc(self.pool(self.stages(self.stem(x))))


@register("resnet18")
def resnet18(num_classes: int, in_shape: tuple[int, ...], width: int = 64, stem: str = "cifar",
             bias: bool = True) -> nn.Module:
    """ResNet-18: BasicBlocks [2, 2, 2, 2] with widths w, 2w, 4w, 8w, global average pool, FC 8w -> classes.
    ``stem="cifar"`` (default) is one 3x3 conv-BN-ReLU with no pooling; ``stem="imagenet"`` is the
    7x7/2 conv and 3x3/2 max-pool of the ImageNet model. Projection (1x1 conv + BN) shortcuts.
    Convs: Kaiming-normal (fan_out) init; BN weight 1, bias 0."""
    return ResNet(num_classes, in_shape, (2, 2, 2, 2), width, stem, bias, "resnet18")


@register("resnet20")
def resnet20(num_classes: int, in_shape: tuple[int, ...], width: int = 16, stem: str = "cifar",
             bias: bool = True) -> nn.Module:
    """CIFAR ResNet-20: 3x3 stem, BasicBlocks [3, 3, 3] with widths w, 2w, 4w (16, 32, 64),
    global average pool, FC 4w -> classes. Projection (1x1 conv + BN) shortcuts where the shape changes."""
    return ResNet(num_classes, in_shape, (3, 3, 3), width, stem, bias, "resnet20")
