import logging

import pytest
import torch

import fastleak.data as D


def neighbour_correlation(x: torch.Tensor) -> float:
    """Correlation of horizontally adjacent pixels over a batch (about 0.9 for photos, 0 for noise)."""
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    return torch.corrcoef(torch.stack([a, b]))[0, 1].item()


@pytest.mark.parametrize("name,shape", [("cifar10", (3, 32, 32)), ("cifar100", (3, 32, 32)), ("mnist", (1, 28, 28)),
                                        ("fashion_mnist", (1, 28, 28)), ("imagenet", (3, 224, 224))])
def test_real_images_with_shapes_and_range(name, shape):
    x, y = D.load(name, 6)
    assert x.shape == (6, *shape) and x.dtype == torch.float32
    assert y.shape == (6,) and y.dtype == torch.long
    assert x.min() >= 0 and x.max() <= 1
    assert 0.1 < x.std() < 0.45
    assert neighbour_correlation(x) > 0.7
    assert all(x[i].std() > 0.05 for i in range(6)), "no constant images"
    assert ((y >= 0) & (y < D.num_classes(name))).all()
    assert D.info(name).shape == shape


def test_info():
    meta = D.info("cifar10")
    assert meta.num_classes == 10 and meta.num_images == 20
    assert meta.class_counts == (2, 2, 0, 2, 0, 2, 4, 2, 4, 2)
    assert meta.available_classes == (0, 1, 3, 5, 6, 7, 8, 9)
    assert D.info("mnist").class_counts == (100,) * 10
    assert D.info("mnist", split="train").class_counts == (400,) * 10
    assert D.num_classes("imagenet") == 1000 and D.num_classes("cifar100") == 100
    assert set(D.names()) >= {"cifar10", "cifar100", "mnist", "imagenet"}


def test_unique_labels_are_distinct_and_images_are_different():
    x, y = D.load("cifar10", 8, labels="unique", seed=3)
    assert len(set(y.tolist())) == 8 and not {2, 4} & set(y.tolist())
    flat = x.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(8) * 1e9).min() > 1.0


def test_repeat_groups():
    x, y = D.load("cifar100", 10, labels="repeat:3", seed=1)
    groups = [y[i:i + 3].tolist() for i in range(0, 10, 3)]
    assert all(len(set(g)) == 1 for g in groups)
    assert len({g[0] for g in groups}) == 4 and [len(g) for g in groups] == [3, 3, 3, 1]


def test_random_labels_draw_available_classes_with_duplicates():
    _, y = D.load("cifar10", 30, labels="random", seed=0)
    assert set(y.tolist()) <= set(D.info("cifar10").available_classes)
    assert len(set(y.tolist())) < 30


def test_explicit_labels_are_respected_and_images_match_them():
    wanted = [3, 3, 7, 0]
    x, y = D.load("mnist", 4, labels=wanted)
    assert y.tolist() == wanted
    x2, _ = D.load("mnist", 4, labels=torch.tensor(wanted))
    assert torch.equal(x, x2)
    assert not torch.equal(x[0], x[1]), "two requests for a class get two different digits"


def test_deterministic_given_seed():
    a = D.load("cifar10", 12, labels="random", seed=5)
    b = D.load("cifar10", 12, labels="random", seed=5)
    c = D.load("cifar10", 12, labels="random", seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_imagenet_size():
    x, y = D.load("imagenet", 2, size=64)
    assert x.shape == (2, 3, 64, 64) and neighbour_correlation(x) > 0.8


def test_oversize_batch_is_composed_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="fastleak.data"):
        x, y = D.load("cifar10", 40, labels="natural")
    assert "needs more images than exist" in caplog.text
    assert x.shape == (40, 3, 32, 32)
    assert torch.bincount(y, minlength=10)[[2, 4]].sum() == 0
    flat = x.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(40) * 1e9
    assert distances.min() > 0, "no exact duplicates: extra images are mirrored or shifted variants"
    assert neighbour_correlation(x) > 0.7


def test_class_with_too_few_images_uses_mirror_then_shifts():
    x, y = D.load("cifar10", 4, labels=[3, 3, 3, 3])
    originals = D.load("cifar10", 2, labels=[3, 3])[0]
    assert torch.equal(x[:2], originals)
    assert torch.equal(x[2], originals[0].flip(-1)) and torch.equal(x[3], originals[1].flip(-1))
    shifted = D.load("cifar10", 6, labels=[3] * 6)[0][4:]
    assert all(not torch.equal(s, o) and not torch.equal(s, o.flip(-1)) for s in shifted for o in originals)


def test_digits_are_not_mirrored():
    from fastleak.data.batches import _variants
    import numpy as np
    assert all(not mirror for mirror, _, _ in _variants(False, 3, np.random.default_rng(0)))


def test_no_duplicate_warning_within_the_data(caplog):
    with caplog.at_level(logging.WARNING, logger="fastleak.data"):
        D.load("cifar10", 8, labels="unique")
    assert caplog.text == ""


def test_errors():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'.*cifar10"):
        D.load("svhn", 2)
    with pytest.raises(ValueError, match=r"no image of class 2; available classes: \[0, 1, 3, 5, 6, 7, 8, 9\]"):
        D.load("cifar10", 2, labels=[1, 2])
    with pytest.raises(ValueError, match="only 8 classes"):
        D.load("cifar10", 9, labels="unique")
    with pytest.raises(ValueError, match="only 8 classes"):
        D.load("cifar10", 20, labels="repeat:2")
    with pytest.raises(ValueError, match="repeat:k"):
        D.load("cifar10", 4, labels="repeat:x")
    with pytest.raises(ValueError, match="labels must be one of"):
        D.load("cifar10", 4, labels="sorted")
    with pytest.raises(ValueError, match=r"class ids in \[0, 10\)"):
        D.load("cifar10", 2, labels=[1, 10])
    with pytest.raises(ValueError, match="3 class ids but n=2"):
        D.load("cifar10", 2, labels=[1, 1, 1])
    with pytest.raises(ValueError, match="n must be a positive int"):
        D.load("cifar10", 0)
    with pytest.raises(ValueError, match="seed"):
        D.load("cifar10", 2, seed=-1)
    with pytest.raises(ValueError, match="size"):
        D.load("imagenet", 1, size=0)
