"""fastleak.malicious.resolution: the lattice of quantised tensors, and none in clean gradients."""
from __future__ import annotations

import pytest
import torch

from fastleak.malicious.resolution import error_bound, lattice, sparsity_floor, update_rounding


def quantize(tensors, bits):
    """Uniform quantisation per tensor to 2**bits levels from its minimum to its maximum (the
    ``quantize`` defense's rule)."""
    out = []
    for t in tensors:
        lo, hi = t.min(), t.max()
        step = (hi - lo) / (2 ** bits - 1)
        out.append(torch.round((t - lo) / step) * step + lo)
    return tuple(out)


def clean_rows(seed: int = 0) -> torch.Tensor:
    """A sparse bin layer's gradient: rows c_k x_k of 8-bit images with their own coefficients, half empty."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (64, 300), generator=g).float() / 255
    c = torch.randn(64, 1, generator=g) * 1e-3
    c[::2] = 0
    return c * x


@pytest.mark.parametrize("bits", [4, 8, 10])
def test_a_quantised_tensor_lies_on_its_step(bits):
    (q,) = quantize((clean_rows(),), bits)
    found = lattice(q)
    lo, hi = clean_rows().min().item(), clean_rows().max().item()
    assert found is not None
    assert found.step == pytest.approx((hi - lo) / (2 ** bits - 1), rel=1e-3)


def test_clean_gradients_and_noise_have_no_lattice():
    assert lattice(clean_rows()) is None
    assert lattice(torch.randn(1000, generator=torch.Generator().manual_seed(1))) is None
    assert lattice(torch.tensor([0.0, 0.1])) is None   # too few values to tell
    assert lattice(torch.zeros(0)) is None


def test_one_row_on_its_own_pixel_grid_costs_nothing():
    """A single occupied bin (a batch of one) is a lattice of step c / 255 through zero: its own grid."""
    row = torch.zeros(2, 300)
    row[0] = 0.37 * torch.randint(0, 256, (300,), generator=torch.Generator().manual_seed(2)).float() / 255
    found = lattice(row)
    assert found is not None and found.offset == 0.0
    bound = error_bound(found, None, torch.tensor([0.37]), torch.tensor([1.0]), 255.0)
    assert bound.item() == 0.0


def test_error_bound_adds_the_weight_and_bias_steps():
    (qw,) = quantize((clean_rows(),), 8)
    weights = lattice(qw)
    bias = lattice(torch.arange(20.0) * 1e-4 + 3e-5)
    b = torch.tensor([1e-3, 1e-4], dtype=torch.float64)
    bound = error_bound(weights, bias, b, torch.tensor([1.0, 0.5]), 255.0)
    expected = weights.step / 2 / b * 255 + torch.tensor([1.0, 0.5]) * (bias.step / 2) / b * 255
    torch.testing.assert_close(bound, expected.double(), rtol=1e-6, atol=0)
    assert (error_bound(None, None, b, torch.ones(2), 255.0) == 0).all()


def test_partial_sums_of_a_cumulative_bias_have_no_lattice():
    """A regression test: Euclid's remainders grew smaller than every gap, and the refinement then
    averaged over no gap at all (a NaN step that failed every bin)."""
    c = torch.randn(40, generator=torch.Generator().manual_seed(3)) * 30
    sums = c.flip(0).cumsum(0).flip(0).repeat_interleave(2)
    assert lattice(sums) is None


@pytest.mark.parametrize("steps", [1, 4])
def test_update_rounding_bounds_the_float32_error_of_sgd_steps(steps):
    generator = torch.Generator().manual_seed(0)
    before = torch.randn(64, 32, generator=generator) * torch.logspace(-3, 1, 64)[:, None]
    grads = [torch.randn(64, 32, generator=generator) * 1e-3 for _ in range(steps)]
    after = before.clone()
    for g in grads:
        after = after - 0.1 * g
    exact = before.double() - 0.1 * sum(g.double() for g in grads)
    error = (after.double() - exact).abs().amax(1)
    bound = update_rounding(before, steps)
    assert bound.dtype == torch.float64 and bound.shape == (64,)
    assert bool((error <= bound).all())
    assert bool((bound <= 4 * steps * before.abs().amax(1).double() * 2.0 ** -24).all())   # not loose either


def _bin_rows(generator, dark_share=0.0):
    """32 occupied bins of CIFAR-size images on the 8-bit grid, each times its own scale, and 32 empty ones."""
    images = torch.randint(0, 256, (32, 3072), generator=generator).double() / 255
    images[torch.rand(32, 3072, generator=generator) < dark_share] = 0.0
    scales = torch.logspace(-3, 0, 32, dtype=torch.float64)[torch.randperm(32, generator=generator)]
    weight = torch.cat([images * scales[:, None], torch.zeros(32, 3072, dtype=torch.float64)])
    return weight, torch.cat([scales, torch.zeros(32, dtype=torch.float64)])


@pytest.mark.parametrize("dark_share", [0.0, 0.3])
def test_a_clean_gradient_has_no_sparsity_floor(dark_share):
    weight, bias = _bin_rows(torch.Generator().manual_seed(1), dark_share)
    assert sparsity_floor(weight, bias != 0) is None


@pytest.mark.parametrize("name, params", [("topk", {"keep": 0.3}), ("prune", {"ratio": 0.6})])
def test_a_sparsified_gradient_shows_the_magnitude_it_was_cut_at(name, params):
    from fastleak.defenses import transforms

    weight, bias = _bin_rows(torch.Generator().manual_seed(2))
    cut, = getattr(transforms, name)((weight,), **params)
    kept = cut[cut != 0].abs()
    assert sparsity_floor(cut, bias != 0) == float(kept.min())
    assert float(weight[(cut == 0) & (weight != 0)].abs().max()) <= float(kept.min())   # all it zeroed lay below


def test_only_occupied_rows_are_judged_for_a_sparsity_floor():
    weight, bias = _bin_rows(torch.Generator().manual_seed(3))
    empty = bias == 0
    weight[empty, :100] = 0.5   # rows the bias calls empty, partly zeroed at one magnitude: a floor if judged
    assert sparsity_floor(weight, bias != 0) is None
    assert sparsity_floor(weight, torch.ones_like(empty)) is None   # the clean rows in the group say otherwise
    assert sparsity_floor(weight, empty) == 0.5
