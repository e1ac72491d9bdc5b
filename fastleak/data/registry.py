"""The dataset registry: each entry reads a small set of real labelled images."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image

from fastleak._registry import Registry

Reader = Callable[[], tuple[list[Image.Image], list[int]]]


@dataclass(frozen=True)
class Source:
    """A registered dataset: ``read()`` returns the real images (PIL) and their class ids."""

    name: str
    read: Reader
    num_classes: int
    channels: int
    size: int          # default square side of the returned images
    flip: bool         # whether horizontal flips keep an image's class (not for digits)
    origin: str        # where the images come from


DATASETS: Registry[Source] = Registry("dataset")


def register(name: str, *, num_classes: int, channels: int, size: int, flip: bool,
             origin: str) -> Callable[[Reader], Reader]:
    """Register ``read() -> (images, labels)`` as dataset ``name``."""

    def decorator(read: Reader) -> Reader:
        DATASETS.register(name)(Source(name, read, num_classes, channels, size, flip, origin))
        return read

    return decorator


def names() -> tuple[str, ...]:
    return DATASETS.names()
