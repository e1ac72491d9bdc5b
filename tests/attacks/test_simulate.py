import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks.simulate import ClientSimulator
from fastleak.federated import fedavg, fedsgd


@pytest.mark.parametrize("kind", ["gradient", "update"])
def test_one_dummy_batch_is_simulated_as_one_of_several(kind):
    """The single-dummy-batch path (no vmap) gives what the batched path gives that batch."""
    x, y = data.load("cifar10", 2, seed=0, labels="random")
    model = models.build("convnet", 10, seed=0, width=4).train().double()
    x = x.double()
    obs = fedsgd(model, x, y) if kind == "gradient" else fedavg(model, x, y, local_steps=2, lr=0.1)
    one = ClientSimulator(model, [obs], 0, restarts=1, track_bn=True)
    two = ClientSimulator(model, [obs], 0, restarts=2, track_bn=True)
    dummy = torch.rand(2, *x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    labels = y.expand(2, -1)
    single = one.shared(dummy[:1], labels[:1])
    batched = two.shared(dummy, labels)
    for a, b in zip(single, batched):
        assert a.shape == (1, *b.shape[1:])
        torch.testing.assert_close(a[0], b[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(one.bn_loss[0], two.bn_loss[0], rtol=1e-10, atol=1e-12)
