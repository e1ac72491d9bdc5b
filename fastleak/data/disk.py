"""Datasets on the user's disk, in the layouts torchvision writes (nothing is downloaded or written).

``root`` is the folder passed as ``root=`` / ``--data-root`` (default ``$FASTLEAK_DATA``):

* ``cifar10``: ``root/cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` (train) and
  ``test_batch`` (test); ``cifar100``: ``root/cifar-100-python/`` with ``train`` and ``test`` (fine
  labels). These are pickles, read by a restricted unpickler that never runs code.
* ``mnist`` / ``fashion_mnist``: the IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) in
  ``root/MNIST/raw/`` (``root/FashionMNIST/raw/``), or directly in ``root``.
* ``imagenet``: ``root/val/<wnid>/*.JPEG`` (test) and ``root/train/<wnid>/*.JPEG`` (train); the class
  index is the position of the folder name among the sorted folder names.
* ``folder``: any ImageFolder, one subfolder per class holding image files. ``root/train/`` and
  ``root/test/`` (or ``root/val/``) are its splits when present; otherwise ``root`` itself is the
  test split and there is no train split. Classes are the sorted union of the class folders of all
  splits, so a class has the same index in each. Channels (1 for greyscale files, else 3) and the
  default side (the shorter side, at most 224) come from the first image.
* ``npz``: ``root`` is a ``.npz`` file with ``x`` (uint8 images, NHWC, NCHW or NHW) and ``y``
  (integer labels), which form the test split; or with ``x_train``/``y_train`` and
  ``x_test``/``y_test``. An optional ``num_classes`` entry, else the largest label plus one.

Only labels and file lists are read up front; image files are decoded when a batch asks for them.
"""
from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fastleak._checks import first_line
from fastleak.data.errors import DatasetError
from fastleak.data.registry import TRAITS, Split, Traits, on_disk
from fastleak.data.safe_pickle import load_cifar_batch
from fastleak.errors import InvalidValueError

MAX_FOLDER_SIDE = 224

# ----------------------------------------------------------------------------- CIFAR (pickled batches)

CIFAR10_LAYOUT = "DIR/cifar-10-batches-py/ with data_batch_1..data_batch_5 and test_batch"
CIFAR100_LAYOUT = "DIR/cifar-100-python/ with train and test"


def _cifar(name: str, folder: Path, files: list[str], label_key: str, layout: str, split: str) -> Split:
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; {name} expects {layout}")
    traits = TRAITS[name]
    data, labels = [], []
    for file in files:
        path = folder / file
        batch = load_cifar_batch(path, layout)
        x, y = batch.get("data"), batch.get(label_key)
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise DatasetError(f"{path} has no uint8 'data' of shape [N, 3072]; expected {layout}")
        if not isinstance(y, (list, np.ndarray)) or len(y) != len(x):
            raise DatasetError(f"{path} has no {label_key!r} list with one label per image; expected {layout}")
        data.append(x)
        labels.append(_labels(y, traits.num_classes, path, layout))
    images = np.concatenate(data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    origin = f"CIFAR-{traits.num_classes} {split} split from {folder} ({len(images)} images)"
    return Split(name, split, origin, traits, np.concatenate(labels), lambda indices: images[indices])


def _labels(values, num_classes: int, path: Path, layout: str) -> np.ndarray:
    labels = np.asarray(values)
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or (labels.size and (labels.min() < 0 or
                                                                            labels.max() >= num_classes)):
        raise DatasetError(f"{path} holds labels outside [0, {num_classes}); expected {layout}")
    return labels.astype(np.int64)


@on_disk("cifar10", CIFAR10_LAYOUT)
def _cifar10(root: Path, split: str) -> Split:
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return _cifar("cifar10", root / "cifar-10-batches-py", files, "labels", CIFAR10_LAYOUT, split)


@on_disk("cifar100", CIFAR100_LAYOUT)
def _cifar100(root: Path, split: str) -> Split:
    return _cifar("cifar100", root / "cifar-100-python", [split], "fine_labels", CIFAR100_LAYOUT, split)


# ----------------------------------------------------------------------------- MNIST (IDX files)

_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _idx_layout(folder: str) -> str:
    return (f"DIR/{folder}/raw/ (or DIR itself) with train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each optionally .gz")


def read_idx(path: Path, ndim: int, layout: str) -> np.ndarray:
    """The uint8 array of an IDX file (big-endian header: 0, 0, 0x08, ndim, then ndim int32 sizes)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{path} cannot be read ({exc}); expected {layout}") from None
    header = 4 + 4 * ndim
    if len(raw) < header or raw[:3] != b"\x00\x00\x08" or raw[3] != ndim:
        raise DatasetError(f"{path} is not a {ndim}-dimensional uint8 IDX file; expected {layout}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise DatasetError(f"{path} holds {len(raw) - header} bytes of data where its header announces "
                           f"{int(np.prod(shape))} ({'x'.join(map(str, shape))}): truncated or corrupt; "
                           f"expected {layout}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_file(folders: list[Path], stem: str, layout: str) -> Path:
    for folder in folders:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"{stem}[.gz] not found in {' or '.join(map(str, folders))}; expected {layout}")


def _mnist_like(name: str, folder: str, root: Path, split: str) -> Split:
    layout = _idx_layout(folder)
    folders = [root / folder / "raw", root]
    prefix = _IDX_PREFIX[split]
    images_path = _idx_file(folders, f"{prefix}-images-idx3-ubyte", layout)
    labels_path = _idx_file(folders, f"{prefix}-labels-idx1-ubyte", layout)
    images, labels = read_idx(images_path, 3, layout), read_idx(labels_path, 1, layout)
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels; "
                           f"expected {layout}")
    traits = TRAITS[name]
    origin = f"{name} {split} split from {images_path.parent} ({len(images)} images)"
    return Split(name, split, origin, traits, _labels(labels, traits.num_classes, labels_path, layout),
                 lambda indices: images[indices])


@on_disk("mnist", _idx_layout("MNIST"))
def _mnist(root: Path, split: str) -> Split:
    return _mnist_like("mnist", "MNIST", root, split)


@on_disk("fashion_mnist", _idx_layout("FashionMNIST"))
def _fashion_mnist(root: Path, split: str) -> Split:
    return _mnist_like("fashion_mnist", "FashionMNIST", root, split)


# ----------------------------------------------------------------------------- image folders

IMAGENET_LAYOUT = "DIR/val/<wnid>/*.JPEG (test) and DIR/train/<wnid>/*.JPEG (train)"
FOLDER_LAYOUT = ("an ImageFolder: DIR/<class>/<image files>, or DIR/train/<class>/... and "
                 "DIR/test/<class>/... (or DIR/val/<class>/...)")


def _image_files(folder: Path) -> list[Path]:
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if e.is_file() and os.path.splitext(e.name)[1].lower()
                      in extensions)


def _class_folders(folder: Path) -> list[str]:
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _decode(path: Path, mode: str | None, layout: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode) if mode else im.copy()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{path} cannot be decoded ({first_line(exc)}); expected {layout}") from None


def _image_folder(name: str, split_dir: Path, classes: list[str], traits: Traits | None, split: str,
                  layout: str) -> Split:
    files, labels = [], []
    for index, cls in enumerate(classes):
        if (split_dir / cls).is_dir():
            found = _image_files(split_dir / cls)
            files += found
            labels += [index] * len(found)
    if not files:
        raise DatasetError(f"{split_dir} holds no image files in class folders; expected {layout}")
    if traits is None:
        first = _decode(files[0], None, layout)
        grey = first.mode in ("1", "L", "LA", "I", "I;16", "F")
        traits = Traits(len(classes), 1 if grey else 3, min(min(first.size), MAX_FOLDER_SIDE), False)
    elif len(classes) > traits.num_classes:
        raise DatasetError(f"{split_dir} has {len(classes)} class folders, more than {name}'s "
                           f"{traits.num_classes} classes; expected {layout}")
    origin = f"{name} {split} split from {split_dir} ({len(files)} images, {len(classes)} classes)"
    return Split(name, split, origin, traits, np.asarray(labels, dtype=np.int64),
                 lambda indices: [_decode(files[i], traits.mode, layout) for i in indices])


def _folder_of(root: Path, names: tuple[str, ...], layout: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"{root} has no {' or '.join(names)} folder; expected {layout}")


@on_disk("imagenet", IMAGENET_LAYOUT)
def _imagenet(root: Path, split: str) -> Split:
    folder = _folder_of(root, ("train",) if split == "train" else ("val",), IMAGENET_LAYOUT)
    return _image_folder("imagenet", folder, _class_folders(folder), TRAITS["imagenet"], split, IMAGENET_LAYOUT)


@on_disk("folder", FOLDER_LAYOUT)
def _folder(root: Path, split: str) -> Split:
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; 'folder' expects {FOLDER_LAYOUT}")
    splits = {s: root / d for s, names in (("train", ("train",)), ("test", ("test", "val")))
              for d in names if (root / d).is_dir()}
    if not splits:
        splits = {"test": root}
    if split not in splits:
        raise DatasetError(f"{root} has no {split} folder (it is a single test split); expected {FOLDER_LAYOUT}")
    classes = sorted(set().union(*(_class_folders(d) for d in splits.values())))
    return _image_folder("folder", splits[split], classes, None, split, FOLDER_LAYOUT)


# ----------------------------------------------------------------------------- npz arrays

NPZ_LAYOUT = ("a .npz file with x (uint8 images: NHWC, NCHW or NHW) and y (integer labels), or with "
              "x_train/y_train and x_test/y_test")


def _channels_last(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[3] in (1, 3):
        return x[..., 0] if x.shape[3] == 1 else x
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)
    raise DatasetError(f"{path}: images of shape {list(x.shape)} are neither NHWC, NCHW (1 or 3 channels) nor NHW; "
                       f"expected {NPZ_LAYOUT}")


def _npz_arrays(path: Path, split: str) -> tuple[str, np.ndarray, np.ndarray, list[np.ndarray], int | None]:
    """The image key and the images, labels, every label array and the declared class count of ``split``."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise InvalidValueError("it holds a single array, not named arrays")
        with archive:
            keys = set(archive.files)
            xk = f"x_{split}" if f"x_{split}" in keys or split == "train" else "x"
            yk = "y" + xk[1:]
            if xk not in keys or yk not in keys:
                raise InvalidValueError(f"it has no {xk}/{yk} arrays, only {', '.join(sorted(keys)) or 'none'}")
            every = [archive[k] for k in sorted(keys) if k == "y" or k.startswith("y_")]
            declared = int(archive["num_classes"]) if "num_classes" in keys else None
            return xk, archive[xk], archive[yk], every, declared
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path} cannot be read as .npz ({first_line(exc)}); expected {NPZ_LAYOUT}") \
            from None


@on_disk("npz", NPZ_LAYOUT)
def _npz(root: Path, split: str) -> Split:
    if not root.is_file():
        raise DatasetError(f"{root} is not a file; 'npz' expects {NPZ_LAYOUT}")
    xk, x, y, every, declared = _npz_arrays(root, split)
    if x.dtype != np.uint8:
        raise DatasetError(f"{root}: {xk} has dtype {x.dtype}, not uint8; expected {NPZ_LAYOUT}")
    x = _channels_last(x, root)
    if not len(x):
        raise DatasetError(f"{root}: {xk} holds no images; expected {NPZ_LAYOUT}")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu":
        raise DatasetError(f"{root}: y{xk[1:]} must hold one integer label per image ({len(x)}), got dtype "
                           f"{y.dtype} and shape {list(y.shape)}; expected {NPZ_LAYOUT}")
    num_classes = declared if declared is not None else 1 + max((int(v.max()) for v in every
                                                                 if v.size and v.dtype.kind in "iu"), default=0)
    traits = Traits(num_classes, 1 if x.ndim == 3 else 3, min(x.shape[1:3]), False)
    labels = _labels(y, num_classes, root, NPZ_LAYOUT)
    origin = f"npz {split} split from {root} ({len(x)} images, {num_classes} classes)"
    return Split("npz", split, origin, traits, labels, lambda indices: x[indices])
