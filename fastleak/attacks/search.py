"""Restarts over a grid of settings, chosen by how well their images explain the observation.

A configuration may give, for its restarts, a few values per knob (``AttackConfig.search``: a
prior's name for its weight, e.g. ``{"tv": (1e-4, 1e-3, 1e-2)}``, or ``"lr"``). Every combination is a
candidate with ``restarts`` rows of its own; all rows are optimised together, in the batched
computation of ordinary restarts, on the same model states. At each fraction of the budget in
``AttackConfig.halving`` the worse half of every observation's rows is dropped (successive halving),
so that a grid of 8 costs about what two restarts cost.

Rows are ranked by ``AttackConfig.select``:

* ``"distance"``: the gradient distance alone, without any prior term, the same measure for every
  candidate. The total objective would not do: it includes each row's own prior term, which is
  smaller for a smaller prior weight whatever the images, so it favours the smallest weight.
* ``"holdout"``: the gradient distance on held-out parameter tensors (every ``holdout``-th, counted
  from the last) which the objective leaves out, like a validation split: a candidate that fits the
  tensors it is optimised on by overfitting them does not fit the others better.
* ``"discrepancy"``: the discrepancy principle. The best distance among an observation's rows is what
  its gradient lets any candidate reach; every row within ``discrepancy`` times of it explains the
  observation about as well, and among those the most regularised one (the largest sum of searched
  prior weights) ranks first, then the others by distance. Where weaker priors fit the gradient
  better by fitting it with noise (trained models, larger batches), this keeps the smoother images
  the distance alone would pass over.
* ``"objective"``: the total objective (the choice among restarts that share their settings).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fastleak.errors import InvalidValueError

SELECT = ("objective", "distance", "holdout", "discrepancy")
ROW_FIELDS = ("lr",)  # configuration fields a candidate may set for its rows
# The presets' own search: TV weights over the range that the trained-model grid's best weights span
# (benchmarks/RESULTS.md, "Presets that tune themselves"), halved once at half the run.
TV_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1)
PRESET_HALVING = (0.5,)
RESTARTS = 4  # rows of a configuration without a search


def normalise_search(search: Mapping[str, Sequence[Any]], priors: Mapping[str, Mapping[str, Any]]) -> dict:
    """``search`` with every knob checked (a prior of ``priors`` or a field of ``ROW_FIELDS``) and its
    values as a tuple of finite non-negative numbers (positive for a field)."""
    if not isinstance(search, Mapping):
        raise InvalidValueError(f"attack option search must map knobs to lists of values, got {search!r}")
    out = {}
    for knob, values in search.items():
        if knob not in priors and knob not in ROW_FIELDS:
            raise InvalidValueError(f"attack option search: {knob!r} is neither a prior of the configuration "
                                    f"({', '.join(priors) or 'none'}) nor one of {', '.join(ROW_FIELDS)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise InvalidValueError(f"attack option search: {knob} needs a non-empty list of values, got {values!r}")
        values = tuple(values)
        low = 0 if knob in priors else math.ulp(0)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= low
                   for v in values):
            kind = "weights >= 0" if knob in priors else "positive numbers"
            raise InvalidValueError(f"attack option search: {knob} values must be finite {kind}, got {list(values)}")
        out[knob] = tuple(float(v) for v in values)
    return out


def default_restarts(search: Mapping[str, Sequence[float]]) -> int:
    """Rows per candidate when the caller gives none: one per candidate of a search (the grid's
    candidates are the restarts), otherwise ``RESTARTS``."""
    return 1 if search else RESTARTS


def check_halving(halving: Sequence[float]) -> tuple[float, ...]:
    halving = tuple(halving)
    if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1 for f in halving) or \
            list(halving) != sorted(set(halving)):
        raise InvalidValueError(f"attack option halving must be increasing fractions of the run in (0, 1), "
                                f"got {list(halving)}")
    return tuple(float(f) for f in halving)


def candidates(search: Mapping[str, tuple[float, ...]]) -> list[dict[str, float]]:
    """Every combination of the knobs' values, the last knob varying fastest ([{}] without a search)."""
    return [dict(zip(search, values)) for values in itertools.product(*search.values())]


def halving_steps(halving: Sequence[float], iterations: int) -> list[int]:
    """The steps after which rows are dropped (at least one step in, before the last)."""
    return sorted({min(max(1, round(f * iterations)), iterations - 1) for f in halving if iterations > 1})


def survivors(scores: Tensor, problems: int, keep: int) -> Tensor:
    """Row indices [problems * keep] of the ``keep`` lowest ``scores`` of each problem's block of rows,
    in their original order; scores that are not finite rank last."""
    per = scores.numel() // problems
    ranked = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, math.inf)).view(problems, per)
    best = torch.argsort(ranked, dim=1, stable=True)[:, :keep].sort(dim=1).values
    return (best + torch.arange(problems, device=scores.device)[:, None] * per).flatten()


def discrepancy_ranks(distance: Tensor, strength: Tensor, problems: int, factor: float) -> Tensor:
    """Each row's place [Q] (0 first) in its problem's ranking by the discrepancy principle (module docs);
    rows whose distance is not finite come last."""
    per = distance.numel() // problems
    d = torch.where(torch.isfinite(distance), distance, torch.full_like(distance, math.inf)).view(problems, per)
    best = d.min(1, keepdim=True).values
    within = d <= factor * best
    keys = (torch.where(within, -strength.view(problems, per).to(d.dtype), d), (~within).to(d.dtype))
    order = torch.argsort(d, dim=1, stable=True)                     # the last key first, stable sorts after
    for key in keys:
        order = order.gather(1, torch.argsort(key.gather(1, order), dim=1, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(per, device=d.device).expand(problems, per))
    return ranks.flatten().to(distance.dtype)


def holdout_mask(num_tensors: int, every: int) -> Tensor:
    """True for the held-out tensors: every ``every``-th, counted from the last."""
    index = torch.arange(num_tensors)
    return (num_tensors - 1 - index) % every == 0


@dataclass(frozen=True)
class Candidate:
    """One setting of a search: its knob values, its rows' best ranking score, and the step it was
    dropped at (None: it ran to the end)."""

    values: Mapping[str, float]
    score: float
    dropped_at: int | None


@dataclass(frozen=True)
class SearchReport:
    """What a search tried for one observation and what it chose: ``chosen`` the winning row's knob
    values, ``candidates`` every setting (``Candidate``), ``select`` the ranking used."""

    select: str
    chosen: Mapping[str, float]
    candidates: tuple[Candidate, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"select": self.select, "chosen": dict(self.chosen),
                "candidates": [{"values": dict(c.values), "score": c.score, "dropped_at": c.dropped_at}
                               for c in self.candidates]}
