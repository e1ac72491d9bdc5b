"""Whole counts with a fixed total from float count estimates."""
from __future__ import annotations

import torch

from fastleak.errors import InvalidValueError


def largest_remainder(estimates: torch.Tensor, totals: torch.Tensor) -> torch.Tensor:
    """Round rows of ``estimates`` [N, C] to non-negative integers summing to ``totals`` [N].

    Estimates are clamped at zero (NaN counts as zero) and floored; the missing units go
    to the classes with the largest remainders (Hamilton's method). When the floors already
    exceed the total, units are taken from the classes with the smallest remainders. Both
    directions are the closest integer vector in squared error, and more than one unit per
    class is handed out or taken when the gap exceeds the number of classes.
    """
    if estimates.dim() != 2:
        raise InvalidValueError(f"estimates must be [N, C], got shape {tuple(estimates.shape)}")
    totals = torch.as_tensor(totals, device=estimates.device).long().reshape(-1)
    if totals.numel() != estimates.shape[0]:
        raise InvalidValueError(f"totals must have {estimates.shape[0]} entries, got {totals.numel()}")
    if bool((totals < 0).any()):
        raise InvalidValueError("totals must be non-negative")
    x = torch.nan_to_num(estimates.double(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0)
    x = torch.minimum(x, totals[:, None].double())
    base = x.floor()
    rem = x - base
    base = base.long()
    gap = totals - base.sum(1)
    span = int(gap.abs().max()) if gap.numel() else 0
    if span == 0:
        return base
    n, c = x.shape
    j = torch.arange(span, device=x.device, dtype=x.dtype)
    add = gap.clamp_min(0)
    drop = (-gap).clamp_min(0)
    # Value of handing class c its (j+1)-th extra unit, and cost of taking its (j+1)-th unit.
    gain = (rem[:, :, None] - j).reshape(n, c * span)
    cost = (rem[:, :, None] + j).masked_fill(j.long() >= base[:, :, None], float("inf")).reshape(n, c * span)
    take_add = _rank(-gain) < add[:, None]
    take_drop = _rank(cost) < drop[:, None]
    return base + take_add.reshape(n, c, span).sum(2) - take_drop.reshape(n, c, span).sum(2)


def _rank(values: torch.Tensor) -> torch.Tensor:
    """Position of every entry in its row's stable ascending order."""
    order = torch.sort(values, dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(values.shape[1], device=values.device).expand_as(order))
    return rank
