import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS, attack
from fastleak.attacks.execution import Execution
from fastleak.attacks.inits import INITS, initialisation
from fastleak.attacks.problem import Problem
from fastleak.federated import fedsgd


def draw(name, shape=(2, 3, 3, 28, 30), seed=0):
    return INITS.get(name)(shape, torch.Generator().manual_seed(seed))


def test_uniform_and_gaussian_draw_what_they_did_before_the_registry():
    g = torch.Generator().manual_seed(5)
    assert torch.equal(draw("uniform", seed=5), torch.rand((2, 3, 3, 28, 30), generator=g))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(draw("gaussian", seed=5), 0.5 + 0.25 * torch.randn((2, 3, 3, 28, 30), generator=g))


@pytest.mark.parametrize("width", [4, 16])
def test_patterned_images_repeat_one_tile_per_image_and_channel(width):
    x = draw(f"patterned-{width}")
    assert x.shape == (2, 3, 3, 28, 30)
    tile = x[..., :width, :width]
    for i in range(0, 28, width):
        for j in range(0, 30, width):
            part = x[..., i:i + width, j:j + width]
            assert torch.equal(part, tile[..., :part.shape[-2], :part.shape[-1]])
    # every image and channel has its own tile, drawn like the gaussian initialisation
    flat = tile.flatten(0, 2)
    assert len({tuple(t.flatten().tolist()) for t in flat}) == flat.shape[0]
    assert abs(float(tile.mean()) - 0.5) < 0.1 and abs(float(tile.std()) - 0.25) < 0.05


def test_a_registered_initialisation_is_used_by_the_attack():
    @initialisation("test-constant")
    def constant(shape, generator):
        return torch.full(shape, 0.25, device=generator.device)

    try:
        x, y = data.load("cifar10", 1, seed=0)
        model = models.build("lenet", 10, seed=0).eval()
        config = PRESETS.get("inverting").replace(init="test-constant", search={})
        problem = Problem(model, [fedsgd(model, x, y)], config, 2, [y], 0, torch.device("cpu"), Execution())
        assert torch.equal(problem.init_images(), torch.full((2, 1, 3, 32, 32), 0.25))
        assert problem.init_images(size=(8, 8)).shape == (2, 1, 3, 8, 8)
        result = attack(fedsgd(model, x, y), model, config, labels=y, restarts=1, iterations=1)
        assert result.images.shape == x.shape
    finally:
        INITS._entries.pop("test-constant")


def test_unknown_initialisation_is_refused_by_name():
    with pytest.raises(ValueError, match="attack option init must be one of 'gaussian', .*got 'zeros'"):
        PRESETS.get("inverting").replace(init="zeros")
