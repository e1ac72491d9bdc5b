"""How finely the shared tensors pin down each bin's input: quantised updates are known only to a step.

A defense that quantises each shared tensor (``fastleak.defenses`` ``quantize``) rounds every
entry to a lattice ``offset + i * step``. A bin's input ``x = d / b`` (weight difference over
bias difference) is then known to within ``step_w / 2 / |b|`` from the weights plus ``|x| step_b
/ 2 / |b|`` from the bias, in pixel units; in grid steps that is ``error_bound``. Beyond half a
grid step the grid no longer tells a sample's pixel values apart, and a candidate that lands on
the grid may hold the wrong values (8-bit quantisation rounds a dark bin's row to a few levels
that scale onto the grid exactly), so ``checks.resolution`` certifies only bins whose bound is
within ``grid_tolerance``. Under that bound, rounding the candidate to the grid gives the sample
exactly.

``lattice(t)`` finds the step from a strided sample of ``t``'s values: their distinct values'
gaps are whole multiples of one step (to ``LATTICE_TOLERANCE`` of it) for a quantised tensor,
while the sums of a clean gradient fall anywhere. A clean bin whose row is its own pixel grid (a
single occupied bin, as with one sample) is a lattice too, of step ``|b| / levels``; so is a bin
quantised losslessly. Neither changes the sample, so a weight lattice of exactly one grid step
through zero costs a bin nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

LATTICE_TOLERANCE = 1e-2   # float32 rounding of a 16-bit quantiser's levels stays under 0.7% of a step
SAMPLES = 2048
MIN_LEVELS = 3


@dataclass(frozen=True)
class Lattice:
    """Values ``offset + i * step``; ``offset`` in [0, step)."""

    step: float
    offset: float


def lattice(t: torch.Tensor, samples: int = SAMPLES) -> Lattice | None:
    """The lattice the values of ``t`` lie on, from up to ``samples`` of them (every ``numel /
    samples``-th), or None when their gaps share no step (module docs). The step is the smallest
    gap, or a half to an eighth of it when the gaps are odd multiples of a finer step."""
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return None
    stride = max(1, flat.numel() // samples)
    values = torch.unique(flat[::stride][:samples].to("cpu", torch.float64))
    if len(values) < MIN_LEVELS or not bool(torch.isfinite(values).all()):
        return None
    gaps = values[1:] - values[:-1]
    smallest = float(gaps.min())
    for divisor in range(1, 9):
        step = smallest / divisor
        ratio = gaps / step
        if bool(((ratio - ratio.round()).abs() <= LATTICE_TOLERANCE).all()):
            offset = float(torch.remainder(values[0], step))
            return Lattice(step, offset if offset < step * (1 - LATTICE_TOLERANCE) else 0.0)
    return None


def error_bound(weights: Lattice | None, bias: Lattice | None, bias_diff: torch.Tensor, largest: torch.Tensor,
                steps_per_unit: float) -> torch.Tensor:
    """The largest error, in grid steps, of each bin's input [M] given its bias difference [M] and
    largest absolute value [M] (module docs); 0 without lattices. A weight lattice through zero whose
    step is one grid step of the bin (to ``LATTICE_TOLERANCE``) is the bin's own grid: no error."""
    out = torch.zeros_like(bias_diff, dtype=torch.float64)
    scale = bias_diff.to(torch.float64).abs().reciprocal() * steps_per_unit
    if weights is not None:
        rho = weights.step * scale
        own_grid = ((rho - 1).abs() <= LATTICE_TOLERANCE) & (weights.offset <= LATTICE_TOLERANCE * weights.step)
        out = out + torch.where(own_grid, 0.0, rho / 2)
    if bias is not None:
        out = out + largest.to(torch.float64).abs() * (bias.step / 2) * scale
    return out
