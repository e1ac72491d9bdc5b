"""Figures of a run: the reconstruction grid (Pillow) and the loss curve (matplotlib)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

_CELL = 96
_CAPTION = 16


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    array = np.transpose(array, (1, 2, 0))
    mode = "L" if array.shape[2] == 1 else "RGB"
    pil = Image.fromarray(array[..., 0] if mode == "L" else array, mode)
    return pil.convert("RGB").resize((_CELL, _CELL), Image.NEAREST)


def reconstruction_grid(true: torch.Tensor, reconstructed: torch.Tensor, captions: Sequence[str],
                        path: str | os.PathLike) -> tuple[int, int]:
    """Ground truth in the top row, the matched reconstruction below it with its caption
    (e.g. the PSNR). Returns the image size (width, height)."""
    n = true.shape[0]
    width, height = n * _CELL, 2 * _CELL + _CAPTION
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i in range(n):
        canvas.paste(_to_pil(true[i]), (i * _CELL, 0))
        canvas.paste(_to_pil(reconstructed[i]), (i * _CELL, _CELL))
        draw.text((i * _CELL + 4, 2 * _CELL + 2), captions[i], fill="black", font=font)
    canvas.save(path)
    return width, height


def image_rows(rows: Sequence[torch.Tensor], captions: Sequence[Sequence[str]], path: str | os.PathLike) -> None:
    """One row of images per entry of ``rows`` ([B_i, C, H, W] in [0, 1]), each image captioned."""
    width = max(r.shape[0] for r in rows) * _CELL
    height = len(rows) * (_CELL + _CAPTION)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (images, texts) in enumerate(zip(rows, captions)):
        top = i * (_CELL + _CAPTION)
        for j in range(images.shape[0]):
            canvas.paste(_to_pil(images[j]), (j * _CELL, top))
            draw.text((j * _CELL + 4, top + _CELL + 2), texts[j], fill="black", font=font)
    canvas.save(path)


def loss_plot(steps: Sequence[int], history: torch.Tensor, path: str | os.PathLike, title: str = "",
              names: Sequence[str] | None = None) -> None:
    """The objective of every restart against the step (log scale); ``names`` label the restarts
    (default: "restart r")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    values = history.detach().cpu().numpy()
    for r in range(values.shape[1]):
        ax.plot(list(steps), values[:, r], label=names[r] if names else f"restart {r}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("objective")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
