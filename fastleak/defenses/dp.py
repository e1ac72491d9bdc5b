"""DP-SGD (Abadi et al. 2016) on the client: per-example clipping plus Gaussian noise.

This needs per-example gradients, so it replaces the client's FedSGD step (a ``ClientStep`` of the
registry, for the "fedsgd" protocol only) rather than transforming an existing observation. The
client computes each sample's gradient g_i (all trainable parameters together), scales it to global
L2 norm at most ``clip`` (g_i * min(1, clip / ||g_i||)), sums them, adds N(0, (sigma * clip)^2) to
every coordinate (one CPU generator seeded with ``seed``, parameters in order) and divides by n for
``reduction="mean"``. BatchNorm must be in eval mode.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fastleak._checks import integer, nonnegative_number, positive_number
from fastleak.defenses.registry import defense_meta, register_client
from fastleak.federated.client import (_check_loss, make_observation, per_example_gradients, snapshot,
                                       trainable_names, validate_batch)
from fastleak.federated.observation import Observation


@register_client("dp_sgd", protocols=("fedsgd",), why="clips the per-example gradients of one FedSGD step",
                 use="fastleak.defenses.dp_sgd(model, x, y, clip=..., sigma=...)")
def dp_sgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, clip: float, sigma: float, seed: int = 0,
           loss: str = "ce", reduction: str = "mean") -> Observation:
    """A FedSGD observation (kind "gradient") protected by DP-SGD; see the module docstring."""
    clip = positive_number(clip, "clip")
    sigma = nonnegative_number(sigma, "sigma")
    integer(seed, "seed")
    _check_loss(loss, reduction)
    num_classes = validate_batch(model, x, y)
    state = snapshot(model)
    names = trainable_names(model)
    params = dict(model.named_parameters())
    per = per_example_gradients(model, {n: params[n] for n in names}, x, y, loss=loss)
    norms = torch.sqrt(sum(g.flatten(1).double().pow(2).sum(1) for g in per))
    factors = torch.where(norms > clip, clip / norms.clamp_min(torch.finfo(torch.float64).tiny), 1.0)
    generator = torch.Generator().manual_seed(seed)
    shared = []
    for g in per:
        total = (g.double() * factors.view(-1, *[1] * (g.dim() - 1))).sum(0)
        total = total + sigma * clip * torch.randn(total.shape, generator=generator, dtype=torch.float64).to(total.device)
        shared.append((total / x.shape[0] if reduction == "mean" else total).to(g.dtype))
    obs = make_observation("gradient", model, state, names, tuple(shared), x, num_classes, loss=loss,
                           reduction=reduction)
    record = {"name": "dp_sgd", "clip": clip, "sigma": sigma, "seed": seed}
    return dataclasses.replace(obs, meta=defense_meta(obs.meta, record))
