"""Initial dummy images: registered functions, chosen by ``AttackConfig.init``.

An initialisation is ``fn(shape, generator) -> Tensor``: ``shape`` is (Q, B, C, H, W) (Q dummy batches
of B images) and the images are drawn with ``generator``, on its device, in [0, 1] or around it (a
boxed attack clamps them after its first step). Register your own with ``@initialisation("name")``.

* ``uniform``: every pixel U(0, 1).
* ``gaussian``: every pixel 0.5 + 0.25 N(0, 1), a standard normal in the units of a dataset
  normalised by mean 0.5 and standard deviation 0.25 (breaching's ``randn``, which draws N(0, 1)
  inside the normalisation).
* ``patterned-4``, ``patterned-16``: a ``gaussian`` tile of 4x4 (16x16) pixels per image and channel,
  repeated over the image (Wei et al. 2020; breaching's ``patterned-4``, ``patterned-16``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from fastleak._registry import Registry

Initialisation = Callable[[tuple[int, ...], torch.Generator], Tensor]

INITS: Registry[Initialisation] = Registry("initialisation")


def initialisation(name: str) -> Callable[[Initialisation], Initialisation]:
    """Register the decorated ``fn(shape, generator)`` as initialisation ``name``."""
    return INITS.register(name)


@initialisation("uniform")
def uniform(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=generator, device=generator.device)


@initialisation("gaussian")
def gaussian(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return 0.5 + 0.25 * torch.randn(shape, generator=generator, device=generator.device)


def tiled(width: int, base: Initialisation) -> Initialisation:
    """An initialisation drawing a ``width`` x ``width`` tile per image and channel with ``base`` and
    repeating it over the image (cut at the right and bottom edges)."""

    def draw(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        *lead, h, w = shape
        tile = base((*lead, width, width), generator)
        reps = (1,) * len(lead) + (-(-h // width), -(-w // width))
        return tile.repeat(reps)[..., :h, :w].contiguous()

    return draw


for _width in (4, 16):
    initialisation(f"patterned-{_width}")(tiled(_width, gaussian))
