"""Where along local training the statistics of an update are taken, and the model there.

A client that took S SGD steps evaluated its gradients at θ_0 … θ_{S−1}; on the straight
path θ(t) = θ_0 + t·Δ these sit at t = s/S. T evenly spaced points of [0, (S−1)/S] with equal
weights stand in for them; a gradient is the single point t = 0.
"""
from __future__ import annotations

from typing import Mapping

import torch

from fastleak.labels.evidence import Evidence, total_steps
from fastleak.labels.types import LabelConfig


def times(ev: Evidence, config: LabelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row trajectory times and weights, both [P, T] float64 (padded with zero weight)."""
    steps = []
    for i, _j in ev.pair_ids:
        steps.append(total_steps(ev.observations[i]))
    steps_t = torch.tensor(steps, dtype=torch.float64, device=ev.grad_w.device)
    if config.trajectory_points is None:
        npts = steps_t.clamp(max=5).long()
    else:
        npts = torch.minimum(torch.full_like(steps_t, config.trajectory_points).long(), steps_t.long())
    tmax = int(npts.max())
    i = torch.arange(tmax, dtype=torch.float64, device=steps_t.device)[None, :]
    span = (steps_t - 1) / steps_t
    denom = (npts - 1).clamp_min(1).double()
    t = torch.where(npts[:, None] > 1, i / denom[:, None] * span[:, None], 0.5 * span[:, None].expand(-1, tmax))
    w = (i < npts[:, None]).double() / npts[:, None].double()
    return t * (w > 0), w


def state_at(ev: Evidence, row: int, t: float) -> dict[str, torch.Tensor]:
    """The full model state of ``row`` at trajectory time ``t`` (buffers from the start state)."""
    i, j = ev.pair_ids[row]
    obs = ev.observations[i]
    start: Mapping[str, torch.Tensor] = obs.pairs[j].state
    state = dict(start)
    if t != 0.0 and obs.kind == "update":
        for name, delta in zip(obs.param_names, obs.pairs[j].shared):
            state[name] = start[name] + t * delta
    return state
