"""Writers of tiny datasets in the on-disk layouts fastleak reads, filled with real shipped images."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

import fastleak.data as D


def real_pixels(name: str, n: int, seed: int = 0, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real images of a shipped dataset as uint8 NHWC (NHW for greyscale) and their labels."""
    x, y = D.load(name, n, seed=seed, size=size, labels="natural")
    pixels = x.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    return (pixels[..., 0] if pixels.shape[-1] == 1 else pixels), y.numpy()


class _Python2Pickler(pickle._Pickler):
    """Protocol 2 as Python 2's cPickle wrote the CIFAR files: byte strings as BINSTRING opcodes."""

    def save_bytes(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = dict(pickle._Pickler.dispatch)
    dispatch[bytes] = save_bytes


def cifar_pickle(blob: dict) -> bytes:
    """``blob`` pickled byte for byte the way the CIFAR "python version" files are (numpy 1.x names)."""
    import io

    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump({k.encode(): v for k, v in blob.items()})
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def write_cifar10(root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    chunks = np.array_split(np.arange(len(train[0])), 5)
    parts = [(f"data_batch_{i + 1}", train[0][c], train[1][c]) for i, c in enumerate(chunks)]
    for name, x, y in parts + [("test_batch", *test)]:
        blob = {"batch_label": name, "labels": [int(v) for v in y],
                "data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), "filenames": [f"{i}.png" for i in range(len(x))]}
        (folder / name).write_bytes(cifar_pickle(blob))


def write_cifar100(root: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, (x, y) in (("train", train), ("test", test)):
        blob = {"filenames": [f"{i}.png" for i in range(len(x))], "batch_label": name,
                "fine_labels": [int(v) for v in y], "coarse_labels": [int(v) // 5 for v in y],
                "data": x.transpose(0, 3, 1, 2).reshape(len(x), -1)}
        (folder / name).write_bytes(cifar_pickle(blob))


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
              compress: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, (x, y) in (("train", train), ("t10k", test)):
        for kind, array in (("images-idx3", x), ("labels-idx1", y)):
            data = idx_bytes(array)
            path = folder / f"{prefix}-{kind}-ubyte"
            if compress:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
            else:
                path.write_bytes(data)


def write_image_folder(folder: Path, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                       ext: str = ".png") -> list[Path]:
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        path = folder / class_names[int(label)] / f"img_{i:04d}{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths
