"""Labelled batches of real images with a chosen label pattern.

``load(name, n, *, seed=0, labels=None, size=None, root=None, split="test")`` returns
``(images, labels)``: float32 ``[n, C, H, W]`` in [0, 1] and int64 ``[n]``.

Where the images come from: ``root`` (default ``$FASTLEAK_DATA``) names a folder in the layout the
dataset expects (``fastleak.data.disk``); without either, the images that ship with fastleak's
dependencies (``fastleak.data.samples``). ``split`` is "test" (held out: the batches an attack
targets) or "train".

Label patterns (``labels``):

* ``None`` or ``"natural"``: the labels of the split's images taken in a seeded random order
  (cycling through that order when ``n`` exceeds the number of images);
* ``"unique"``: ``n`` different classes drawn at random;
* ``"random"``: ``n`` classes drawn at random with replacement (duplicates allowed);
* ``"repeat:k"``: consecutive groups of ``k`` identical labels, the groups' classes different and
  drawn at random (the last group is shorter when ``k`` does not divide ``n``);
* a sequence of ``n`` class ids, used as given.

Only classes that have at least one image are drawn ("available" classes; the shipped CIFAR-10
samples have no image of classes 2 and 4). ``"unique"`` with more samples, or ``"repeat:k"`` with
more groups, than available classes raises ValueError, as does an explicit class id that is out of
range or unavailable (the message lists the available classes).

Images: the images of each class are visited in a seeded random order; the j-th request for a
class with m images gets image ``order[j % m]``, and from the second round on (``j >= m``) a
deterministic variant of it rather than an exact copy. The variants of an image are: its horizontal
mirror (first, only for datasets where flips keep the class, i.e. not for digits), then translations
by (dy, dx) in [-p, p]^2, (dy, dx) != (0, 0), p = max(1, side // 8), with reflected borders, each
also mirrored where flips are allowed, in a seeded order. So a batch holds no exact duplicate
until an image's variants are exhausted. Whenever variants are needed (the batch asks a class, or
the whole set, for more images than exist) a warning is logged on the "fastleak.data" logger.
Only the chosen images are decoded.

``size``: images are resized (shorter side to ``size``, bicubic) and centre-cropped to
``size x size``; ``None`` keeps the dataset's default side (``info(name).size``: 32 for CIFAR, 28
for (Fashion-)MNIST, 224 for ImageNet). Everything is deterministic given ``seed``.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fastleak._registry import Registry
from fastleak.data.registry import Split, open_split
from fastleak.errors import InvalidValueError

log = logging.getLogger("fastleak.data")

LabelSpec = str | Sequence[int] | torch.Tensor | np.ndarray | None
Root = str | os.PathLike | None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    size: int                            # default square side
    num_images: int                      # real images available
    class_counts: tuple[int, ...]        # images per class id
    available_classes: tuple[int, ...]   # classes with at least one image
    origin: str
    split: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


def _side(source: Split, size: int | None) -> int:
    if size is None:
        return source.traits.size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidValueError(f"size must be a positive int (square side in pixels) or None, got {size!r}")
    return size


def _info(source: Split) -> DatasetInfo:
    t = source.traits
    counts = tuple(np.bincount(source.labels, minlength=t.num_classes).tolist())
    return DatasetInfo(source.dataset, t.num_classes, t.channels, t.size, len(source), counts,
                       tuple(c for c, k in enumerate(counts) if k > 0), source.origin, source.split)


def info(name: str, *, root: Root = None, split: str = "test") -> DatasetInfo:
    """Classes, channels, default size and per-class image counts of one split of dataset ``name``
    (``root`` and ``split`` as for ``load``); reads labels, decodes no image."""
    return _info(open_split(name, root=root, split=split))


def num_classes(name: str, *, root: Root = None) -> int:
    return info(name, root=root).num_classes


PatternFn = Callable[[int, str | None, np.ndarray, DatasetInfo, np.random.Generator], list[int]]
PATTERNS: Registry[PatternFn] = Registry("label pattern")


def _need_classes(count: int, pattern: str, meta: DatasetInfo) -> None:
    if count > len(meta.available_classes):
        raise InvalidValueError(f"labels={pattern!r} needs {count} different classes but {meta.name} has images of "
                                f"only {len(meta.available_classes)} classes: {list(meta.available_classes)}")


@PATTERNS.register("natural")
def _natural(n, arg, pool_labels, meta, rng):
    order = rng.permutation(len(pool_labels))
    return [int(pool_labels[order[i % len(order)]]) for i in range(n)]


@PATTERNS.register("unique")
def _unique(n, arg, pool_labels, meta, rng):
    _need_classes(n, "unique", meta)
    return [int(c) for c in rng.choice(meta.available_classes, n, replace=False)]


@PATTERNS.register("random")
def _random(n, arg, pool_labels, meta, rng):
    return [int(c) for c in rng.choice(meta.available_classes, n, replace=True)]


@PATTERNS.register("repeat")
def _repeat(n, arg, pool_labels, meta, rng):
    k = int(arg) if arg is not None and arg.isdigit() else 0
    if k < 1:
        raise InvalidValueError(f"labels='repeat:k' needs a positive integer k, got 'repeat:{arg or ''}'")
    groups = math.ceil(n / k)
    _need_classes(groups, f"repeat:{k}", meta)
    return [int(c) for c in np.repeat(rng.choice(meta.available_classes, groups, replace=False), k)[:n]]


def _explicit(spec, n: int, meta: DatasetInfo) -> list[int]:
    values = spec.tolist() if isinstance(spec, (torch.Tensor, np.ndarray)) else list(spec)
    if len(values) != n:
        raise InvalidValueError(f"labels lists {len(values)} class ids but n={n}")
    for c in values:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < meta.num_classes:
            raise InvalidValueError(f"labels must hold class ids in [0, {meta.num_classes}) for {meta.name}, got {c!r}")
        if meta.class_counts[c] == 0:
            raise InvalidValueError(f"{meta.name} has no image of class {c}; available classes: "
                                    f"{list(meta.available_classes)}")
    return [int(c) for c in values]


def _draw_labels(spec: LabelSpec, n: int, pool_labels: np.ndarray, meta: DatasetInfo,
                 rng: np.random.Generator) -> list[int]:
    if spec is None:
        spec = "natural"
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        if name not in PATTERNS or bool(arg) != (name == "repeat"):
            raise InvalidValueError(f"labels must be one of 'natural', 'unique', 'random', 'repeat:k' or a sequence of "
                                    f"class ids, got {spec!r}")
        return PATTERNS.get(name)(n, arg or None, pool_labels, meta, rng)
    return _explicit(spec, n, meta)


def _variants(flip: bool, pad: int, rng: np.random.Generator) -> list[tuple[bool, int, int]]:
    """The (mirror, dy, dx) transforms that make copies of one image, identity excluded, in order."""
    shifts = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1) if (dy, dx) != (0, 0)]
    rest = [(f, dy, dx) for dy, dx in shifts for f in ((False, True) if flip else (False,))]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    return ([(True, 0, 0)] if flip else []) + rest


def _transform(image: torch.Tensor, mirror: bool, dy: int, dx: int, pad: int) -> torch.Tensor:
    if mirror:
        image = image.flip(-1)
    if dy or dx:
        h, w = image.shape[-2:]
        padded = F.pad(image.unsqueeze(0), (pad, pad, pad, pad), mode="reflect")[0]
        image = padded[:, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return image


def load(name: str, n: int, *, seed: int = 0, labels: LabelSpec = None, size: int | None = None,
         root: Root = None, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``n`` real images of dataset ``name`` with the label pattern ``labels`` (see module doc)."""
    source = open_split(name, root=root, split=split)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidValueError(f"n must be a positive int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidValueError(f"seed must be a non-negative int, got {seed!r}")
    side = _side(source, size)
    meta = _info(source)
    rng = np.random.default_rng(seed)
    wanted = _draw_labels(labels, n, source.labels, meta, rng)

    picks: list[tuple[int, int, int]] = []   # (slot, image index, round), round > 0 asks for a variant
    short: dict[int, tuple[int, int]] = {}
    for c in sorted(set(wanted)):
        members = np.flatnonzero(source.labels == c)
        order = members[rng.permutation(len(members))]
        slots = [i for i, v in enumerate(wanted) if v == c]
        picks += [(slot, int(order[j % len(order)]), j // len(order)) for j, slot in enumerate(slots)]
        if len(slots) > len(order):
            short[c] = (len(order), len(slots))
    chosen = sorted({index for _, index, _ in picks})
    decoded = dict(zip(chosen, source.pixels(chosen, side).float().div(255)))

    pad = max(1, side // 8)
    out = torch.empty(n, *decoded[chosen[0]].shape)
    variants: dict[int, list[tuple[bool, int, int]]] = {}
    for slot, index, rounds in picks:
        image = decoded[index]
        if rounds:
            if index not in variants:
                c = wanted[slot]
                variants[index] = _variants(source.traits.flip, pad, np.random.default_rng([seed, c, index]))
            choices = variants[index]
            image = _transform(image, *choices[(rounds - 1) % len(choices)], pad)
        out[slot] = image
    if short:
        detail = ", ".join(f"class {c}: {have} images for {need}" for c, (have, need) in sorted(short.items()))
        log.warning("%s: the batch of %d needs more images than exist (%d in the %s split; %s); the extra ones are "
                    "mirrored/shifted variants", name, n, meta.num_images, split, detail)
    return out, torch.tensor(wanted, dtype=torch.long)
