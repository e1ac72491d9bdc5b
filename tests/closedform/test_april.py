import logging

import pytest
import torch
from torch import nn

import fastleak
from fastleak import data, federated, models
from fastleak.closedform.april import embedded_tokens, image_from_tokens
from fastleak.errors import InvalidValueError
from fastleak.metrics import evaluate

EXACT_DB = 60.0


def vit(dtype=torch.float64, **options):
    options = {"first_block": "plain", "depth": 2, "width": 80, "heads": 4, **options}
    return models.build("vit", 10, **options).to(dtype)


def test_one_image_is_exact_in_float64():
    x, y = data.load("cifar10", 1, seed=0)
    model = vit()
    res = fastleak.attack(federated.fedsgd(model, x.double(), y), model, "april")
    assert evaluate(res.images, x).psnr >= EXACT_DB


def test_the_tokens_and_the_patches_solve_their_systems():
    x, y = data.load("cifar10", 1, seed=1)
    model = vit()
    obs = federated.fedsgd(model, x.double(), y)
    g = obs.shared_dict()
    captured = {}
    hook = model.blocks[0].register_forward_pre_hook(lambda mod, args: captured.__setitem__("z", args[0].detach()))
    model(x.double())
    hook.remove()
    qkv = model.blocks[0].attn.qkv.weight.detach()
    tokens = embedded_tokens(g["pos_embed"][0], qkv, g["blocks.0.attn.qkv.weight"])
    # float64 and an untrained model's conditioning (1e-11): the tokens to 1e-4 of their scale
    assert (tokens - captured["z"][0]).abs().max() < 1e-4 * captured["z"].abs().max()
    image = image_from_tokens(tokens, model.pos_embed.detach()[0], model.patch_embed.proj.weight.detach(),
                              model.patch_embed.proj.bias.detach(), 1, (3, 32, 32))
    torch.testing.assert_close(image, x[0].double(), rtol=0, atol=1e-4)


def test_many_observations_are_solved_at_once():
    model = vit()
    batches = [data.load("cifar10", 1, seed=s) for s in range(3)]
    results = fastleak.attack_many([federated.fedsgd(model, x.double(), y) for x, y in batches], model, "april")
    assert all(evaluate(r.images, x).psnr >= EXACT_DB for r, (x, _) in zip(results, batches))


def test_float32_on_an_untrained_vit_warns_that_the_system_is_ill_conditioned(caplog):
    x, y = data.load("cifar10", 1, seed=0)
    model = vit(torch.float32)
    with caplog.at_level(logging.WARNING, logger="fastleak.closedform.april"):
        fastleak.attack(federated.fedsgd(model, x, y), model, "april")
    assert "ill-conditioned" in caplog.text


@pytest.mark.parametrize("model,batch,message", [
    (lambda: vit(first_block="residual"), 1, "first block normalises them first"),
    (lambda: vit(width=32, heads=4), 1, "65 tokens but width 32"),
    (lambda: vit(), 2, "reads one image: the observation's batch has 2"),
    (lambda: models.build("lenet", 10).double(), 1, "needs pos_embed, patch_embed.proj"),
])
def test_models_and_batches_it_does_not_apply_to_are_refused(model, batch, message):
    x, y = data.load("cifar10", batch, seed=0)
    net = model()
    with pytest.raises(InvalidValueError, match=message):
        fastleak.attack(federated.fedsgd(net, x.double(), y), net, "april")


def test_a_fixed_position_embedding_is_refused():
    x, y = data.load("cifar10", 1, seed=0)
    net = vit()
    net.pos_embed.requires_grad_(False)
    with pytest.raises(InvalidValueError, match="pos_embed is not trainable"):
        fastleak.attack(federated.fedsgd(net, x.double(), y), net, "april")
    assert isinstance(net.pos_embed, nn.Parameter)
