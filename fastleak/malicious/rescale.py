"""Re-scaling a bin's input onto the pixel grid, for updates whose bias change is imprecise.

A bin holding one sample ``x`` has the weight difference ``d = s x`` for an unknown scalar ``s``
(the sum of the sample's loss coefficients over the client's steps). Its bias difference is
``s`` too, and ``d / s`` is the sample. In a FedAvg update ``W_after - W_before`` each entry is
rounded to the float32 spacing of the parameter it updates: the bin layer's bias holds a
threshold of the size of the measurement, so its small change keeps only a few significant
digits, while the weight rows are far smaller and their change stays precise. The direction of
``d`` is then right and only the scale is off (by about 1% after 4 local steps at lr 0.1 on
MNIST).

For 8-bit data the scale can be read off the grid instead: the pixel ``j`` with the largest
``|d_j|`` must take one of the grid's values ``v``, so ``s = d_j / v``; of the grid levels within
``search`` steps of an estimate, the one whose image lies closest to the grid everywhere wins, if
it beats the estimate. The estimate is the bias-scaled image, or, for bins of a measurement,
the direction scaled so that it measures its bin's midpoint (``measurement_estimate``), which is
within half a bin width of the truth whatever the rounding of the bias. A combination of several samples has no
scale that puts all its values on the grid, so the grid check still rejects it afterwards.
"""
from __future__ import annotations

import torch


def off_grid(images: torch.Tensor, levels: int, low: float, high: float) -> torch.Tensor:
    """The largest distance of each row of ``images`` [K, N] to the grid, in grid steps; [K]."""
    steps = (images - low) * (levels / (high - low))
    return (steps - steps.round()).abs().amax(1)


def measurement_estimate(direction: torch.Tensor, measurement: torch.Tensor, lower: torch.Tensor,
                         upper: torch.Tensor) -> torch.Tensor:
    """Each row of ``direction`` [K, N] scaled to measure its bin's midpoint by ``measurement`` ([N],
    or one per row [K, N]); NaN rows where the bin is open or the direction measures 0."""
    measured = direction @ measurement if measurement.dim() == 1 else (direction * measurement).sum(1)
    target = (lower + upper) / 2
    usable = torch.isfinite(target) & (measured != 0)
    scale = torch.where(usable, target / torch.where(usable, measured, 1.0), torch.nan)
    return direction * scale[:, None]


def _scaled(direction: torch.Tensor, d_j: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``direction`` scaled so that its brightest entry ``d_j`` takes ``value``, and whether it can be."""
    usable = (value != 0) & (d_j != 0)
    return direction / torch.where(usable, d_j / torch.where(usable, value, 1.0), 1.0)[:, None], usable


def snap_to_grid(direction: torch.Tensor, estimate: torch.Tensor, levels: int, low: float, high: float,
                 search: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of ``estimate`` [K, N] (each bin's input, ``direction`` [K, N] times some scale)
    re-scaled onto the grid of ``levels`` steps over [low, high] where a scale within ``search``
    steps of the estimate's lies closer to it (module docs), and for each row the distance to the
    grid (in steps) of the best other scale within ``4 * search`` steps of the chosen one: a row
    that another scale puts about as near the grid has no certain scale (``ambiguous``). Images of
    few grey levels are such rows: with levels every 255/n, a scale of 1 + n/255 maps them onto the
    grid again (n = 4 puts them within 0.008 steps of it, n = 9 within 0.03). float64 in, float64 out."""
    step = (high - low) / levels
    brightest = direction.abs().argmax(1, keepdim=True)
    d_j = direction.gather(1, brightest).squeeze(1)
    level_j = ((estimate.gather(1, brightest).squeeze(1) - low) / step).round()
    level_j = torch.where(torch.isfinite(level_j), level_j, 0.0)
    images = torch.where(torch.isfinite(estimate), estimate, 0.0)
    best, best_off = images, off_grid(images, levels, low, high)
    best_level = torch.full_like(level_j, torch.nan)
    for delta in range(-search, search + 1):
        candidate, usable = _scaled(direction, d_j, low + (level_j + delta) * step)
        off = torch.where(usable, off_grid(candidate, levels, low, high), torch.inf)
        better = off < best_off
        best = torch.where(better[:, None], candidate, best)
        best_off = torch.where(better, off, best_off)
        best_level = torch.where(better, level_j + delta, best_level)
    centre = torch.where(torch.isfinite(best_level), best_level, level_j)
    other = torch.full_like(best_off, torch.inf)
    for delta in range(-4 * search, 4 * search + 1):
        candidate, usable = _scaled(direction, d_j, low + (centre + delta) * step)
        off = torch.where(usable & (centre + delta != best_level), off_grid(candidate, levels, low, high), torch.inf)
        other = torch.minimum(other, off)
    return best, other


def ambiguous(best: torch.Tensor, other: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Whether another scale fits the grid about as well as the best one: within ``tolerance`` steps
    and less than 4 times the best's distance plus 0.002 steps (a clean sample's own scale leaves it
    within 1e-4 steps; the few grey levels of some digits fit a wrong scale to 0.008)."""
    return (other <= tolerance) & (other < 4 * best + 0.002)
