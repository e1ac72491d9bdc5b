"""Entry points: recover / counts for one observation, counts_many for a stack."""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.observation import Observation
from fastleak.labels import registry
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


def choose(num_samples: int, num_classes: int, mass: float | None) -> tuple[str, str]:
    """What ``method="auto"`` runs on a batch of ``num_samples``, and why; ``mass`` is the
    observation's ``error_mass`` (None without a shared final-layer bias).

    - one sample: ``idlg``, exact at any training round;
    - at most half as many samples as classes, on a model confident on the batch (or without a
      bias to tell): ``rlg``, whose label set rests on the signs of p − y alone and so survives
      training; with more samples the gradient's column space admits absent classes too, and on
      uncertain models the count methods are exact where RLG's set takes in absent classes
      beside duplicates;
    - otherwise ``geng_shift`` with a bias, else ``geng``: on the trained-model grid (LeNet and
      ConvNet from round 0 to 100, FedSGD and FedAvg, B = 8 to 64) ``geng_shift`` had the highest
      mean LnAcc of the count methods, 0.52 against 0.48 for ``geng_bias``, ahead in both the
      early and the trained halves.
    """
    if num_samples == 1:
        return "idlg", "one sample: the sign of its label's logit gradient"
    small = num_samples <= num_classes // 2
    if small and (mass is None or mass < CONFIDENT_ERROR_MASS):
        why = "no shared bias" if mass is None else f"error mass < {CONFIDENT_ERROR_MASS}: a confident model"
        return "rlg", f"B <= half of {num_classes} classes, {why}; the label set from the gradient's column space"
    size = f"B <= half of {num_classes} classes" if small else f"B > half of {num_classes} classes"
    if mass is not None:
        why = f"error mass >= {CONFIDENT_ERROR_MASS}: an uncertain model" if small else "counts from the bias gradient"
        return "geng_shift", f"{size}, {why}; dummies moved to the batch's mean feature"
    return "geng", f"{size}; counts from the final weight gradient (no shared bias)"


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


def counts_many(observations: Sequence[Observation], model: nn.Module, method: str = "auto", *,
                num_samples: Sequence[int | None] | int | None = None,
                config: LabelConfig | None = None) -> tuple[LabelCounts, ...]:
    """Label counts of many observations at once, with batched tensor math over all of them.

    Every pair of every observation is one row of the evidence; a method estimates float
    counts for all rows together, the rows of one observation are combined (element-wise
    median by default, ``LabelConfig.combine``), and each observation's estimates are rounded
    (largest remainder) to exactly its batch size.
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
    n = len(observations)
    sizes = [0] * n
    for row, i in enumerate(ev.obs_index.tolist()):
        sizes[i] = int(ev.num_samples[row])
    chosen = [method] * n
    if method == "auto":
        masses: list[float | None] = [None] * n
        if ev.has_bias:
            per_obs = combine_pairs(error_mass(ev.grad_b)[:, None], ev.obs_index, n, "mean")[:, 0]
            masses = per_obs.tolist()
        picks = [choose(sizes[i], ev.num_classes, masses[i]) for i in range(n)]
        chosen = [name for name, _ in picks]
        for name, reason in sorted(set(picks)):
            which = [i for i in range(n) if picks[i] == (name, reason)]
            spread = ("" if masses[which[0]] is None else
                      f" (error mass {min(masses[i] for i in which):.3f}-{max(masses[i] for i in which):.3f})")
            log.info("labels: method 'auto' chose %s for %d observation(s): %s%s", name, len(which), reason, spread)

    estimates = torch.zeros(n, ev.num_classes, dtype=torch.float64, device=ev.grad_w.device)
    for name in sorted(set(chosen)):
        spec = registry.get(name)
        obs_rows = [i for i in range(n) if chosen[i] == name]
        _check_applicable(spec, ev, obs_rows, sizes)
        sel = torch.isin(ev.obs_index, torch.tensor(obs_rows, device=ev.obs_index.device))
        rows = sel.nonzero().squeeze(1)
        sub = ev.subset(rows)
        est = spec.estimate(sub, config).double()
        estimates[obs_rows] = combine_pairs(est, sub.obs_index, n, config.combine)[obs_rows]
    totals = torch.tensor(sizes, dtype=torch.long, device=estimates.device)
    rounded = largest_remainder(estimates, totals)
    return tuple(LabelCounts(estimates=estimates[i], counts=rounded[i], method=chosen[i],
                             requested=method, num_samples=sizes[i]) for i in range(n))


def counts(observation: Observation, model: nn.Module, method: str = "auto", *,
           num_samples: int | None = None, config: LabelConfig | None = None) -> LabelCounts:
    """Label counts (duplicates included) of one observation; see ``counts_many``."""
    if not isinstance(observation, Observation):
        raise InvalidTypeError(f"observation must be a fastleak Observation, got {type(observation).__name__}")
    return counts_many((observation,), model, method, num_samples=[num_samples], config=config)[0]


def recover(observation: Observation, model: nn.Module, method: str = "auto", *,
            num_samples: int | None = None, config: LabelConfig | None = None) -> torch.Tensor:
    """The recovered labels of one observation, sorted, exactly ``num_samples`` of them."""
    return counts(observation, model, method, num_samples=num_samples, config=config).labels


def recover_many(observations: Sequence[Observation], model: nn.Module, method: str = "auto", *,
                 num_samples: Sequence[int | None] | int | None = None,
                 config: LabelConfig | None = None) -> list[torch.Tensor]:
    """Sorted recovered labels of many observations, computed together."""
    return [c.labels for c in counts_many(observations, model, method, num_samples=num_samples, config=config)]
