"""A shallow ConvNet that keeps full resolution: conv-BatchNorm-ReLU blocks, then FC."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fastleak._checks import positive_int
from fastleak.models.layers import flat_features, image_shape
from fastleak.models.registry import register


class PlainConvNet(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, ...], width: int = 16, depth: int = 3,
                 bias: bool = True) -> None:
        super().__init__()
        positive_int(width, "width")
        positive_int(depth, "depth")
        channels = image_shape(in_shape, "plainconv")[0]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i in range(depth):
            layers[f"conv{i}"] = nn.Conv2d(channels if i == 0 else width, width, kernel_size=3, padding=1)
            layers[f"bn{i}"] = nn.BatchNorm2d(width)
            layers[f"relu{i}"] = nn.ReLU()
        layers["flatten"] = nn.Flatten()
        self.body = nn.Sequential(layers)
        self.fc = nn.Linear(flat_features(self.body, in_shape, "plainconv"), num_classes, bias=bias)

    def forward(self, x):
        return self.fc(self.body(x))


@register("plainconv")
def plainconv(num_classes: int, in_shape: tuple[int, ...], width: int = 16, depth: int = 3,
              bias: bool = True) -> nn.Module:
    """``depth`` 3x3 conv-BatchNorm-ReLU blocks of ``width`` channels, no pooling, then FC from every
    position (width x H x W features). Without pooling the FC gradient keeps the spatial layout, which
    is what makes a train-mode BatchNorm client leak recognisable images within a few hundred steps."""
    return PlainConvNet(num_classes, in_shape, width=width, depth=depth, bias=bias)
