"""The top-level API that the README's Python example uses."""
import torch

import fastleak
from fastleak import data, federated, labels, metrics, models


def test_readme_python_api_runs_through_the_top_level_names():
    x, y = data.load("cifar10", 2, seed=0, labels="random")
    model = models.build("lenet", 10, seed=0).eval()
    obs = federated.fedsgd(model, x, y)
    assert torch.equal(labels.recover(obs, model), y.sort().values)
    res = fastleak.attack(obs, model, "inverting", restarts=2, iterations=3)
    assert res.images.shape == x.shape
    (many,) = fastleak.attack_many([obs], model, "inverting", restarts=2, iterations=3)
    torch.testing.assert_close(many.images, res.images)
    assert metrics.evaluate(res.images, x, res.labels, y).psnr > 0
