"""A prior defined outside fastleak, as a user's module would: registered by decorator on import."""
from __future__ import annotations

from fastleak.attacks import Prior, Tap, prior


@prior("brightness")
class Brightness(Prior):
    """Squared distance of each dummy batch's mean pixel to ``target``."""

    target: float = 0.5

    def check(self) -> None:
        if not 0 <= self.target <= 1:
            raise ValueError(f"prior brightness: target must lie in [0, 1], got {self.target!r}")

    def term(self, x, problem):
        return (x.flatten(1).mean(1) - self.target).pow(2)


@prior("activation")
class ActivationEnergy(Prior):
    """The mean squared input of every ReLU in the client's forward pass (measured by a tap)."""

    def tap(self):
        return Tap(lambda m: type(m).__name__ == "ReLU", lambda m, x: x.pow(2).mean())

    def term(self, x, problem):
        return problem.tapped(self.name)
