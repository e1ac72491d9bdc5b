"""How finely the shared tensors pin down each bin's input: quantised updates are known only to a step.

A defense that quantises each shared tensor (``fastleak.defenses`` ``quantize``) rounds every
entry to a lattice ``offset + i * step``. A bin's input ``x = d / b`` (weight difference over
bias difference) is then known to within ``step_w / 2 / |b|`` from the weights plus ``|x| step_b
/ 2 / |b|`` from the bias, in pixel units; in grid steps that is ``error_bound``. Beyond half a
grid step the grid no longer tells a sample's pixel values apart, and a candidate that lands on
the grid may hold the wrong values (8-bit quantisation rounds a dark bin's row to a few levels
that scale onto the grid exactly), so ``checks.resolution`` certifies only bins whose bound is
under half a step (``checks.RESOLUTION_STEPS``). Under that bound, rounding the candidate to the
grid gives the sample exactly.

A defense that sparsifies each tensor (``topk``, ``prune``) zeroes the entries below one
magnitude: the surviving entries of a bin are exact, its zero pixels are not, and a candidate with
zero pixels could be a client's image with its darkest pixels blacked out. ``sparsity_floor``
finds that magnitude, and a candidate with zero pixels is then known only to ``floor / |b|``.

``lattice(t)`` finds the step from a strided sample of ``t``'s values: a common divisor of their
gaps, by Euclid's algorithm on real numbers (each remainder is a multiple of the step as long as
the gaps are; each candidate is the mean step of the multiples it gives, so that rounding
averages out), up to the float rounding of the values. A quantised tensor has one with at most
``MAX_LEVELS`` steps across its range; the sums of a clean gradient share none coarser than their
rounding. A clean bin whose row is its own pixel grid (a single occupied bin, as with one sample)
is a lattice too, of step ``|b| / levels``; so is a bin quantised losslessly. Neither changes the
sample, so a weight lattice of exactly one grid step through zero costs a bin nothing. A float32
update ``W_after - W_before`` is a fine lattice of the parameters' float spacing, which costs a
bin nothing either; but its spacing differs from entry to entry (the parameters' magnitudes do),
so that update's own rounding is bounded directly: each of ``steps`` float32 SGD steps rounds an
entry to half the float spacing of the parameter it updates (``update_rounding``), which the
server knows from the model it sent. A bin's input from an update whose rows hold values of
several sizes is then known only to that rounding over the bin's (small) weight change.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fastleak._checks import all_finite

LATTICE_TOLERANCE = 1e-3   # of a step: how far a bin's lattice may be from one grid step and still be its grid
SAMPLES = 4096
MIN_LEVELS = 8
MAX_LEVELS = 1 << 17
ROUNDING = {torch.float32: 2.0 ** -24, torch.float64: 2.0 ** -53}


@dataclass(frozen=True)
class Lattice:
    """Values ``offset + i * step``; ``offset`` in [0, step)."""

    step: float
    offset: float


def lattice(t: torch.Tensor, samples: int = SAMPLES) -> Lattice | None:
    """The lattice the values of ``t`` lie on, from up to ``samples`` of them (every ``numel /
    samples``-th), or None when they hold fewer than ``MIN_LEVELS`` distinct values or share no step
    coarser than ``1 / MAX_LEVELS`` of their range (module docs)."""
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return None
    stride = max(1, flat.numel() // samples)
    values = torch.unique(flat[::stride][:samples].to("cpu", torch.float64))
    if len(values) < MIN_LEVELS or not all_finite(values):
        return None
    gaps = values[1:] - values[:-1]
    span = float(values[-1] - values[0])
    noise = 4 * float(values.abs().max()) * ROUNDING.get(t.dtype, ROUNDING[torch.float32])
    step = float(gaps.min())
    while step > 0 and step * MAX_LEVELS >= span:
        step = _refined(gaps, step, noise)
        multiple = (gaps / step).round().clamp_min(1)
        remainder = (gaps - multiple * step).abs()
        off = remainder > 2 * noise
        if not bool(off.any()):
            offset = float(torch.remainder(values[0], step))
            return Lattice(step, 0.0 if min(offset, step - offset) <= 2 * noise else offset)
        step = min(float(remainder[off].min()), step / 2)
    return None


def _refined(gaps: torch.Tensor, step: float, noise: float) -> float:
    """``step`` re-estimated as the mean step of the gaps' multiples of it, taking in larger gaps as the
    estimate sharpens (a gap's multiple is known while the step's error times it stays under a
    quarter step), so that the values' rounding averages out."""
    total = 1.0
    for _ in range(16):
        usable = gaps <= 0.25 * step * step * total / (2 * noise)
        if not bool(usable.any()):
            return step
        multiple = (gaps[usable] / step).round().clamp_min(1)
        step, total = float(gaps[usable].sum() / multiple.sum()), float(multiple.sum())
        if bool(usable.all()):
            break
    return step


def error_bound(weights: Lattice | None, bias: Lattice | None, bias_diff: torch.Tensor, largest: torch.Tensor,
                steps_per_unit: float) -> torch.Tensor:
    """The largest error, in grid steps, of each bin's input [M] given its bias difference [M] and
    largest absolute value [M] (module docs); 0 without lattices. A weight lattice through zero whose
    step is one grid step of the bin (to ``LATTICE_TOLERANCE``) is the bin's own grid: no error."""
    out = torch.zeros_like(bias_diff, dtype=torch.float64)
    scale = bias_diff.to(torch.float64).abs().reciprocal() * steps_per_unit
    if weights is not None:
        rho = weights.step * scale
        own_grid = ((rho - 1).abs() <= LATTICE_TOLERANCE) & (weights.offset == 0.0)
        out = out + torch.where(own_grid, 0.0, rho / 2)
    if bias is not None:
        out = out + largest.to(torch.float64).abs() * (bias.step / 2) * scale
    return out


MANTISSA = {torch.float32: 24, torch.float64: 53}
# A tensor whose rows (most of those with both zero and non-zero entries) have their smallest
# non-zero magnitude within this factor of the tensor's is taken as sparsified at that floor.
FLOOR_SPREAD = 1.1
FLOOR_ROWS = 4   # fewer partly zeroed rows in a group than this cannot tell a floor from chance


def sparsity_floor(weight: torch.Tensor, occupied: torch.Tensor, groups: int = 1) -> float | None:
    """The magnitude below which a sparsifying defense (top-k, magnitude pruning) zeroed the entries of
    ``weight`` [K, D], judged on its ``occupied`` rows [K] (bool), or None where it shows none.

    Such a defense keeps the entries above one threshold per tensor, so every partly zeroed row has
    its smallest non-zero magnitude just above that threshold. A clean gradient's rows are a
    sample's pixels times the row's own scale: their smallest non-zero magnitudes (the darkest
    pixel's) spread with the scales, and zero pixels (dark backgrounds) say nothing. Rows that hold
    the same samples share their darkest pixels, so the rows are judged in ``groups`` of consecutive
    rows that hold disjoint samples (one per direction of an imprint block), and every group with
    enough partly zeroed rows must show the floor. A zeroed entry of a sparsified row was up to the
    floor in magnitude, so a bin's zero pixels are then known only to ``floor / |b|``."""
    rows = weight.detach().reshape(len(occupied), -1)
    used = occupied.to(rows.device).nonzero().squeeze(1)
    zeros = (rows.index_select(0, used) == 0).sum(1)  # the occupied rows only: most bins are empty
    partly = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
    partly[used[(zeros > 0) & (zeros < rows.shape[1])]] = True
    floors, judged = [], 0
    for part, chosen in zip(rows.chunk(groups), partly.chunk(groups)):
        if int(chosen.sum()) < FLOOR_ROWS:
            continue
        judged += 1
        part = part[chosen].abs()  # the smallest magnitudes are entries, exact in any precision
        smallest = torch.where(part == 0, torch.inf, part).amin(1).to(torch.float64)
        floor = float(smallest.min())
        if float((smallest <= FLOOR_SPREAD * floor).double().mean()) >= 0.5:
            floors.append(floor)
    # one threshold cut the whole tensor: every group that can tell shows it
    return min(floors) if floors and len(floors) == judged else None


def update_rounding(before: torch.Tensor, steps: int) -> torch.Tensor:
    """The most ``steps`` float SGD steps can round each row of an update of ``before`` [K, ...] (or
    each entry of a [K] tensor): ``steps`` times half the float spacing of the row's largest
    magnitude (twice that, for a magnitude that crosses a power of two); [K], float64."""
    rows = before.detach().reshape(len(before), -1).abs().amax(1).to("cpu", torch.float64)
    _, exponent = torch.frexp(rows)
    return steps * torch.ldexp(torch.ones_like(rows), exponent - MANTISSA.get(before.dtype, 24))
