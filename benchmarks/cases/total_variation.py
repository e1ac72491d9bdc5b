"""Total variation, forward + backward: fused op against per-image tensor slicing."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench_ops import Case
from fastleak.ops import total_variation


def foolbox_images(prefix: str, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Real sample images shipped with foolbox (``cifar10``, ``cifar100``, ``imagenet``) as
    [B, 3, size, size] in [0, 1], and their labels (parsed from the file names)."""
    data = Path(importlib.util.find_spec("foolbox").origin).parent / "data"
    files = sorted(data.glob(f"{prefix}_*.*"))
    images = []
    for f in files:
        img = Image.open(f).convert("RGB")
        if size is not None:
            img = img.resize((size, size), Image.BICUBIC)
        images.append(np.asarray(img))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor([int(f.stem.split("_")[-1]) for f in files])


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
