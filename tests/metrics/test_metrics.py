import math

import pytest
import torch

import fastleak.data as data
from fastleak.metrics import evaluate, label_scores, match, psnr, ssim


@pytest.fixture(scope="module")
def images():
    return data.load("cifar10", 4, seed=0, labels="unique")


def test_psnr_of_a_known_error():
    x = torch.full((1, 3, 8, 8), 0.5)
    y = x + 0.1
    assert psnr(x, y).item() == pytest.approx(20.0, abs=1e-4)  # 10 log10(1 / 0.01)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones(images):
    x, _ = images
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-5)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert bool((ssim(noisy, x) < 0.9).all())


def test_hungarian_matching_undoes_a_permutation(images):
    x, _ = images
    perm = torch.tensor([2, 0, 3, 1])
    order = match(x[perm], x)
    assert torch.equal(x[perm][order], x)


def test_evaluate_matches_before_scoring(images):
    x, y = images
    rec = (x + 0.01)[torch.tensor([3, 2, 1, 0])]
    ev = evaluate(rec, x, y.flip(0), y)
    assert ev.psnr == pytest.approx(40.0, abs=0.2)
    assert ev.order == (3, 2, 1, 0)
    assert ev.labels.exact and ev.labels.ln_acc == 1.0
    assert ev.lpips is None and "LPIPS" in ev.notes[0]
    with pytest.raises(ValueError, match="must have the same shape"):
        evaluate(rec[:2], x)


def test_label_scores_count_duplicates():
    true = torch.tensor([1, 1, 2, 5])
    assert label_scores(torch.tensor([1, 1, 2, 5]), true).exact
    s = label_scores(torch.tensor([1, 2, 2, 5]), true)
    assert not s.exact
    assert s.ln_acc == pytest.approx(1 / 3)   # classes 1, 2, 5 involved; only 5 right
    assert s.le_acc == 1.0                    # every class's existence is right
    s = label_scores(torch.tensor([1, 1, 2, 7]), true)
    assert s.le_acc == pytest.approx(2 / 4) and math.isclose(s.ln_acc, 2 / 4)
