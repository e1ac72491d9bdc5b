"""Total variation, forward + backward: fused op against per-image tensor slicing."""
from __future__ import annotations

import torch

from benchmarks.cases import Case, foolbox_images
from fastleak.ops import total_variation


def eager_tv(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
            + (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean(dim=(1, 2, 3)))


def _batches() -> dict[str, torch.Tensor]:
    cifar = torch.cat([foolbox_images("cifar10")[0], foolbox_images("cifar100")[0]])
    return {
        "64x3x32x32 cifar": cifar[torch.arange(64) % len(cifar)],
        "8x3x224x224 imagenet": foolbox_images("imagenet", 224)[0][:8],
    }


def cases(device: str) -> list[Case]:
    out = []
    for name, batch in _batches().items():
        x = batch.to(device).requires_grad_(True)
        out.append(Case(
            name=f"total_variation p=1 fwd+bwd {name}",
            fused=lambda x=x: torch.autograd.grad(total_variation(x).sum(), x),
            eager=lambda x=x: torch.autograd.grad(eager_tv(x).sum(), x),
            target=2.0,
        ))
    return out
