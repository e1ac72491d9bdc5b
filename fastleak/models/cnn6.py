"""CNN6, the network of "R-GAP: Recursive Gradient Attack on Privacy" (Zhu & Blaschko, ICLR 2021)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from fastleak.models.layers import flat_features, image_shape
from fastleak.models.registry import register


@register("cnn6")
def cnn6(num_classes: int, in_shape: tuple[int, ...], slope: float = 0.2, bias: bool = True) -> nn.Module:
    """Six bias-free convolutions (12, 36, 36, 36, 64, 128 channels; the first 4x4 with stride 2, the others 3x3,
    strides 2, 1, 1, 2, 1), each followed by a LeakyReLU of ``slope``, then one FC layer (3200 -> classes for
    32x32 inputs). The module layout is breaching's ``cnn6`` (the last activation after the flatten)."""
    channels = image_shape(in_shape, "cnn6")[0]
    widths = (12, 36, 36, 36, 64, 128)
    kernels = ((4, 2, 2), (3, 2, 1), (3, 1, 1), (3, 1, 1), (3, 2, 1), (3, 1, 1))   # (kernel, stride, padding)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i, (width, (kernel, stride, padding)) in enumerate(zip(widths, kernels)):
        layers[f"layer{i}"] = nn.Conv2d(channels if i == 0 else widths[i - 1], width, kernel, stride=stride,
                                        padding=padding, bias=False)
        if i < len(widths) - 1:
            layers[f"act{i}"] = nn.LeakyReLU(slope)
    layers["flatten"] = nn.Flatten()
    layers["act5"] = nn.LeakyReLU(slope)
    body = nn.Sequential(layers)
    layers["fc"] = nn.Linear(flat_features(body, in_shape, "cnn6"), num_classes, bias=bias)
    return nn.Sequential(layers)
