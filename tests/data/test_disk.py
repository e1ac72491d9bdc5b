"""Datasets from disk: every layout round-trips real pixels exactly, decodes lazily and refuses bad files."""
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fastleak.data as D
from tests.data.layouts import (cifar_pickle, idx_bytes, real_pixels, write_cifar10, write_cifar100,
                                write_idx, write_image_folder)


def tree(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*")}


def as_nchw(pixels: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.array(pixels))
    return t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)


def assert_split(split: D.Split, pixels: np.ndarray, labels: np.ndarray, size: int | None = None) -> None:
    assert len(split) == len(labels)
    assert np.array_equal(split.labels, labels)
    assert torch.equal(split.pixels(np.arange(len(labels)), size), as_nchw(pixels))


def assert_batch_from(x: torch.Tensor, y: torch.Tensor, pixels: np.ndarray, labels: np.ndarray) -> None:
    """Every image of a loaded batch is one of ``pixels`` exactly, with its label."""
    pool = as_nchw(pixels).float().div(255).flatten(1)
    for image, label in zip(x, y):
        match = torch.nonzero((pool == image.flatten()).all(1)).flatten()
        assert len(match) >= 1 and int(label) in labels[match.numpy()].tolist()


@pytest.fixture(scope="module")
def cifar_images():
    pixels, labels = real_pixels("cifar10", 20)
    return (pixels[:15], labels[:15]), (pixels[15:], labels[15:])


def test_cifar10_batches_round_trip(tmp_path, cifar_images):
    train, test = cifar_images
    write_cifar10(tmp_path, train, test)
    assert_split(D.open_split("cifar10", root=tmp_path, split="train"), *train)
    assert_split(D.open_split("cifar10", root=tmp_path, split="test"), *test)
    x, y = D.load("cifar10", 4, root=tmp_path, split="test", labels="natural", seed=1)
    assert x.shape == (4, 3, 32, 32)
    assert_batch_from(x, y, *test)
    meta = D.info("cifar10", root=tmp_path, split="train")
    assert meta.num_images == 15 and meta.split == "train" and sum(meta.class_counts) == 15


def test_cifar100_fine_labels_round_trip(tmp_path):
    pixels, labels = real_pixels("cifar100", 12)
    write_cifar100(tmp_path, (pixels[:8], labels[:8]), (pixels[8:], labels[8:]))
    assert_split(D.open_split("cifar100", root=tmp_path, split="train"), pixels[:8], labels[:8])
    assert_split(D.open_split("cifar100", root=tmp_path, split="test"), pixels[8:], labels[8:])
    assert D.info("cifar100", root=tmp_path).num_classes == 100


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("under_raw", [True, False])
def test_idx_files_round_trip(tmp_path, name, folder, compress, under_raw):
    pixels, labels = real_pixels("mnist", 30)
    write_idx(tmp_path / folder / "raw" if under_raw else tmp_path, (pixels[:20], labels[:20]),
              (pixels[20:], labels[20:]), compress)
    assert_split(D.open_split(name, root=tmp_path, split="train"), pixels[:20], labels[:20])
    assert_split(D.open_split(name, root=tmp_path, split="test"), pixels[20:], labels[20:])


def test_imagenet_val_folder_indexes_classes_by_sorted_wnid(tmp_path):
    pixels, _ = real_pixels("imagenet", 6, size=64)
    wnids = ["n01440764", "n01443537", "n09999999"]
    labels = np.array([2, 0, 1, 2, 0, 1])
    paths = write_image_folder(tmp_path / "val", pixels, labels, wnids, ext=".JPEG")
    split = D.open_split("imagenet", root=tmp_path, split="test")
    decoded = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(paths)])
    assert_split(split, decoded, np.array([0, 0, 1, 1, 2, 2]), size=64)
    x, _ = D.load("imagenet", 2, root=tmp_path, size=32, labels=[2, 1])
    assert x.shape == (2, 3, 32, 32)
    assert D.info("imagenet", root=tmp_path).num_classes == 1000
    with pytest.raises(D.DatasetError, match=r"no train folder; expected DIR/val/<wnid>"):
        D.open_split("imagenet", root=tmp_path, split="train")


def test_image_folder_with_splits_shares_class_indices(tmp_path):
    pixels, labels = real_pixels("mnist", 12)
    names = [f"digit_{c}" for c in range(10)]
    write_image_folder(tmp_path / "train", pixels[:8], labels[:8], names)
    write_image_folder(tmp_path / "val", pixels[8:], labels[8:], names)
    present = sorted(set(labels.tolist()))   # the class folders that exist, in sorted order
    index = {c: present.index(c) for c in present}
    train = D.open_split("folder", root=tmp_path, split="train")
    assert train.traits.channels == 1 and train.traits.size == 28 and train.traits.num_classes == len(present)
    order = sorted(range(8), key=lambda i: (index[int(labels[i])], i))
    assert_split(train, pixels[:8][order], np.array([index[int(labels[i])] for i in order]))
    test = D.open_split("folder", root=tmp_path, split="test")
    assert set(test.labels.tolist()) <= set(range(len(present)))


def test_flat_image_folder_is_a_test_split_only(tmp_path):
    pixels, labels = real_pixels("cifar10", 6)
    write_image_folder(tmp_path, pixels, labels, [f"class{c}" for c in range(10)])
    split = D.open_split("folder", root=tmp_path)
    assert split.traits.channels == 3 and len(split) == 6
    with pytest.raises(D.DatasetError, match="no train folder"):
        D.open_split("folder", root=tmp_path, split="train")


@pytest.mark.parametrize("order", ["nhwc", "nchw", "nhw"])
def test_npz_round_trip(tmp_path, order):
    name = "mnist" if order == "nhw" else "cifar10"
    pixels, labels = real_pixels(name, 10)
    stored = pixels.transpose(0, 3, 1, 2) if order == "nchw" else pixels
    np.savez(tmp_path / "d.npz", x=stored, y=labels)
    assert_split(D.open_split("npz", root=tmp_path / "d.npz"), pixels, labels)
    assert D.open_split("npz", root=tmp_path / "d.npz").traits.num_classes == int(labels.max()) + 1
    with pytest.raises(D.DatasetError, match="no x_train/y_train"):
        D.open_split("npz", root=tmp_path / "d.npz", split="train")


def test_npz_with_two_splits_and_declared_classes(tmp_path):
    pixels, labels = real_pixels("cifar10", 10)
    np.savez(tmp_path / "d.npz", x_train=pixels[:6], y_train=labels[:6], x_test=pixels[6:], y_test=labels[6:],
             num_classes=np.array(10))
    assert_split(D.open_split("npz", root=tmp_path / "d.npz", split="train"), pixels[:6], labels[:6])
    assert_split(D.open_split("npz", root=tmp_path / "d.npz", split="test"), pixels[6:], labels[6:])
    assert D.info("npz", root=tmp_path / "d.npz").num_classes == 10


def test_environment_variable_gives_the_default_root(tmp_path, monkeypatch, cifar_images):
    write_cifar10(tmp_path, *cifar_images)
    monkeypatch.setenv("FASTLEAK_DATA", str(tmp_path))
    assert D.info("cifar10").num_images == 5
    assert D.info("cifar10", split="train").num_images == 15
    monkeypatch.delenv("FASTLEAK_DATA")
    assert D.info("cifar10").num_images == 20   # the shipped samples


def test_only_the_chosen_files_are_decoded(tmp_path, monkeypatch):
    pixels, labels = real_pixels("cifar10", 20, size=16)
    write_image_folder(tmp_path / "val", np.concatenate([pixels] * 3), np.concatenate([labels] * 3),
                       [f"n{c:08d}" for c in range(10)])
    opened = []
    real_open = Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    x, _ = D.load("imagenet", 4, root=tmp_path, labels="random", seed=2, size=16)
    assert x.shape == (4, 3, 16, 16)
    assert len(opened) == 4, "60 files on disk, 4 decoded"


# ----------------------------------------------------------------------------- refusals

def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path, cifar_images):
    write_cifar10(tmp_path, *cifar_images)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    with pytest.raises(D.DatasetError, match=r"references (posix|os)\.system.*refused unread") as err:
        D.load("cifar10", 2, root=tmp_path)
    assert "\n" not in str(err.value) and "cifar-10-batches-py/ with data_batch_1" in str(err.value)
    assert not marker.exists()
    pickle.loads(pickle.dumps({"data": Exploit()}, protocol=2))   # the same bytes, unrestricted, do run it
    assert marker.exists()


def test_the_numpy_2_names_are_admitted(tmp_path):
    pixels, labels = real_pixels("cifar100", 4)
    write_cifar100(tmp_path, (pixels, labels), (pixels, labels))
    folder = tmp_path / "cifar-100-python"
    blob = {"fine_labels": [int(v) for v in labels], "data": pixels.transpose(0, 3, 1, 2).reshape(4, -1)}
    (folder / "test").write_bytes(pickle.dumps(blob, protocol=4))
    assert_split(D.open_split("cifar100", root=tmp_path), pixels, labels)
    assert b"cnumpy.core.multiarray\n_reconstruct" in cifar_pickle(blob)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_cifar_batch(tmp_path, cifar_images, damage):
    write_cifar10(tmp_path, *cifar_images)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500] if damage == "truncate" else b"not a pickle at all")
    before = tree(tmp_path)
    with pytest.raises(D.DatasetError, match="data_batch_3 is not a readable CIFAR batch") as err:
        D.open_split("cifar10", root=tmp_path, split="train")
    assert "\n" not in str(err.value) and "expected DIR/cifar-10-batches-py/" in str(err.value)
    assert tree(tmp_path) == before


def test_truncated_idx_file(tmp_path):
    pixels, labels = real_pixels("mnist", 6)
    write_idx(tmp_path / "MNIST" / "raw", (pixels, labels), (pixels, labels), compress=True)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(pixels)[:-100]))
    with pytest.raises(D.DatasetError, match="truncated or corrupt; expected DIR/MNIST/raw/"):
        D.open_split("mnist", root=tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(D.DatasetError, match="cannot be read"):
        D.open_split("mnist", root=tmp_path)


def test_corrupt_image_is_named_when_it_is_decoded(tmp_path):
    pixels, labels = real_pixels("cifar10", 3)
    paths = write_image_folder(tmp_path, pixels, labels, [f"c{c}" for c in range(10)], ext=".jpg")
    last = sorted(paths)[-1]   # not the first file, which is decoded to learn the channels
    data = last.read_bytes()
    last.write_bytes(data[:len(data) // 3])
    split = D.open_split("folder", root=tmp_path)
    assert torch.equal(split.pixels([0]), as_nchw(np.asarray(Image.open(sorted(paths)[0]).convert("RGB"))[None]))
    with pytest.raises(D.DatasetError, match=rf"{last.name} cannot be decoded .*expected an ImageFolder"):
        split.pixels([len(paths) - 1])


@pytest.mark.parametrize("content", [b"PK\x03\x04 broken", b"plain text"])
def test_corrupt_npz(tmp_path, content):
    (tmp_path / "d.npz").write_bytes(content)
    with pytest.raises(D.DatasetError, match="cannot be read as .npz.*expected a .npz file with x"):
        D.open_split("npz", root=tmp_path / "d.npz")


def test_npz_with_float_images_or_pickled_objects(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 8, 8), np.float32), y=np.array([0, 1]))
    with pytest.raises(D.DatasetError, match="dtype float32, not uint8"):
        D.open_split("npz", root=tmp_path / "f.npz")
    np.savez(tmp_path / "o.npz", x=np.array([object()] * 2, dtype=object), y=np.array([0, 1]))
    with pytest.raises(D.DatasetError, match="cannot be read as .npz"):
        D.open_split("npz", root=tmp_path / "o.npz")


@pytest.mark.parametrize("name,layout", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                         ("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw"),
                                         ("imagenet", "DIR/val/<wnid>"), ("folder", "ImageFolder")])
def test_wrong_or_missing_root_names_the_layout(tmp_path, name, layout):
    (tmp_path / "unrelated.txt").write_text("x")
    before = tree(tmp_path)
    with pytest.raises(D.DatasetError) as err:
        D.load(name, 2, root=tmp_path)
    assert layout in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(D.DatasetError, match="does not exist"):
        D.load(name, 2, root=tmp_path / "nowhere")
    assert tree(tmp_path) == before


def test_shipped_samples_have_no_train_split_and_disk_only_sets_need_a_root(monkeypatch):
    monkeypatch.delenv("FASTLEAK_DATA", raising=False)
    with pytest.raises(D.DatasetError, match="no 'train' split; pass root=DIR .*cifar-10-batches-py"):
        D.load("cifar10", 2, split="train")
    with pytest.raises(D.DatasetError, match="npz has no shipped images"):
        D.load("npz", 2)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        D.load("mnist", 2, split="validation")
