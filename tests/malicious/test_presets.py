"""The server's presets: blocks sized for the batch it reads, options that override their configs."""
import pytest
import torch

from fastleak.errors import InvalidValueError
from fastleak.malicious import ImprintBlock, TrapBlock, presets


def test_imprint_has_twice_as_many_sparse_bins_as_samples(lenet, mnist_public):
    model = presets.build("imprint", lenet, mnist_public, 32)
    assert isinstance(model.block, ImprintBlock) and not model.block.cumulative
    assert model.block.bins.out_features == 64 and model.in_shape == (1, 28, 28)


def test_options_override_the_preset(lenet, mnist_public):
    model = presets.build("imprint", lenet, mnist_public, 32, bins=10, structure="cumulative")
    assert model.block.bins.out_features == 10 and model.block.cumulative


def test_trap_rows_fire_for_one_sample_in_a_batch_on_average(lenet, mnist_public):
    from fastleak.malicious.trap import rows_fired

    model = presets.build("trap", lenet, mnist_public, 16)
    assert isinstance(model.block, TrapBlock) and model.block.bins.out_features == 32
    rate = rows_fired(model.block, mnist_public).float().mean().item()
    assert rate == pytest.approx(1 / 16, rel=0.05)


def test_unknown_presets_and_options_are_named(lenet, mnist_public):
    with pytest.raises(InvalidValueError, match="unknown malicious preset 'imprnt'; valid names: imprint, imprint_pca, "
                                                "trap"):
        presets.build("imprnt", lenet, mnist_public, 8)
    with pytest.raises(InvalidValueError, match="'trap' preset has no option bins; its options are activation_rate, "
                                                "rows, seed"):
        presets.build("trap", lenet, mnist_public, 8, bins=4)
    with pytest.raises(InvalidValueError, match="batch_size"):
        presets.build("imprint", lenet, mnist_public, 0)


def test_imprint_pca_splits_the_bins_into_four_principal_directions(lenet, mnist_public):
    model = presets.build("imprint_pca", lenet, mnist_public, 30)
    block = model.block
    assert block.bins.out_features == 60 and len(block.directions) == 4 and not block.cumulative
    gram = block.directions @ block.directions.T
    torch.testing.assert_close(gram, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-9)
    assert presets.build("imprint_pca", lenet, mnist_public, 1).block.bins.out_features == 8
