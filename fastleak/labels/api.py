"""Entry points: recover / counts for one observation, counts_many for a stack."""
from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import torch
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation
from fastleak.labels import bayes, registry
from fastleak.labels import posterior as P
from fastleak.labels.evidence import Evidence, gather
from fastleak.labels.rounding import largest_remainder
from fastleak.labels.types import LabelConfig, LabelCounts

log = logging.getLogger("fastleak.labels")


# Below this bias-gradient error mass the model is confident on the batch: the softmax statistics
# of the count methods no longer describe it (benchmarks/RESULTS.md, trained-model grid: at B=4,
# 0.49-0.99 on models at chance level, 0.00-0.37 on models with 84% held-out accuracy or more).
CONFIDENT_ERROR_MASS = 0.45


def error_mass(grad_b: torch.Tensor) -> torch.Tensor:
    """½·‖Δb‖₁ per row of mean-reduction bias gradients [P, C]: the batch's mean softmax mass off
    its labels (less what cancels between samples), near 1 for an untrained model and near 0 for
    a model that is confident on the batch."""
    return 0.5 * grad_b.double().abs().sum(1)


# geng_shift's count estimates come out whole (mean distance to an integer, negatives included, below
# this) where the softmax barely varies across inputs (untrained models, the LeNet's loss plateau:
# 0.00-0.10 at B = 32 and 64 on the trained-model grid), and scatter on confident models (0.08-0.35).
WHOLE_COUNTS = 0.12
# ... but also on a confident model whose batch the dummies happen to fit; the error mass of those
# stays below this (0.00-0.11 at B >= 32 on the grid's states with >= 96% held-out accuracy).
SETTLED_ERROR_MASS = 0.12


def whole_counts_gap(estimates: torch.Tensor) -> torch.Tensor:
    """Per row of float count estimates [N, C]: the mean distance of an estimate to the nearest
    whole, non-negative count."""
    e = estimates.double()
    return ((e - e.round()).abs() + (-e).clamp_min(0)).mean(1)


def choose(num_samples: int, num_classes: int, mass: float | None, gap: float | None = None) -> tuple[str, str]:
    """What ``method="auto"`` runs on a batch of ``num_samples`` without public data, and why;
    ``mass`` is the observation's ``error_mass`` (None without a shared final-layer bias) and ``gap``
    the ``whole_counts_gap`` of its ``geng_shift`` estimates (None: not computed).

    - one sample: ``idlg``, exact at any training round;
    - at most half as many samples as classes: ``rlg`` on a model confident on the batch (error mass
      below 0.45) or without a bias to tell, whose label set rests on the signs of p − y alone and so
      survives training; ``geng_shift`` on an uncertain model;
    - larger batches: ``geng_shift`` on an uncertain model (error mass 0.45 or more), or where its
      estimates come out whole (``WHOLE_COUNTS``) on a model that is not settled on the batch
      (``SETTLED_ERROR_MASS``): the softmax then barely varies across inputs, which is what the
      dummies assume; otherwise ``presence_prior``: on a model confident on the batch the count
      methods return confident nonsense (the bias gradient carries only the residual of a few hard
      samples), while the prior given the classes the gradient shows present stays at or above the
      equal-counts guess (benchmarks/RESULTS.md, trained-model grid); ``geng`` without a bias.
    """
    if num_samples == 1:
        return "idlg", "one sample: the sign of its label's logit gradient"
    small = num_samples <= num_classes // 2
    size = f"B {'<=' if small else '>'} half of {num_classes} classes"
    if mass is None:
        if small:
            return "rlg", f"{size}, no shared bias; the label set from the gradient's column space"
        return "geng", f"{size}; counts from the final weight gradient (no shared bias)"
    if mass >= CONFIDENT_ERROR_MASS:
        return "geng_shift", (f"{size}, error mass >= {CONFIDENT_ERROR_MASS}: an uncertain model; dummies moved to "
                              "the batch's mean feature")
    if small:
        return "rlg", (f"{size}, error mass < {CONFIDENT_ERROR_MASS}: a confident model; the label set from the "
                       "gradient's column space")
    if gap is not None and gap < WHOLE_COUNTS and mass >= SETTLED_ERROR_MASS:
        return "geng_shift", (f"{size}, geng_shift's estimates within {WHOLE_COUNTS} of whole counts and error mass "
                              f">= {SETTLED_ERROR_MASS}: a softmax that barely varies across inputs")
    return "presence_prior", (f"{size}, error mass < {CONFIDENT_ERROR_MASS} and geng_shift's estimates not whole: "
                              "a model confident on the batch, whose gradient carries too little to count; the "
                              "prior given the classes shown present")


def candidates(num_samples: int, num_classes: int, has_bias: bool) -> tuple[str, ...]:
    """The methods ``auto`` scores on simulated public batches of ``num_samples``."""
    if num_samples == 1:
        names = ("idlg", "posterior", "presence_prior")
    else:
        names = ("posterior", "presence_prior", "geng_shift", "geng_bias", "geng", "ilrg")
        if num_samples <= num_classes // 2:
            names += ("rlg",)
    return tuple(n for n in names if has_bias or not registry.get(n).needs_bias)


def _check_applicable(method: registry.Method, ev: Evidence, rows: list[int], sizes: list[int]) -> None:
    if method.needs_bias and not ev.has_bias:
        raise InvalidValueError(f"method {method.name!r} needs the final nn.Linear's bias (model layer "
                                f"{ev.weight_name.rsplit('.', 1)[0]!r}), but the model has none or the observation "
                                "does not share its gradient; use method='geng' or 'llg'")
    for i in rows:
        if method.single_sample and sizes[i] != 1:
            raise InvalidValueError(f"method {method.name!r} handles batch size 1 only, but num_samples is "
                                    f"{sizes[i]}; use 'auto', 'ilrg' or 'geng' for batches")
        if method.unique_labels and sizes[i] > ev.num_classes:
            raise InvalidValueError(f"method {method.name!r} assumes unique labels, impossible with num_samples="
                                    f"{sizes[i]} > {ev.num_classes} classes")


def combine_pairs(estimates: torch.Tensor, obs_index: torch.Tensor, num_obs: int, how: str = "median") -> torch.Tensor:
    """Per-observation counts [N, C] from per-pair estimates [P, C] (``obs_index`` [P] maps rows).

    ``median``: the element-wise median over an observation's pairs (the mean of the two middle
    values for an even number), robust to one pair whose state gives a poor estimate;
    ``mean``: their average.
    """
    c = estimates.shape[1]
    per_obs = torch.bincount(obs_index, minlength=num_obs)
    if how == "mean":
        total = torch.zeros(num_obs, c, dtype=estimates.dtype, device=estimates.device)
        return total.index_add_(0, obs_index, estimates) / per_obs.clamp_min(1)[:, None]
    order = torch.sort(obs_index, stable=True).indices
    start = torch.cumsum(per_obs, 0) - per_obs
    slot = torch.arange(len(order), device=order.device) - start[obs_index[order]]
    table = torch.full((num_obs, int(per_obs.max()), c), float("nan"), dtype=estimates.dtype,
                       device=estimates.device)
    table[obs_index[order], slot] = estimates[order]
    ranked = torch.sort(table, dim=1).values  # NaN padding sorts last
    lo = ((per_obs - 1).clamp_min(0) // 2)[:, None, None].expand(-1, 1, c)
    hi = (per_obs // 2).clamp_max(ranked.shape[1] - 1)[:, None, None].expand(-1, 1, c)
    hi = torch.where(per_obs[:, None, None] % 2 == 1, lo, hi)
    return 0.5 * (ranked.gather(1, lo) + ranked.gather(1, hi)).squeeze(1)


def _public_config(config: LabelConfig, public, ev: Evidence) -> LabelConfig:
    from fastleak.labels.public import as_public

    shapes = {obs.input_shape for obs in ev.observations if obs.input_shape is not None}
    shape = next(iter(shapes)) if len(shapes) == 1 else None
    return dataclasses.replace(config, public=as_public(public, ev.num_classes, shape))


def _uncertainty(found: LabelCounts, level: float, marginals: torch.Tensor | None = None,
                 errors: torch.Tensor | None = None) -> LabelCounts:
    """``found`` with per-class intervals and probabilities from posterior ``marginals`` [C, A] or
    from a method's simulated ``errors`` (true minus recovered counts) [S, C]."""
    counts = found.counts
    if marginals is not None:
        marginals = marginals[:, :found.num_samples + 1]
        band = P.interval(marginals[None], level)[0]
        prob = marginals.gather(1, counts.clamp_max(marginals.shape[1] - 1)[:, None].long())[:, 0]
        return dataclasses.replace(found, interval=band, probability=prob, marginals=marginals, level=level,
                                   uncertainty="posterior")
    e = errors.to(counts.device).double()
    lo = torch.quantile(e, (1 - level) / 2, dim=0).floor().long()
    hi = torch.quantile(e, (1 + level) / 2, dim=0).ceil().long()
    band = torch.stack([(counts + lo).clamp(0, found.num_samples), (counts + hi).clamp(0, found.num_samples)], 1)
    prob = (e == 0).double().mean(0)
    return dataclasses.replace(found, interval=band, probability=prob, level=level, uncertainty="simulation")


def counts_many(observations: Sequence[Observation], model: nn.Module, method: str = "auto", *,
                num_samples: Sequence[int | None] | int | None = None,
                config: LabelConfig | None = None, public=None) -> tuple[LabelCounts, ...]:
    """Label counts of many observations at once, with batched tensor math over all of them.

    Every pair of every observation is one row of the evidence; a method estimates float
    counts for all rows together, the rows of one observation are combined (element-wise
    median by default, ``LabelConfig.combine``), and each observation's estimates are rounded
    (largest remainder) to exactly its batch size.

    ``public``: the server's labelled public data, ``(images, labels)`` or a ``PublicData``
    (pass one ``PublicData`` to many calls to fit each model state once). With it the posterior
    methods use class-conditional statistics measured at the observed model state, and ``auto``
    picks, per model state, protocol and batch size, the method with the highest LnAcc on client
    batches simulated from the public data; without it ``auto`` follows ``choose``. The posterior
    methods, and with public data any method ``auto`` picks, report per-class intervals.
    """
    if isinstance(observations, Observation):
        raise InvalidTypeError("observations must be a sequence of Observation; use counts() for one")
    observations = tuple(observations)
    if not observations:
        return ()
    if not isinstance(method, str):
        raise InvalidTypeError(f"method must be a string, got {type(method).__name__}")
    if method != "auto":
        registry.get(method)
    config = config if config is not None else LabelConfig()
    if num_samples is None or isinstance(num_samples, int):
        num_samples = [num_samples] * len(observations)
    ev = gather(observations, model, list(num_samples))
    if public is not None:
        config = _public_config(config, public, ev)
    n = len(observations)
    sizes = [0] * n
    first_row = [0] * n
    for row, i in reversed(list(enumerate(ev.obs_index.tolist()))):
        sizes[i] = int(ev.num_samples[row])
        first_row[i] = row
    calibrations = bayes.calibrations_of(ev, config) if config.public is not None else [None] * ev.num_rows
    chosen = [method] * n
    if method == "auto":
        chosen = _auto(ev, config, sizes, first_row, calibrations)

    estimates = torch.zeros(n, ev.num_classes, dtype=torch.float64, device=ev.grad_w.device)
    exact: dict[int, torch.Tensor] = {}
    marginals: dict[int, torch.Tensor] = {}
    for name in sorted(set(chosen)):
        spec = registry.get(name)
        obs_rows = [i for i in range(n) if chosen[i] == name]
        _check_applicable(spec, ev, obs_rows, sizes)
        sel = torch.isin(ev.obs_index, torch.tensor(obs_rows, device=ev.obs_index.device))
        rows = sel.nonzero().squeeze(1)
        sub = ev.subset(rows)
        if name in bayes.POSTERIOR_METHODS:
            res = bayes.solve(sub, config, informative=name == "posterior",
                              calibrations=[calibrations[r] for r in rows.tolist()])
            est = res.map
            for i in obs_rows:
                mine = (sub.obs_index == i).nonzero().squeeze(1)
                marginals[i] = res.marginals[mine].mean(0)
                if len(mine) == 1:
                    exact[i] = res.map[mine[0]]
        else:
            est = spec.estimate(sub, config).double()
        estimates[obs_rows] = combine_pairs(est, sub.obs_index, n, config.combine)[obs_rows]
    totals = torch.tensor(sizes, dtype=torch.long, device=estimates.device)
    rounded = largest_remainder(estimates, totals)
    out = []
    for i in range(n):
        counts_i = exact[i].long() if i in exact else rounded[i]
        found = LabelCounts(estimates=estimates[i], counts=counts_i, method=chosen[i], requested=method,
                            num_samples=sizes[i], level=config.level)
        if i in marginals:
            values = torch.arange(marginals[i].shape[1], dtype=torch.float64, device=marginals[i].device)
            found = dataclasses.replace(found, estimates=(marginals[i] * values).sum(1))
            found = _uncertainty(found, config.level, marginals=marginals[i])
        elif calibrations[first_row[i]] is not None and method == "auto":
            cal = calibrations[first_row[i]]
            bayes.score(cal, (chosen[i],), config)
            found = _uncertainty(found, config.level, errors=cal.errors[chosen[i]])
        out.append(found)
    return tuple(out)


def _auto(ev: Evidence, config: LabelConfig, sizes: list[int], first_row: list[int],
          calibrations: list) -> list[str]:
    """The method ``auto`` runs on each observation (see ``counts_many`` and ``choose``)."""
    n = len(sizes)
    if config.public is not None:
        chosen = []
        for i in range(n):
            cal = calibrations[first_row[i]]
            names = candidates(sizes[i], ev.num_classes, ev.has_bias)
            scores = bayes.score(cal, names, config)
            best = cal.best(names)
            chosen.append(best)
        for name in sorted(set(chosen)):
            which = [i for i in range(n) if chosen[i] == name]
            cal = calibrations[first_row[which[0]]]
            log.info("labels: method 'auto' chose %s for %d observation(s): highest LnAcc on %d public batches "
                     "simulated at the model state (%s)", name, len(which), len(cal.truth),
                     ", ".join(f"{k} {v:.2f}" for k, v in sorted(cal.scores.items(), key=lambda kv: -kv[1])))
        return chosen
    masses: list[float | None] = [None] * n
    gaps: list[float | None] = [None] * n
    if ev.has_bias:
        per_obs = combine_pairs(error_mass(ev.grad_b)[:, None], ev.obs_index, n, "mean")[:, 0]
        masses = per_obs.tolist()
        unsure = [i for i in range(n) if sizes[i] > ev.num_classes // 2 and masses[i] < CONFIDENT_ERROR_MASS]
        if unsure:
            rows = torch.isin(ev.obs_index, torch.tensor(unsure, device=ev.obs_index.device)).nonzero().squeeze(1)
            sub = ev.subset(rows)
            est = combine_pairs(registry.get("geng_shift").estimate(sub, config).double(), sub.obs_index, n,
                                config.combine)
            gap = whole_counts_gap(est)
            for i in unsure:
                gaps[i] = float(gap[i])
    picks = [choose(sizes[i], ev.num_classes, masses[i], gaps[i]) for i in range(n)]
    for name, reason in sorted(set(picks)):
        which = [i for i in range(n) if picks[i] == (name, reason)]
        spread = ("" if masses[which[0]] is None else
                  f" (error mass {min(masses[i] for i in which):.3f}-{max(masses[i] for i in which):.3f})")
        log.info("labels: method 'auto' chose %s for %d observation(s): %s%s", name, len(which), reason, spread)
    return [name for name, _ in picks]


def counts(observation: Observation, model: nn.Module, method: str = "auto", *,
           num_samples: int | None = None, config: LabelConfig | None = None, public=None) -> LabelCounts:
    """Label counts (duplicates included) of one observation; see ``counts_many``."""
    if not isinstance(observation, Observation):
        raise InvalidTypeError(f"observation must be a fastleak Observation, got {type(observation).__name__}")
    return counts_many((observation,), model, method, num_samples=[num_samples], config=config, public=public)[0]


def recover(observation: Observation, model: nn.Module, method: str = "auto", *,
            num_samples: int | None = None, config: LabelConfig | None = None, public=None) -> torch.Tensor:
    """The recovered labels of one observation, sorted, exactly ``num_samples`` of them."""
    return counts(observation, model, method, num_samples=num_samples, config=config, public=public).labels


def recover_many(observations: Sequence[Observation], model: nn.Module, method: str = "auto", *,
                 num_samples: Sequence[int | None] | int | None = None,
                 config: LabelConfig | None = None, public=None) -> list[torch.Tensor]:
    """Sorted recovered labels of many observations, computed together."""
    return [c.labels for c in counts_many(observations, model, method, num_samples=num_samples, config=config,
                                          public=public)]
