"""The LeNet of "Deep Leakage from Gradients" (Zhu et al. 2019), as in the authors' code."""
from __future__ import annotations

from torch import nn

from fastleak.models.layers import ACTIVATIONS, flat_features, image_shape
from fastleak.models.registry import register


class LeNet(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, ...], bias: bool = True,
                 act: str = "sigmoid") -> None:
        super().__init__()
        channels = image_shape(in_shape, "lenet")[0]
        make_act = ACTIVATIONS.get(act)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 12, kernel_size=5, padding=2, stride=2), make_act(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2), make_act(),
            nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1), make_act(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(flat_features(self.body, in_shape, "lenet"), num_classes, bias=bias)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(module.weight, -0.5, 0.5)
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -0.5, 0.5)

    def forward(self, x):
        return self.fc(self.body(x))


@register("lenet")
def lenet(num_classes: int, in_shape: tuple[int, ...], bias: bool = True, act: str = "sigmoid") -> nn.Module:
    """DLG LeNet: three 5x5 convs with 12 channels (strides 2, 2, 1; padding 2), each followed by
    ``act`` (sigmoid), then one FC layer (768 -> classes for 32x32 inputs, 588 for 28x28).
    All weights and biases are drawn from U(-0.5, 0.5)."""
    return LeNet(num_classes, in_shape, bias=bias, act=act)
