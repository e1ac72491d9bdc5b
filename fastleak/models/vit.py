"""A small Vision Transformer with a learnable position embedding (the layout and names of timm's).

Parameters come in timm's order (``cls_token``, ``pos_embed``, ``patch_embed.proj``, then the blocks), so
code written for timm's ViTs (breaching's APRIL attack) finds them where it looks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastleak._checks import positive_int
from fastleak.errors import InvalidValueError
from fastleak.models.layers import image_shape
from fastleak.models.registry import register

FIRST_BLOCKS = ("residual", "plain")


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches, each mapped linearly to ``width`` features: [n, patches, width]."""

    def __init__(self, channels: int, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, width, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; written out (no fused kernel) so that it has derivatives of every order."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, width = x.shape
        q, k, v = self.qkv(x).view(n, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) * (width // self.heads) ** -0.5, dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, tokens, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block; ``plain``: attention straight on its input, then the MLP, without
    residual connections and without the first LayerNorm (APRIL's setting; breaching's ``vit_*_april``)."""

    def __init__(self, width: int, heads: int, hidden: int, plain: bool = False) -> None:
        super().__init__()
        self.plain = plain
        self.norm1 = None if plain else nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plain:
            return self.mlp(self.norm2(self.attn(x)))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, num_classes: int, in_shape: tuple[int, ...], patch_size: int = 4, depth: int = 4,
                 width: int = 96, heads: int = 4, mlp_ratio: int = 2, first_block: str = "residual",
                 bias: bool = True) -> None:
        super().__init__()
        channels, height, wide = image_shape(in_shape, "vit")
        for name, value in (("patch_size", patch_size), ("depth", depth), ("width", width), ("heads", heads),
                            ("mlp_ratio", mlp_ratio)):
            positive_int(value, name)
        if height % patch_size or wide % patch_size:
            raise InvalidValueError(f"patch_size {patch_size} must divide the image's height and width {height}x{wide}")
        if width % heads:
            raise InvalidValueError(f"width {width} must be a multiple of heads {heads}")
        if first_block not in FIRST_BLOCKS:
            raise InvalidValueError(f"first_block must be one of {', '.join(FIRST_BLOCKS)}, got {first_block!r}")
        patches = (height // patch_size) * (wide // patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, width))
        self.patch_embed = PatchEmbed(channels, patch_size, width)
        self.blocks = nn.Sequential(*(Block(width, heads, mlp_ratio * width, plain=i == 0 and first_block == "plain")
                                      for i in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes, bias=bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(tokens))[:, 0])


@register("vit")
def vit(num_classes: int, in_shape: tuple[int, ...], patch_size: int = 4, depth: int = 4, width: int = 96,
        heads: int = 4, mlp_ratio: int = 2, first_block: str = "residual", bias: bool = True) -> nn.Module:
    """A Vision Transformer: ``patch_size`` patches embedded to ``width`` features, a class token and a
    learnable position embedding, ``depth`` pre-norm blocks of ``heads`` heads and MLPs of ``mlp_ratio`` x
    ``width``, the class token's final LayerNorm into the classifier. ``first_block="plain"`` makes the first
    block attention straight on the embedded tokens, then its MLP, without residuals (APRIL's closed-form
    setting). Linear layers of the blocks start at N(0, 0.02) truncated, biases at zero."""
    return VisionTransformer(num_classes, in_shape, patch_size=patch_size, depth=depth, width=width, heads=heads,
                             mlp_ratio=mlp_ratio, first_block=first_block, bias=bias)
