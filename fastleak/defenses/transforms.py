"""Defenses that transform the shared tensors: noise, norm clipping, sparsification, quantisation."""
from __future__ import annotations

import math

import torch

from fastleak._checks import fraction, int_in_range, nonnegative_number, positive_number
from fastleak.defenses.registry import Tensors, register


def _normal(generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=torch.float64).to(device=like.device, dtype=like.dtype)


@register("gaussian", stochastic=True)
def gaussian(tensors: Tensors, generator: torch.Generator, sigma: float) -> Tensors:
    """Add i.i.d. N(0, sigma^2) noise to every entry."""
    sigma = nonnegative_number(sigma, "sigma")
    return tuple(t + sigma * _normal(generator, t) for t in tensors)


@register("laplace", stochastic=True)
def laplace(tensors: Tensors, generator: torch.Generator, scale: float) -> Tensors:
    """Add i.i.d. Laplace(0, scale) noise (density exp(-|v|/scale) / (2 scale)) to every entry."""
    scale = nonnegative_number(scale, "scale")
    out = []
    for t in tensors:
        # the difference of two Exp(1) variables is Laplace(0, 1); 1 - U lies in (0, 1]
        e1 = -torch.log1p(-torch.rand(t.shape, generator=generator, dtype=torch.float64))
        e2 = -torch.log1p(-torch.rand(t.shape, generator=generator, dtype=torch.float64))
        out.append(t + (scale * (e1 - e2)).to(device=t.device, dtype=t.dtype))
    return tuple(out)


def _norm(tensors: Tensors) -> torch.Tensor:
    return torch.sqrt(sum(t.double().pow(2).sum() for t in tensors))


def _scale_to(tensors: Tensors, max_norm: float) -> Tensors:
    norm = _norm(tensors)
    factor = (max_norm / norm).clamp(max=1.0) if norm > 0 else torch.ones((), dtype=torch.float64)
    return tuple(t * factor.to(t.dtype) for t in tensors)


@register("clip")
def clip(tensors: Tensors, max_norm: float, per_layer: bool = False) -> Tensors:
    """Scale the shared tensors down so their global L2 norm is at most ``max_norm`` (unchanged when
    already within). ``per_layer=True``: bound every tensor's own norm by ``max_norm`` instead."""
    max_norm = positive_number(max_norm, "max_norm")
    if per_layer:
        return tuple(_scale_to((t,), max_norm)[0] for t in tensors)
    return _scale_to(tensors, max_norm)


def _keep_largest(t: torch.Tensor, kept: int) -> torch.Tensor:
    flat = t.reshape(-1)
    out = torch.zeros_like(flat)
    if kept > 0:
        index = flat.abs().topk(kept, sorted=False).indices
        out[index] = flat[index]
    return out.view_as(t)


@register("topk")
def topk(tensors: Tensors, keep: float) -> Tensors:
    """Top-k sparsification per tensor: keep the ``round(keep * numel)`` entries of largest magnitude
    (ties broken by ``torch.topk``), zero the rest."""
    keep = fraction(keep, "keep")
    return tuple(_keep_largest(t, math.floor(keep * t.numel() + 0.5)) for t in tensors)


@register("prune")
def prune(tensors: Tensors, ratio: float) -> Tensors:
    """Magnitude pruning per tensor (the DLG defense): zero the ``round(ratio * numel)`` entries of
    smallest magnitude, keep the others."""
    ratio = fraction(ratio, "ratio")
    return tuple(_keep_largest(t, t.numel() - math.floor(ratio * t.numel() + 0.5)) for t in tensors)


@register("quantize")
def quantize(tensors: Tensors, bits: int) -> Tensors:
    """Uniform quantisation per tensor: round every entry to the nearest of 2**bits evenly spaced
    levels from the tensor's minimum to its maximum (both are levels). Constant tensors are unchanged."""
    int_in_range(bits, "bits", 1, 16)
    out = []
    for t in tensors:
        if t.numel() == 0:
            out.append(t.clone())
            continue
        lo, hi = t.min(), t.max()
        if lo == hi:
            out.append(t.clone())
            continue
        step = (hi - lo) / (2 ** bits - 1)
        out.append(torch.round((t - lo) / step) * step + lo)
    return tuple(out)
