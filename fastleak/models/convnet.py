"""The width-configurable ConvNet used by "Inverting Gradients" (inversefed's ``ConvNet``)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fastleak._checks import positive_int
from fastleak.models.layers import flat_features, image_shape
from fastleak.models.registry import register

# (in, out) channel multipliers of the eight conv-BN-ReLU blocks; a 3x3 max-pool follows blocks 5 and 7.
_BLOCKS = ((None, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 4), (4, 4), (4, 4))
_POOL_AFTER = {5: "pool0", 7: "pool1"}


class ConvNet(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, ...], width: int = 64, bias: bool = True) -> None:
        super().__init__()
        positive_int(width, "width")
        channels = image_shape(in_shape, "convnet")[0]
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        for i, (cin, cout) in enumerate(_BLOCKS):
            layers[f"conv{i}"] = nn.Conv2d(channels if cin is None else cin * width, cout * width,
                                           kernel_size=3, padding=1)
            layers[f"bn{i}"] = nn.BatchNorm2d(cout * width)
            layers[f"relu{i}"] = nn.ReLU()
            if i in _POOL_AFTER:
                layers[_POOL_AFTER[i]] = nn.MaxPool2d(3)
        layers["flatten"] = nn.Flatten()
        self.body = nn.Sequential(layers)
        self.fc = nn.Linear(flat_features(self.body, in_shape, "convnet"), num_classes, bias=bias)

    def forward(self, x):
        return self.fc(self.body(x))


@register("convnet")
def convnet(num_classes: int, in_shape: tuple[int, ...], width: int = 64, bias: bool = True) -> nn.Module:
    """Eight 3x3 conv-BatchNorm-ReLU blocks with widths w, 2w, 2w, 4w, 4w, 4w, 4w, 4w, 3x3 max-pools
    after the sixth and eighth, then FC (36w -> classes for 32x32 inputs). This is inversefed's
    ConvNet as it actually runs (its duplicated ``conv6`` key leaves eight conv blocks)."""
    return ConvNet(num_classes, in_shape, width=width, bias=bias)
