"""``april`` (Lu et al., CVPR 2022): one image read off a Vision Transformer through its position embedding.

The embedded tokens ``z = [cls; patches(x) E^T + e] + pos`` [N, d] of the model's first block go
straight into its attention's ``qkv = z W^T + c`` (APRIL's setting: no LayerNorm and no residual in
front; fastleak's ``vit`` with ``first_block="plain"``). For one sample the position embedding's
gradient is the tokens' gradient, ``A = dL/dz = G W`` with ``G = dL/dqkv``, and the qkv weight's is
``dW = G^T z``, so ``W^T dW = A^T z``: a linear system for ``z``, determined when there are no more
tokens than features (N <= d). Subtracting the position embedding and the class token, then solving
the patch embedding's ``E u = z - e`` (determined when ``d >= C p^2``) gives every patch of the image.
Least squares in float64 (SVD-based ``gelsd`` on the CPU), many observations at once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastleak.closedform.registry import Reconstruction, Target, method
from fastleak.errors import InvalidValueError

log = logging.getLogger(__name__)

REQUIREMENT = ("april reads a Vision Transformer through its position embedding: the model needs pos_embed, "
               "patch_embed.proj (an nn.Conv2d with stride = kernel) and blocks[0].attn.qkv (fastleak's vit, "
               "timm's layout)")


@dataclass(frozen=True)
class Layout:
    """Where APRIL reads a ViT: the parameter names of the position embedding, the patch embedding and the
    first block's qkv, the patch size and how many leading tokens are not patches (the class token)."""

    pos_embed: str
    proj_weight: str
    proj_bias: str | None
    qkv_weight: str
    patch_size: int
    extra_tokens: int


def layout(model: nn.Module, in_shape: tuple[int, ...]) -> Layout:
    """The ``Layout`` of ``model``, or an error saying what APRIL needs and what the model lacks."""
    pos = getattr(model, "pos_embed", None)
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    blocks = getattr(model, "blocks", None)
    first = blocks[0] if isinstance(blocks, (nn.Sequential, nn.ModuleList)) and len(blocks) else None
    qkv = getattr(getattr(first, "attn", None), "qkv", None)
    if not (isinstance(pos, nn.Parameter) and isinstance(proj, nn.Conv2d) and isinstance(qkv, nn.Linear)):
        raise InvalidValueError(f"{REQUIREMENT}; {type(model).__name__} lacks them")
    if not pos.requires_grad:
        raise InvalidValueError("april needs the position embedding's gradient: pos_embed is not trainable "
                                "(a fixed, e.g. sinusoidal, embedding is not shared)")
    if not getattr(first, "plain", getattr(first, "norm1", None) is None):
        raise InvalidValueError("april's closed form needs the first block's attention to read the embedded tokens "
                                "directly (no LayerNorm, no residual; fastleak's vit with first_block='plain', "
                                "breaching's vit_*_april); this model's first block normalises them first")
    if proj.kernel_size != proj.stride or proj.padding != (0, 0) or proj.kernel_size[0] != proj.kernel_size[1]:
        raise InvalidValueError(f"april needs non-overlapping square patches: patch_embed.proj has kernel "
                                f"{proj.kernel_size}, stride {proj.stride}, padding {proj.padding}")
    p = proj.kernel_size[0]
    patches = (in_shape[1] // p) * (in_shape[2] // p)
    tokens, width = pos.shape[-2:]
    if tokens < patches:
        raise InvalidValueError(f"pos_embed has {tokens} tokens for {patches} patches of {in_shape}")
    if tokens > width:
        raise InvalidValueError(f"april: {tokens} tokens but width {width}: the attention's system A^T z = W^T dW "
                                "has fewer equations than unknowns (it needs tokens <= width)")
    names = {id(t): n for n, t in model.named_parameters()}
    return Layout(names[id(pos)], names[id(proj.weight)], names.get(id(proj.bias)) if proj.bias is not None else None,
                  names[id(qkv.weight)], p, tokens - patches)


ILL_CONDITIONED = 1e-6  # below this singular-value ratio float32 rounding of the gradient dominates


def _lstsq(a: Tensor, b: Tensor) -> Tensor:
    return torch.linalg.lstsq(a, b, driver="gelsd" if a.device.type == "cpu" else None).solution


def embedded_tokens(pos_grad: Tensor, qkv_weight: Tensor, qkv_grad: Tensor) -> Tensor:
    """The first block's input tokens z [..., N, d] from the position embedding's gradient [..., N, d] and the
    qkv weight [..., 3d, d] with its gradient (float64; module docs)."""
    a, w, dw = pos_grad.double(), qkv_weight.double(), qkv_grad.double()
    singular = torch.linalg.svdvals(a)
    conditioning = float((singular[..., -1] / singular[..., 0].clamp_min(1e-300)).min())
    if conditioning < ILL_CONDITIONED:
        log.warning("april: the position embedding's gradient is ill-conditioned (smallest/largest singular value "
                    "%.1e): a float32 gradient determines the tokens only up to its rounding; near-uniform attention "
                    "(an untrained model) makes the tokens' gradients nearly parallel", conditioning)
    return _lstsq(a.transpose(-2, -1), w.transpose(-2, -1) @ dw)


def image_from_tokens(tokens: Tensor, pos_embed: Tensor, proj_weight: Tensor, proj_bias: Tensor | None,
                      extra_tokens: int, in_shape: tuple[int, ...]) -> Tensor:
    """The image [..., C, H, W] whose patch embedding, plus ``pos_embed`` [..., N, d], gives ``tokens``
    [..., N, d] (the first ``extra_tokens`` rows, the class token's, are dropped); ``proj_weight``
    [..., d, C, p, p] and ``proj_bias`` [..., d] are the patch embedding's."""
    d, p = proj_weight.shape[-4], proj_weight.shape[-1]
    embedded = (tokens - pos_embed.double())[..., extra_tokens:, :]
    if proj_bias is not None:
        embedded = embedded - proj_bias.double()[..., None, :]
    e = proj_weight.double().flatten(-3)                                            # [..., d, C p p]
    if e.shape[-1] > d:
        log.warning("april: width %d < %d values per patch: the patches are determined only up to a subspace",
                    d, e.shape[-1])
    patches = _lstsq(e, embedded.transpose(-2, -1))                                 # [..., C p p, L]
    lead = patches.shape[:-2]
    images = F.fold(patches.reshape(-1, *patches.shape[-2:]), output_size=in_shape[1:], kernel_size=p, stride=p)
    return images.reshape(*lead, *in_shape)


@method("april")
def april(targets: list[Target], labels: list[Tensor]) -> list[Reconstruction]:
    """APRIL's closed form: one image read off a ViT's position-embedding and first qkv gradients (module
    docs); batches of one sample, many observations in one least-squares call."""
    if targets[0].num_samples != 1:
        raise InvalidValueError(f"april's closed form reads one image: the observation's batch has "
                                f"{targets[0].num_samples} samples (the position embedding's gradient sums them)")
    in_shape = targets[0].input_shape
    where = layout(targets[0].model, in_shape)
    states = [dict(t.model.named_parameters()) for t in targets]

    def stacked(name: str, source: str) -> Tensor:
        return torch.stack([(t.gradients if source == "grad" else s)[name].detach() for t, s in zip(targets, states)])

    tokens = embedded_tokens(stacked(where.pos_embed, "grad")[:, 0], stacked(where.qkv_weight, "param"),
                             stacked(where.qkv_weight, "grad"))
    bias = stacked(where.proj_bias, "param") if where.proj_bias is not None else None
    images = image_from_tokens(tokens, stacked(where.pos_embed, "param")[:, 0], stacked(where.proj_weight, "param"),
                               bias, where.extra_tokens, in_shape)
    return [Reconstruction(images=x[None, None], labels=y) for x, y in zip(images, labels)]
