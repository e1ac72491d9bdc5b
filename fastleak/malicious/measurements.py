"""What an imprint layer measures: one linear function of the flattened input, the same in every row.

A measurement is ``weights(num_features, generator) -> Tensor [num_features]`` (float64), registered
with ``@register("name")``; an input ``x`` measures ``weights @ x.flatten()``.
"""
from __future__ import annotations

from typing import Callable

import torch

from fastleak._registry import Registry

MeasurementFn = Callable[[int, torch.Generator], torch.Tensor]
MEASUREMENTS: Registry[MeasurementFn] = Registry("measurement")


def register(name: str) -> Callable[[MeasurementFn], MeasurementFn]:
    """Register ``weights(num_features, generator) -> Tensor [num_features]`` under ``name``."""
    return MEASUREMENTS.register(name)


def names() -> tuple[str, ...]:
    return MEASUREMENTS.names()


def weights(name: str, num_features: int, seed: int = 0) -> torch.Tensor:
    """The float64 weights [num_features] of measurement ``name`` (seeded, deterministic)."""
    fn = MEASUREMENTS.get(name)
    return fn(num_features, torch.Generator().manual_seed(seed)).to(torch.float64)


@register("mean")
def mean_brightness(num_features: int, generator: torch.Generator) -> torch.Tensor:
    """The mean of the input's values: an image's mean brightness ("Robbing the Fed")."""
    return torch.full((num_features,), 1.0 / num_features, dtype=torch.float64)


@register("random")
def random_projection(num_features: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded Gaussian direction with zero mean and norm 1, so constant inputs all measure 0
    and the measurement does not just repeat the brightness."""
    w = torch.randn(num_features, generator=generator, dtype=torch.float64)
    w = w - w.mean()
    return w / w.norm().clamp_min(1e-300) if num_features > 1 else torch.ones(1, dtype=torch.float64)
