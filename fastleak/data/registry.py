"""The dataset registry: each dataset opens one split at a time, from the shipped samples or from disk.

A ``Split`` knows every label up front and decodes images only when ``pixels`` asks for them, so
a batch of 8 from 50,000 JPEGs decodes 8 files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from fastleak._registry import Registry
from fastleak.data.errors import DatasetError
from fastleak.errors import InvalidValueError

SPLITS = ("train", "test")
ROOT_VARIABLE = "FASTLEAK_DATA"

# What ``Split.read`` returns: uint8 arrays [n, H, W] or [n, H, W, C], or one PIL image per index.
Images = Union[np.ndarray, Sequence[Image.Image]]


@dataclass(frozen=True)
class Traits:
    """What is known of a dataset before its files are read."""

    num_classes: int
    channels: int
    size: int     # default square side
    flip: bool    # whether horizontal flips keep an image's class (not for digits)

    @property
    def mode(self) -> str:
        """The PIL mode of the images: "L" (greyscale) or "RGB"."""
        return "L" if self.channels == 1 else "RGB"


# The datasets whose traits do not depend on the files; "folder" and "npz" read theirs from the data.
TRAITS = {
    "cifar10": Traits(10, 3, 32, True),
    "cifar100": Traits(100, 3, 32, True),
    "mnist": Traits(10, 1, 28, False),
    "fashion_mnist": Traits(10, 1, 28, True),
    "imagenet": Traits(1000, 3, 224, True),
}


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: its labels (int64 [N]) and ``read(indices)``, which decodes those images."""

    dataset: str
    split: str
    origin: str
    traits: Traits
    labels: np.ndarray
    read: Callable[[np.ndarray], Images]

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, indices: Sequence[int] | np.ndarray, size: int | None = None) -> torch.Tensor:
        """The images at ``indices`` as uint8 ``[n, C, size, size]`` (default: the dataset's side).

        Images of another size are resized (shorter side to ``size``, bicubic) and centre-cropped."""
        side = self.traits.size if size is None else size
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or not len(indices):
            raise InvalidValueError(f"indices must be a non-empty sequence of image indices, got shape {indices.shape}")
        images = self.read(indices)
        if isinstance(images, np.ndarray) and images.shape[1:3] == (side, side):
            stacked = images
        else:
            stacked = np.stack([np.asarray(_resize(_as_image(im, self.traits.mode), side)) for im in images])
        out = torch.from_numpy(np.ascontiguousarray(stacked))
        out = out.unsqueeze(1) if out.dim() == 3 else out.permute(0, 3, 1, 2)
        return out.contiguous()


def _as_image(image: Image.Image | np.ndarray, mode: str) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return image if image.mode == mode else image.convert(mode)


def _resize(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    if (w, h) == (size, size):
        return im
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


ShippedReader = Callable[[str], Split]
DiskReader = Callable[[Path, str], Split]


@dataclass(frozen=True)
class Layout:
    """How a dataset lies on disk: ``describe`` names the files under DIR, ``open(root, split)`` reads them."""

    describe: str
    open: DiskReader


SHIPPED: Registry[ShippedReader] = Registry("dataset with shipped images")
LAYOUTS: Registry[Layout] = Registry("dataset layout")


def shipped(name: str) -> Callable[[ShippedReader], ShippedReader]:
    """Register ``read(split) -> Split`` for the images of ``name`` that ship with fastleak's dependencies."""
    return SHIPPED.register(name)


def on_disk(name: str, describe: str) -> Callable[[DiskReader], DiskReader]:
    """Register ``read(root, split) -> Split`` for dataset ``name`` in the layout ``describe`` under ``root``."""

    def decorator(read: DiskReader) -> DiskReader:
        LAYOUTS.register(name)(Layout(describe, read))
        return read

    return decorator


def names() -> tuple[str, ...]:
    return tuple(sorted(set(SHIPPED.names()) | set(LAYOUTS.names())))


def resolve_root(root: str | os.PathLike | None) -> Path | None:
    """``root``, else the ``FASTLEAK_DATA`` environment variable, else None (the shipped samples)."""
    if root is None:
        root = os.environ.get(ROOT_VARIABLE) or None
    return None if root is None else Path(root).expanduser().resolve()


def open_split(name: str, *, root: str | os.PathLike | None = None, split: str = "test") -> Split:
    """The ``split`` ("train" or "test") of dataset ``name``: from ``root`` (default ``$FASTLEAK_DATA``)
    in the layout the dataset documents, or, with neither, from the shipped samples."""
    if name not in SHIPPED and name not in LAYOUTS:
        raise InvalidValueError(f"unknown dataset {name!r}; valid names: {', '.join(names())}")
    if split not in SPLITS:
        raise InvalidValueError(f"split must be 'train' or 'test', got {split!r}")
    return _open(name, resolve_root(root), split)


@lru_cache(maxsize=8)
def _open(name: str, root: Path | None, split: str) -> Split:
    if root is None:
        if name not in SHIPPED:
            raise DatasetError(f"{name} has no shipped images: pass root=DIR (--data-root DIR, or set "
                               f"{ROOT_VARIABLE}) holding {LAYOUTS.get(name).describe}")
        return SHIPPED.get(name)(split)
    layout = LAYOUTS.get(name)
    if not root.exists():
        raise DatasetError(f"data root {root} does not exist; {name} expects {layout.describe}")
    return layout.open(root, split)
