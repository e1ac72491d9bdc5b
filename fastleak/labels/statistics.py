"""Softmax and feature statistics of the attacker's own inputs on a row's model states."""
from __future__ import annotations

import copy
import logging

from typing import Callable

import torch
from torch import nn

from fastleak._registry import Registry

from fastleak.labels import trajectory
from fastleak.labels.evidence import Evidence
from fastleak.labels.types import LabelConfig
from fastleak.models import features_and_logits

log = logging.getLogger("fastleak.labels")


DummyDraw = Callable[[tuple[int, ...], torch.Generator], torch.Tensor]
DUMMIES: Registry[DummyDraw] = Registry("dummy distribution")


@DUMMIES.register("uniform")
def _uniform(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """U(0, 1) pixels: the value range of fastleak.data images."""
    return torch.rand(shape, generator=gen)


@DUMMIES.register("normal")
def _normal(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """N(0, 1) pixels: for inputs normalised to zero mean and unit variance."""
    return torch.randn(shape, generator=gen)


def dummy_inputs(ev: Evidence, config: LabelConfig, obs_index: int) -> torch.Tensor:
    obs = ev.observations[obs_index]
    device, dtype = ev.grad_w.device, ev.grad_w.dtype
    if config.dummies is not None:
        return config.dummies.to(device=device, dtype=dtype)
    if obs.input_shape is None:
        raise ValueError("observation.input_shape is None: the dummy statistics need it, "
                         "or pass LabelConfig(dummies=...)")
    gen = torch.Generator(device="cpu").manual_seed(config.dummy_seed)
    x = DUMMIES.get(config.dummy_distribution)((config.num_dummies, *obs.input_shape), gen)
    return x.to(device=device, dtype=dtype)


def _probs_and_feature_sums(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor,
                            train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax outputs [K, C] and penultimate feature sums [K] of ``x`` on ``model`` at ``state``."""
    model.load_state_dict(state)
    model.train(train)
    with torch.no_grad():
        feats, logits = features_and_logits(model, x)
    return torch.softmax(logits.double(), dim=1), feats.flatten(1).double().sum(1)


def dummy_statistics(ev: Evidence, config: LabelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: A_c = mean_{t,k} p̂_kc(t)·Ô_k(t) [P, C], Ō = mean_{t,k} Ô_k(t) [P] and
    p̄_c = mean_{t,k} p̂_kc(t) [P, C].

    Ô_k is the sum of dummy k's penultimate features. Rows on the same start state with no
    trajectory share one forward pass.
    """
    t, w = trajectory.times(ev, config)
    a = torch.zeros(ev.num_rows, ev.num_classes, dtype=torch.float64, device=ev.grad_w.device)
    obar = torch.zeros(ev.num_rows, dtype=torch.float64, device=ev.grad_w.device)
    pbar = torch.zeros_like(a)
    cache: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    # A private copy runs the states: loading them never touches the caller's model, and its
    # BatchNorm running statistics may change freely in train mode.
    model = copy.deepcopy(ev.model).to(ev.grad_w.device)
    for row in range(ev.num_rows):
        i, j = ev.pair_ids[row]
        obs = ev.observations[i]
        moving = bool(ev.is_update[row]) and bool((t[row] != 0).any())
        key = (i, j) if moving else ("state", int(ev.state_index[row]), obs.bn_train, obs.input_shape)
        if key not in cache:
            x = dummy_inputs(ev, config, i)
            acc_a = torch.zeros(ev.num_classes, dtype=torch.float64, device=a.device)
            acc_o = torch.zeros((), dtype=torch.float64, device=a.device)
            acc_p = torch.zeros_like(acc_a)
            for tk, wk in zip(t[row].tolist(), w[row].tolist()):
                if wk == 0:
                    continue
                probs, osum = _probs_and_feature_sums(model, trajectory.state_at(ev, row, tk), x, obs.bn_train)
                acc_a += wk * (probs * osum[:, None]).mean(0)
                acc_o += wk * osum.mean()
                acc_p += wk * probs.mean(0)
            cache[key] = (acc_a, acc_o, acc_p)
        a[row], obar[row], pbar[row] = cache[key]
    log.debug("dummy statistics: %d forward groups for %d rows", len(cache), ev.num_rows)
    return a, obar, pbar
