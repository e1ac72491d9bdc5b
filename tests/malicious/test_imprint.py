"""fastleak.malicious.imprint: the imprint block and the modified model built from it."""
from __future__ import annotations

import pytest
import torch

from fastleak.malicious import ImprintConfig, fit_edges, imprint_model, measurements


@pytest.mark.parametrize("structure", ["cumulative", "sparse"])
def test_bins_hold_equal_shares_of_the_public_data(mnist_public, lenet, structure):
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=100, structure=structure))
    counts = torch.bincount(model.block.bin_of(mnist_public), minlength=100)
    assert counts.sum() == len(mnist_public) and (counts - 40).abs().max() <= 1
    edges = model.block.edges
    assert len(edges) == 101 and bool((edges[1:] > edges[:-1]).all())
    assert edges[-1].isinf() == (structure == "cumulative")


def test_every_row_measures_the_same_and_the_model_runs_after_the_block(mnist_batch, mnist_public, lenet):
    x, _ = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=32, measurement="random", seed=2))
    w = model.block.bins.weight
    assert torch.equal(w, w[:1].expand_as(w))
    torch.testing.assert_close(w[0].double(), measurements.weights("random", 784, seed=2), rtol=0, atol=1e-7)
    assert model.block(x).shape == x.shape
    assert model(x).shape == (len(x), 10)
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["block.bins.weight", "block.bins.bias"] and names[4].startswith("model.")


def test_sparse_rows_pass_gradient_only_inside_their_bin(mnist_batch, mnist_public, lenet):
    x, _ = mnist_batch
    model = imprint_model(lenet, mnist_public, ImprintConfig(bins=64, structure="sparse"))
    pre = model.block.bins(x.flatten(1)).detach()
    inside = (pre > 0) & (pre < model.block.widths)
    bins = model.block.bin_of(x)
    assert torch.equal(inside, torch.nn.functional.one_hot(bins, 64).bool())


def test_tied_public_measurements_still_give_every_bin_a_width(mnist_public, lenet):
    public = mnist_public[:50].repeat(8, 1, 1, 1)
    for structure in ("cumulative", "sparse"):
        edges = fit_edges(public, measurements.weights("mean", 784), 200, structure)
        assert bool((edges[1:] > edges[:-1]).all())
        model = imprint_model(lenet, public, ImprintConfig(bins=200, structure=structure))
        assert bool(torch.isfinite(model(public[:4])).all())


def test_config_errors():
    for bins in (1, 0, True, 2.0, None):
        with pytest.raises(ValueError, match=r"bins must be an int >= 2 \(an imprint layer needs two rows"):
            ImprintConfig(bins=bins)
    with pytest.raises(ValueError, match=r"unknown measurement 'max'"):
        ImprintConfig(bins=4, measurement="max")
    with pytest.raises(ValueError, match=r"structure must be one of \('cumulative', 'sparse'\), got 'dense'"):
        ImprintConfig(bins=4, structure="dense")
    with pytest.raises(TypeError, match=r"seed must be an int"):
        ImprintConfig(bins=4, seed="0")


def test_input_errors_name_the_argument(mnist_batch, mnist_public, cifar_public, lenet):
    config = ImprintConfig(bins=8)
    with pytest.raises(ValueError, match=r"public has per-sample shape \(3, 32, 32\), expected the model's in_shape "
                                         r"\(1, 28, 28\)"):
        imprint_model(lenet, cifar_public, config)
    with pytest.raises(ValueError, match=r"public must hold at least 2 samples"):
        imprint_model(lenet, mnist_public[:1], config)
    with pytest.raises(ValueError, match=r"public must hold samples with at least two different measurements"):
        fit_edges(torch.zeros(5, 4), torch.ones(4, dtype=torch.float64), 3)
    with pytest.raises(TypeError, match=r"public must be a floating-point tensor"):
        imprint_model(lenet, (mnist_public * 255).to(torch.uint8), config)
    with pytest.raises(ValueError, match=r"public contains NaN or inf"):
        imprint_model(lenet, torch.full_like(mnist_public[:4], float("nan")), config)
    with pytest.raises(ValueError, match=r"model does not accept inputs of in_shape \(3, 32, 32\)"):
        imprint_model(lenet, cifar_public, config, in_shape=(3, 32, 32))
    with pytest.raises(TypeError, match=r"config must be an ImprintConfig"):
        imprint_model(lenet, mnist_public, {"bins": 8})
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        imprint_model("lenet", mnist_public, config)
