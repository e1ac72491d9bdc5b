"""The cases of ``bench_ops``: each module's ``cases(device)`` returns the ``Case`` objects it contributes."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str
    fused: Callable[[], object]
    eager: Callable[[], object]
    target: float  # ratio eager/fused that the case must reach


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
