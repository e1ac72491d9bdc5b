"""Softmax and feature statistics of the attacker's own inputs on a row's model states."""
from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from fastleak._registry import Registry
from fastleak.errors import InvalidValueError
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


PINK_MEAN, PINK_STD, PINK_COLOUR = 0.45, 0.25, 0.3


@DUMMIES.register("pink")
def _pink(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Noise with the 1/f amplitude spectrum of natural images, in [0, 1].

    Inputs [K, channels..., H, W] get one 2-D random field shared by all channels (luminance)
    plus a weaker one per channel (colour); flat inputs [K, L] a 1-D field. Each input is
    scaled to mean 0.45 and standard deviation 0.25 (about those of CIFAR and ImageNet pixels)
    and clipped. Unlike white noise, pooling does not average it away, so a model's outputs
    vary across these inputs about as much as across photos.
    """
    k, rest = shape[0], tuple(shape[1:])
    if not rest:
        raise InvalidValueError("dummy_distribution 'pink' needs an input_shape with at least one dimension, got "
                                f"{rest}")
    spatial = rest[-2:] if len(rest) >= 2 else rest
    channels = math.prod(rest[:-len(spatial)])
    grids = [torch.fft.fftfreq(n) for n in spatial[:-1]] + [torch.fft.rfftfreq(spatial[-1])]
    freq = torch.sqrt(sum(g ** 2 for g in torch.meshgrid(*grids, indexing="ij")))
    amplitude = torch.where(freq > 0, 1.0 / freq.clamp_min(1e-12), torch.zeros(()))

    def field(count: int) -> torch.Tensor:
        size = (k, count, *amplitude.shape)
        spectrum = torch.complex(torch.randn(size, generator=gen), torch.randn(size, generator=gen))
        return torch.fft.irfftn(spectrum * amplitude, s=spatial, dim=tuple(range(2, 2 + len(spatial))))

    x = field(1) + PINK_COLOUR * field(channels) if channels > 1 else field(1)
    x = x.reshape(k, -1)
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True).clamp_min(1e-12)
    return (PINK_MEAN + PINK_STD * x).clamp(0, 1).reshape(shape)


def dummy_inputs(ev: Evidence, config: LabelConfig, obs_index: int) -> torch.Tensor:
    obs = ev.observations[obs_index]
    device, dtype = ev.grad_w.device, ev.grad_w.dtype
    if config.dummies is not None:
        return config.dummies.to(device=device, dtype=dtype)
    if obs.input_shape is None:
        raise InvalidValueError("observation.input_shape is None: the dummy statistics need it, "
                                "or pass LabelConfig(dummies=...)")
    gen = torch.Generator(device="cpu").manual_seed(config.dummy_seed)
    x = DUMMIES.get(config.dummy_distribution)((config.num_dummies, *obs.input_shape), gen)
    return x.to(device=device, dtype=dtype)


@dataclass(frozen=True)
class DummyForward:
    """The dummies on one model state, reduced once for every row that shares it: ``logits``
    [K, C], the means over the dummies of the softmax [C], of the softmax times the feature
    sum Ô_k [C], of Ô_k [], and of the penultimate features [D] (all float64), and the
    state's final-layer ``weight`` [C, D]."""

    logits: torch.Tensor
    mean_softmax: torch.Tensor
    mean_softmax_times_feature_sum: torch.Tensor
    mean_feature_sum: torch.Tensor
    mean_feature: torch.Tensor
    weight: torch.Tensor


def _forward(model: nn.Module, state: dict[str, torch.Tensor], weight_name: str, x: torch.Tensor,
             train: bool) -> DummyForward:
    model.load_state_dict(state)
    model.train(train)
    with torch.no_grad():
        feats, logits = features_and_logits(model, x)
    feats, logits = feats.flatten(1).double(), logits.double()
    probs, osum = torch.softmax(logits, dim=1), feats.sum(1)
    return DummyForward(logits, probs.mean(0), (probs * osum[:, None]).mean(0), osum.mean(), feats.mean(0),
                        state[weight_name].double())


def dummy_forwards(ev: Evidence, config: LabelConfig) -> Iterator[tuple[int, list[tuple[float, DummyForward]]]]:
    """Per row: the dummies' forward passes at the row's trajectory states, with their weights.

    Rows on the same start state with no trajectory share one forward pass. The passes are kept on
    ``ev`` for the methods that ask again (``auto`` scores several on the same simulated batches).
    """
    t, w = trajectory.times(ev, config)
    dummies = (config.num_dummies, config.dummy_seed, config.dummy_distribution,
               None if config.dummies is None else id(config.dummies))
    shared: dict[tuple, list[tuple[float, DummyForward]]] = ev.__dict__.setdefault("_dummy_forwards", {})
    # A private copy runs the states: loading them never touches the caller's model, and its
    # BatchNorm running statistics may change freely in train mode.
    model = None
    passes = 0
    for row in range(ev.num_rows):
        i, _j = ev.pair_ids[row]
        obs = ev.observations[i]
        moving = bool(ev.is_update[row]) and bool((t[row] != 0).any())
        key = ((("row", ev.pair_ids[row], tuple(t[row].tolist())) if moving else ("state", int(ev.state_index[row])))
               + (obs.bn_train, obs.input_shape, dummies))
        if key not in shared:
            if model is None:
                model = copy.deepcopy(ev.model).to(ev.grad_w.device)
            x = dummy_inputs(ev, config, i)
            shared[key] = [(wk, _forward(model, trajectory.state_at(ev, row, tk), ev.weight_name, x, obs.bn_train))
                           for tk, wk in zip(t[row].tolist(), w[row].tolist()) if wk != 0]
            passes += len(shared[key])
        yield row, shared[key]
    log.debug("dummy statistics: %d forward passes for %d rows", passes, ev.num_rows)


def dummy_statistics(ev: Evidence, config: LabelConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row: A_c = mean_{t,k} p̂_kc(t)·Ô_k(t) [P, C], Ō = mean_{t,k} Ô_k(t) [P] and
    p̄_c = mean_{t,k} p̂_kc(t) [P, C].

    Ô_k is the sum of dummy k's penultimate features.
    """
    a = torch.zeros(ev.num_rows, ev.num_classes, dtype=torch.float64, device=ev.grad_w.device)
    obar = torch.zeros(ev.num_rows, dtype=torch.float64, device=ev.grad_w.device)
    pbar = torch.zeros_like(a)
    for row, forwards in dummy_forwards(ev, config):
        for wk, f in forwards:
            a[row] += wk * f.mean_softmax_times_feature_sum
            obar[row] += wk * f.mean_feature_sum
            pbar[row] += wk * f.mean_softmax
    return a, obar, pbar


def shifted_mean_softmax(ev: Evidence, config: LabelConfig, mean_features: torch.Tensor) -> torch.Tensor:
    """Per row: mean_{t,k} softmax of the dummies with their penultimate features translated so
    that their mean is ``mean_features[row]`` [P, D] (rows with a non-finite entry: untranslated)."""
    pbar = torch.zeros(ev.num_rows, ev.num_classes, dtype=torch.float64, device=ev.grad_w.device)
    usable = torch.isfinite(mean_features).all(1).tolist()
    for row, forwards in dummy_forwards(ev, config):
        for wk, f in forwards:
            logits = f.logits
            if usable[row]:
                logits = logits + (mean_features[row] - f.mean_feature) @ f.weight.T
            pbar[row] += wk * torch.softmax(logits, dim=1).mean(0)
    return pbar
