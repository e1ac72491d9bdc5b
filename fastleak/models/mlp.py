"""A fully connected network."""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

from torch import nn

from fastleak._checks import positive_ints
from fastleak.models.layers import ACTIVATIONS
from fastleak.models.registry import register


@register("mlp")
def mlp(num_classes: int, in_shape: tuple[int, ...], hidden: Sequence[int] = (512, 256), act: str = "relu",
        bias: bool = True) -> nn.Module:
    """Flatten, then ``Linear -> act`` for each width in ``hidden``, then the Linear classifier.
    Default init of ``nn.Linear``."""
    make_act = ACTIVATIONS.get(act)
    widths = positive_ints(tuple(hidden), "hidden") if hidden else ()
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    fan_in = math.prod(in_shape)
    for i, h in enumerate(widths):
        layers[f"linear{i}"] = nn.Linear(fan_in, h)
        layers[f"act{i}"] = make_act()
        fan_in = h
    layers["fc"] = nn.Linear(fan_in, num_classes, bias=bias)
    return nn.Sequential(layers)
