"""A user's own model class, imported by the audit test as tests.cli.user_models:TinyNet."""
from torch import nn


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Sigmoid(), nn.Flatten())
        self.head = nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        return self.head(self.features(x))
