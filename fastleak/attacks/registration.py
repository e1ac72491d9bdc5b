"""Image registration for GradInversion's group consistency.

Each restart's reconstruction of a batch slot is aligned to the slot's group mean by an
optimised affine transform (translation, rotation, scale and shear through
``affine_grid``/``grid_sample``); the consensus is the mean of the aligned images. Every
restart is then pulled toward the consensus mapped back into its own frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _warp(images: Tensor, theta: Tensor) -> Tensor:
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


def register_to_mean(x: Tensor, steps: int = 25, lr: float = 0.01, translation_only: bool = False) -> Tensor:
    """Affine transforms theta [R, B, 2, 3] aligning each x[r, b] ([R, B, C, H, W]) to mean_r x[:, b]."""
    r, b = x.shape[:2]
    images = x.detach().flatten(0, 1)
    target = x.detach().mean(0, keepdim=True).expand_as(x).flatten(0, 1)
    identity = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(r * b, 2, 3)
    delta = torch.zeros(r * b, 2, 3, dtype=x.dtype, device=x.device, requires_grad=True)
    mask = torch.zeros(2, 3, dtype=x.dtype, device=x.device)
    mask[:, 2] = 1
    if not translation_only:
        mask[:] = 1
    opt = torch.optim.Adam([delta], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = (_warp(images, identity + delta * mask) - target).pow(2).mean()
            loss.backward()
            opt.step()
    theta = identity + delta.detach() * mask
    with torch.no_grad():
        def per_image(t: Tensor) -> Tensor:
            return (_warp(images, t) - target).pow(2).flatten(1).mean(1)

        better = per_image(theta) < per_image(identity)
    # Adam's normalised steps move even where the gradient vanishes: keep only real improvements.
    return torch.where(better[:, None, None], theta, identity).view(r, b, 2, 3)


def invert_affine(theta: Tensor) -> Tensor:
    a, t = theta[..., :2], theta[..., 2:]
    a_inv = torch.linalg.inv(a)
    return torch.cat([a_inv, -a_inv @ t], dim=-1)


def consensus(x: Tensor, theta: Tensor) -> Tensor:
    """Mean over restarts of the aligned images; [B, C, H, W]."""
    r, b = x.shape[:2]
    aligned = _warp(x.detach().flatten(0, 1), theta.flatten(0, 1)).view_as(x)
    return aligned.mean(0)


def consistency_loss(x: Tensor, center: Tensor, theta: Tensor) -> Tensor:
    """Per-restart mean squared distance [R] between x and the consensus in each restart's frame."""
    r, b = x.shape[:2]
    back = _warp(center.expand(r, *center.shape).flatten(0, 1), invert_affine(theta).flatten(0, 1))
    return (x.flatten(0, 1) - back).pow(2).flatten(1).mean(1).view(r, b).mean(1)
