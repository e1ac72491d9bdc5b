"""Checks that a bin's recovered input is one sample rather than a combination of several.

A bin holding several samples yields ``sum c_i x_i / sum c_i``: with coefficients of one sign a
convex combination, with mixed signs an extrapolation. Each check is ``check(candidates, block,
config) -> bool [M]``, True where the candidate passes, registered with ``@register("name")``;
``Candidates`` holds the occupied bins' inputs and the statistics ``fastleak.ops.imprint_certify``
computed for them in the same pass:

* ``interval`` (imprint blocks): the input's measurement lies in its bin's interval. A single
  sample's does by construction; an extrapolation leaves the interval when the coefficients'
  signs differ enough. A convex combination stays inside, so this check alone misses those.
* ``activation`` (ReLU rows that are bins by themselves: trap weights): the input fires no row that
  the gradient shows empty. A single sample fires exactly the rows it fired in the client's pass; a
  combination of several can fire rows that none of them fired. It multiplies every candidate with
  the layer, so it runs last, on the candidates that passed every other check.
* ``range``: every value lies in the data's ``pixel_range``. Combinations with coefficients of
  mixed signs overshoot it; convex ones do not.
* ``grid``: every value lies within ``grid_tolerance`` steps of the data's quantisation grid
  (``pixel_levels``: 255 for 8-bit images scaled to [0, 1], as every ``fastleak.data`` dataset
  is). A single sample comes back on its grid up to float rounding (at most 0.06 steps in float32
  FedSGD at B = 256 on MNIST); a combination of two different samples with a generic weight
  falls between grid points wherever they differ, convex or not (0.34 steps and more there).
  This is the check that catches convex combinations; it assumes the client's inputs are the
  quantised pixels (no normalisation the server does not know) and clean gradients (noise moves
  every value off the grid).
* ``resolution``: what the shared tensors say about a bin's input is fine enough to tell its
  pixel values apart: ``error_bound`` (``fastleak.malicious.resolution``: the largest error, in grid
  steps, that quantisation or an update's float rounding allows in the bin's values) is under
  ``RESOLUTION_STEPS``, half a step, so that rounding gives every value its own level. A candidate
  on the grid with a coarser bound is an artefact, not necessarily the client's sample (8-bit
  quantisation puts dark bins' candidates on the grid at the wrong values; a float32 update of a
  bin whose weight change is small rounds some of its values to the neighbouring level).
  An update's candidate re-scaled onto the grid has no bound when another scale tried fits the
  grid about as well (``rescale.ambiguous``): an image of few grey levels fits several.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from fastleak._registry import Registry
from fastleak.ops.imprint_certify import STATS

if TYPE_CHECKING:
    from fastleak.malicious.recovery import RecoveryConfig

OFF_GRID, LOW, HIGH, MEASURED, FINITE = range(len(STATS))


@dataclass(frozen=True)
class Candidates:
    """The occupied bins ``rows`` [M] being judged: their inputs ``images`` [M, N], ``stats`` [M, 5]
    (``fastleak.ops.imprint_certify``, float64), ``error_bound`` [M] (grid steps) and the bias
    differences of every bin, ``bias_diff`` [K]."""

    rows: torch.Tensor
    images: torch.Tensor
    stats: torch.Tensor
    error_bound: torch.Tensor
    bias_diff: torch.Tensor


CheckFn = Callable[[Candidates, nn.Module, "RecoveryConfig"], torch.Tensor]
CHECKS: Registry[CheckFn] = Registry("single-sample check")
LAST = ("activation",)  # run only on the candidates that passed every other check
RESOLUTION_STEPS = 0.5


def register(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register ``check(candidates, block, config) -> bool [M]`` under ``name``."""
    return CHECKS.register(name)


def names() -> tuple[str, ...]:
    return CHECKS.names()


def _all(candidates: Candidates) -> torch.Tensor:
    return torch.ones(len(candidates.rows), dtype=torch.bool, device=candidates.stats.device)


@register("interval")
def in_bin_interval(candidates: Candidates, block: nn.Module, config: "RecoveryConfig") -> torch.Tensor:
    if not hasattr(block, "bin_intervals"):
        return _all(candidates)
    lower, upper = block.bin_intervals()
    width = upper - lower
    if block.cumulative:
        width[-1] = width[-2]  # the cumulative block's last bin is open above; its slack is its neighbour's
    slack = config.interval_tolerance * width
    rows = candidates.rows.to(lower.device)
    m = candidates.stats[:, MEASURED].to(lower)
    return ((m >= (lower - slack)[rows]) & (m <= (upper + slack)[rows])).to(candidates.stats.device)


@register("activation")
def fires_only_occupied_rows(candidates: Candidates, block: nn.Module, config: "RecoveryConfig") -> torch.Tensor:
    if block.cumulative or hasattr(block, "bin_intervals") or not len(candidates.rows):
        return _all(candidates)
    weight = block.bins.weight.detach().to(torch.float64)
    bias = block.bins.bias.detach().to(torch.float64)
    fired = candidates.images.to(weight) @ weight.T + bias > 0               # [candidates, rows]
    diff = candidates.bias_diff.to(weight)
    silent = diff.abs() <= config.empty_tolerance * diff.abs().max().clamp_min(1e-300)
    return ~(fired & silent).any(1)


@register("range")
def in_pixel_range(candidates: Candidates, block: nn.Module, config: "RecoveryConfig") -> torch.Tensor:
    if config.pixel_range is None:
        return _all(candidates)
    lo, hi = config.pixel_range
    slack = config.range_tolerance * (hi - lo)
    return (candidates.stats[:, LOW] >= lo - slack) & (candidates.stats[:, HIGH] <= hi + slack)


@register("grid")
def on_pixel_grid(candidates: Candidates, block: nn.Module, config: "RecoveryConfig") -> torch.Tensor:
    if config.pixel_levels is None:
        return _all(candidates)
    return candidates.stats[:, OFF_GRID] <= config.grid_tolerance


@register("resolution")
def fine_enough(candidates: Candidates, block: nn.Module, config: "RecoveryConfig") -> torch.Tensor:
    if config.pixel_levels is None:
        return _all(candidates)
    return candidates.error_bound < RESOLUTION_STEPS
