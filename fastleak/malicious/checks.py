"""Checks that a bin's recovered input is one sample rather than a combination of several.

A bin holding several samples yields ``sum c_i x_i / sum c_i``: with coefficients of one sign a
convex combination, with mixed signs an extrapolation. Each check is
``check(images [M, N] float64, rows [M], block, bias_diff [K], config) -> bool [M]``: the inputs
of the bins ``rows`` (the occupied ones), True where the input passes; registered with
``@register("name")``:

* ``interval`` (imprint blocks): the input's measurement lies in its bin's interval. A single
  sample's does by construction; an extrapolation leaves the interval when the coefficients'
  signs differ enough. A convex combination stays inside, so this check alone misses those.
* ``activation`` (ReLU rows that are bins by themselves: trap weights): the input fires no row that the
  gradient shows empty. A single sample fires exactly the rows it fired in the client's pass; a
  combination of several can fire rows that none of them fired.
* ``range``: every value lies in the data's ``pixel_range``. Combinations with coefficients of
  mixed signs overshoot it; convex ones do not.
* ``grid``: every value lies within ``grid_tolerance`` steps of the data's quantisation grid
  (``pixel_levels``: 255 for 8-bit images scaled to [0, 1], as every ``fastleak.data`` dataset
  is). A single sample comes back on its grid up to float rounding (at most 0.06 steps in float32
  FedSGD at B = 256 on MNIST); a combination of two different samples with a generic weight
  falls between grid points wherever they differ, convex or not (0.34 steps and more there).
  This is the check that catches convex combinations; it assumes the client's inputs are the quantised pixels (no
  normalisation the server does not know) and clean gradients (noise moves every value off the
  grid).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from fastleak._registry import Registry

if TYPE_CHECKING:
    from fastleak.malicious.recovery import RecoveryConfig

CheckFn = Callable[[torch.Tensor, torch.Tensor, nn.Module, torch.Tensor, "RecoveryConfig"], torch.Tensor]
CHECKS: Registry[CheckFn] = Registry("single-sample check")


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register ``check(images, rows, block, bias_diff, config) -> bool [M]`` under ``name``."""
    return CHECKS.register(name)


def names() -> tuple[str, ...]:
    return CHECKS.names()


@register("interval")
def in_bin_interval(images: torch.Tensor, rows: torch.Tensor, block: nn.Module, bias_diff: torch.Tensor,
                    config: "RecoveryConfig") -> torch.Tensor:
    if not hasattr(block, "bin_intervals"):
        return torch.ones(len(images), dtype=torch.bool, device=images.device)
    lower, upper = block.bin_intervals()
    width = upper - lower
    width[-1] = width[-2]  # the cumulative block's last bin is open above; its slack is its neighbour's
    slack = config.interval_tolerance * width
    m = images @ block.measurement
    return (m >= (lower - slack)[rows]) & (m <= (upper + slack)[rows])


@register("activation")
def fires_only_occupied_rows(images: torch.Tensor, rows: torch.Tensor, block: nn.Module, bias_diff: torch.Tensor,
                             config: "RecoveryConfig") -> torch.Tensor:
    if block.cumulative or hasattr(block, "bin_intervals"):
        return torch.ones(len(images), dtype=torch.bool, device=images.device)
    weight = block.bins.weight.detach().to(torch.float64)
    bias = block.bins.bias.detach().to(torch.float64)
    fired = images @ weight.T + bias > 0                         # [candidates, rows]
    silent = bias_diff.abs() <= config.empty_tolerance * bias_diff.abs().max().clamp_min(1e-300)
    return ~(fired & silent).any(1)


@register("range")
def in_pixel_range(images: torch.Tensor, rows: torch.Tensor, block: nn.Module, bias_diff: torch.Tensor,
                   config: "RecoveryConfig") -> torch.Tensor:
    if config.pixel_range is None:
        return torch.ones(len(images), dtype=torch.bool, device=images.device)
    lo, hi = config.pixel_range
    slack = config.range_tolerance * (hi - lo)
    return (images.amin(1) >= lo - slack) & (images.amax(1) <= hi + slack)


@register("grid")
def on_pixel_grid(images: torch.Tensor, rows: torch.Tensor, block: nn.Module, bias_diff: torch.Tensor,
                  config: "RecoveryConfig") -> torch.Tensor:
    if config.pixel_levels is None:
        return torch.ones(len(images), dtype=torch.bool, device=images.device)
    lo = config.pixel_range[0] if config.pixel_range is not None else 0.0
    hi = config.pixel_range[1] if config.pixel_range is not None else 1.0
    steps = (images - lo) * (config.pixel_levels / (hi - lo))
    return (steps - steps.round()).abs().amax(1) <= config.grid_tolerance
