"""The client's training loss, shared by the client simulation and by attacks that re-simulate it."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from fastleak._registry import Registry
from fastleak.errors import InvalidValueError

# A loss maps (logits [n, C], target) to per-sample losses [n]. The target is either class ids
# (int64 [n]) or a probability vector per sample (float [n, C], e.g. an attack's soft labels).
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[LossFn] = Registry("loss")
REDUCTIONS = ("mean", "sum")


def _target_probs(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    if target.is_floating_point():
        return target
    return F.one_hot(target, logits.shape[-1]).to(logits.dtype)


@LOSSES.register("ce")
def cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy: -sum_c t_c log softmax(z)_c per sample."""
    if target.is_floating_point():
        return -(target * F.log_softmax(logits, dim=-1)).sum(-1)
    return F.cross_entropy(logits, target, reduction="none")


@LOSSES.register("mse")
def squared_error(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error between the logits and the one-hot (or soft) target, summed over classes."""
    return (logits - _target_probs(target, logits)).pow(2).sum(-1)


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise InvalidValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def client_loss(logits: torch.Tensor, target: torch.Tensor, loss: str = "ce", reduction: str = "mean") -> torch.Tensor:
    """The scalar loss a client minimises: registered per-sample ``loss``, then mean or sum over samples."""
    per_sample = LOSSES.get(loss)(logits, target)
    return per_sample.mean() if check_reduction(reduction) == "mean" else per_sample.sum()
