"""2-D convolutions whose double backward computes only what gradient inversion needs.

The attack differentiates the parameter gradient (a first backward) with respect to the dummy
images. PyTorch's double backward of a convolution, ``_convolution_double_backward``, also
computes the second-order term for the weight, a convolution over the whole batch and image,
whether or not anything asks for it; the attack never does. ``LeanConv2dFunction`` writes a
convolution's backward as two separate ops, the input gradient as a transposed convolution and
the weight gradient as ``convolution_backward`` restricted to the weight. Each is differentiated
by the ordinary convolution backward, which computes only the gradients that are needed.

Forward values and first and second derivatives are those of ``torch.nn.functional.conv2d``.
The custom Function costs host time on every call, so only convolutions with at least
``MIN_WEIGHTS`` weights are switched; the attack uses them where it differentiates the
simulated client with plain autograd (replicated parameters: BatchNorm models, several model
states), not under ``torch.func.grad`` at one shared model state.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# On a CPU thread, the DLG LeNet (900-3600 weights per convolution) and a width-8 ConvNet (up to
# 9216) ran 28% and 4% slower with every convolution switched; a width-32 ConvNet (18432 and up)
# ran 10-15% faster.
MIN_WEIGHTS = 16384


class LeanConv2dFunction(torch.autograd.Function):
    generate_vmap_rule = True  # the restarts' replicated parameters run under torch.func.vmap

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int], groups: int) -> Tensor:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.params = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.params
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # the rows and columns of x that the strided forward never reached
            extra = [x.shape[-2 + i] - ((grad.shape[-2 + i] - 1) * stride[i] - 2 * padding[i]
                                        + dilation[i] * (weight.shape[-2 + i] - 1) + 1) for i in range(2)]
            grad_x = F.conv_transpose2d(grad, weight, None, stride, padding, extra, groups, dilation)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, [0, 0], groups, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3))
        return grad_x, grad_weight, grad_bias, None, None, None, None


class LeanConv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding given as numbers) computed by ``LeanConv2dFunction``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:  # an unbatched image: the plain module handles it
            return super().forward(x)
        return LeanConv2dFunction.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                        self.groups)


def lean_convolutions(model: nn.Module, min_weights: int = MIN_WEIGHTS) -> nn.Module:
    """A copy of ``model`` whose plain ``nn.Conv2d`` layers with zero padding given as numbers and
    at least ``min_weights`` weights are ``LeanConv2d`` (same parameters, names and hooks), or
    ``model`` itself when it has none. Subclasses of ``nn.Conv2d``, which may compute something
    else, are left as they are."""
    def switchable(module: nn.Module) -> bool:
        return (type(module) is nn.Conv2d and module.padding_mode == "zeros" and not isinstance(module.padding, str)
                and module.weight.numel() >= min_weights)

    if not any(switchable(m) for m in model.modules()):
        return model
    lean = copy.deepcopy(model)
    for module in lean.modules():
        if switchable(module):
            module.__class__ = LeanConv2d
    return lean
