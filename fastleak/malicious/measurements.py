"""What an imprint layer measures: linear functions of the flattened input, one per group of rows.

A measurement is ``directions(num_features, count, generator, public) -> Tensor [count, N]``
(float64), registered with ``@register("name")``; an input ``x`` measures ``directions @
x.flatten()``. ``public`` is the server's own data [M, N] (float64), which data-driven
measurements use and the others ignore.

Several measurements cut a batch into bins several ways: a sample that shares its bin along one
direction is often alone along another, and once read there it can be subtracted from the bins
it shares ("peeling", ``fastleak.malicious.recovery``). Directions along which the data spread
and that are uncorrelated on it (``pca``) cut best.
"""
from __future__ import annotations

from typing import Callable

import torch

from fastleak._checks import positive_int
from fastleak._registry import Registry
from fastleak.errors import InvalidValueError

MeasurementFn = Callable[[int, int, torch.Generator, "torch.Tensor | None"], torch.Tensor]
MEASUREMENTS: Registry[MeasurementFn] = Registry("measurement")


def register(name: str) -> Callable[[MeasurementFn], MeasurementFn]:
    """Register ``directions(num_features, count, generator, public) -> Tensor [count, N]`` under ``name``."""
    return MEASUREMENTS.register(name)


def names() -> tuple[str, ...]:
    return MEASUREMENTS.names()


def directions(name: str, num_features: int, count: int = 1, seed: int = 0,
               public: torch.Tensor | None = None) -> torch.Tensor:
    """The float64 directions [count, num_features] of measurement ``name`` (seeded, deterministic),
    fitted on the server's ``public`` data [M, ...] where the measurement uses data."""
    fn = MEASUREMENTS.get(name)
    flat = None if public is None else public.detach().flatten(1).to("cpu", torch.float64)
    out = fn(positive_int(num_features, "num_features"), positive_int(count, "count"),
             torch.Generator().manual_seed(seed), flat)
    return out.to(torch.float64)


def weights(name: str, num_features: int, seed: int = 0, public: torch.Tensor | None = None) -> torch.Tensor:
    """The float64 weights [num_features] of a single measurement ``name``."""
    return directions(name, num_features, 1, seed, public)[0]


@register("mean")
def mean_brightness(num_features: int, count: int, generator: torch.Generator,
                    public: torch.Tensor | None) -> torch.Tensor:
    """The mean of the input's values: an image's mean brightness ("Robbing the Fed"); one direction."""
    if count != 1:
        raise InvalidValueError(f"the 'mean' measurement is one direction, got count={count}; use 'pca' or 'random' "
                                "for several")
    return torch.full((1, num_features), 1.0 / num_features, dtype=torch.float64)


@register("random")
def random_projection(num_features: int, count: int, generator: torch.Generator,
                      public: torch.Tensor | None) -> torch.Tensor:
    """Seeded Gaussian directions with zero mean and norm 1, orthogonal to each other, so that constant
    inputs all measure 0 and no direction just repeats the brightness."""
    w = torch.randn(count, num_features, generator=generator, dtype=torch.float64)
    if num_features == 1:
        return torch.ones(count, 1, dtype=torch.float64)
    w = w - w.mean(1, keepdim=True)
    if count > 1 and count < num_features:
        w = torch.linalg.qr(w.T).Q.T
    return w / w.norm(dim=1, keepdim=True).clamp_min(1e-300)


@register("pca")
def principal_directions(num_features: int, count: int, generator: torch.Generator,
                         public: torch.Tensor | None) -> torch.Tensor:
    """The ``count`` principal directions of the server's public data (centred), the first the one it
    spreads most along; each signed so that the public data's mean measures at least 0."""
    if public is None:
        raise InvalidValueError("the 'pca' measurement is fitted on the server's public data; pass public=")
    if public.shape[1] != num_features or len(public) < 2:
        raise InvalidValueError(f"public must hold at least 2 samples of {num_features} features for 'pca', got "
                                f"shape {tuple(public.shape)}")
    if count > min(len(public) - 1, num_features):
        raise InvalidValueError(f"'pca' gives at most {min(len(public) - 1, num_features)} directions for this public "
                                f"data, got count={count}")
    mean = public.mean(0)
    w = _top_right_singular_vectors(public - mean, count, generator)
    sign = torch.where(w @ mean < 0, -1.0, 1.0).to(w)
    return w * sign[:, None]


def _top_right_singular_vectors(a: torch.Tensor, count: int, generator: torch.Generator, iterations: int = 6) -> torch.Tensor:
    """The ``count`` leading right singular vectors [count, N] of ``a`` [M, N] by a seeded randomised range
    finder with power iterations (Halko et al.): a few passes over ``a`` instead of its full SVD."""
    width = min(count + 10, *a.shape)
    basis = torch.linalg.qr(a @ torch.randn(a.shape[1], width, generator=generator, dtype=a.dtype)).Q
    for _ in range(iterations):
        basis = torch.linalg.qr(a @ torch.linalg.qr(a.T @ basis).Q).Q
    _, _, v = torch.linalg.svd(basis.T @ a, full_matrices=False)
    return v[:count].clone()
