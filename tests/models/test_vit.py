import pytest
import torch
from torch import nn

import fastleak.data as D
import fastleak.models as M
from fastleak import federated
from fastleak.errors import InvalidValueError


def test_parameters_come_in_timms_order_with_a_learnable_position_embedding():
    model = M.build("vit", 10, patch_size=8, depth=2, width=64, heads=4)
    names = [n for n, _ in model.named_parameters()]
    assert names[:5] == ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                         "blocks.0.norm1.weight"]
    assert model.pos_embed.shape == (1, (32 // 8) ** 2 + 1, 64) and model.pos_embed.requires_grad
    assert names[-2:] == ["head.weight", "head.bias"] and M.final_linear(model) is model.head
    assert len(model.blocks) == 2 and model.blocks[0].attn.qkv.out_features == 3 * 64


def test_the_plain_first_block_reads_the_tokens_directly_and_keeps_the_others():
    model = M.build("vit", 10, depth=3, first_block="plain")
    names = [n for n, _ in model.named_parameters()]
    assert names[4] == "blocks.0.attn.qkv.weight"  # where breaching's APRIL reads the qkv gradient
    assert model.blocks[0].plain and model.blocks[0].norm1 is None
    assert all(not b.plain and isinstance(b.norm1, nn.LayerNorm) for b in model.blocks[1:])
    tokens = torch.randn(2, 65, 96)
    block = model.blocks[0]
    torch.testing.assert_close(block(tokens), block.mlp(block.norm2(block.attn(tokens))))


def test_attention_matches_torchs_scaled_dot_product_attention():
    model = M.build("vit", 10, width=32, heads=4)
    attn = model.blocks[1].attn
    x = torch.randn(3, 17, 32, dtype=torch.float64)
    attn = attn.double()
    q, k, v = attn.qkv(x).view(3, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)
    expected = attn.proj(torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 17, 32))
    torch.testing.assert_close(attn(x), expected)


@pytest.mark.parametrize("options,message", [
    ({"patch_size": 5}, "patch_size 5 must divide"),
    ({"width": 30, "heads": 4}, "width 30 must be a multiple of heads 4"),
    ({"first_block": "bare"}, "first_block must be one of residual, plain"),
    ({"depth": 0}, "depth must be a positive int"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(InvalidValueError, match=message):
        M.build("vit", 10, **options)


def test_gradient_inversion_can_differentiate_the_shared_gradient():
    x, y = D.load("cifar10", 2, seed=0)
    model = M.build("vit", 10, depth=2, width=32, heads=2)
    obs = federated.fedsgd(model, x, y)
    dummy = torch.rand_like(x, requires_grad=True)
    params = dict(model.named_parameters())
    grads = federated.client_gradients(model, params, dummy, y, create_graph=True)
    distance = sum((g - t).pow(2).sum() for g, t in zip(grads, obs.pairs[0].shared))
    (grad_x,) = torch.autograd.grad(distance, dummy)
    assert grad_x.abs().sum() > 0 and torch.isfinite(grad_x).all()
