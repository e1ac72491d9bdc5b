"""Which BatchNorm layers a model has, in which mode."""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def is_batchnorm(module: nn.Module) -> bool:
    """Whether ``module`` is a BatchNorm layer: any ``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, lazy or subclassed."""
    return isinstance(module, _BatchNorm)


def batchnorm_layers(model: nn.Module, training: bool | None = None) -> tuple[nn.Module, ...]:
    """The BatchNorm layers of ``model`` (``is_batchnorm``) in ``model.modules()`` order;
    ``training=True``/``False``: only those in that mode."""
    return tuple(m for m in model.modules() if is_batchnorm(m) and (training is None or m.training == training))


def has_batchnorm(model: nn.Module, training: bool | None = None) -> bool:
    """Whether ``model`` has a BatchNorm layer; ``training=True``/``False``: one in that mode (train
    mode normalises with the batch's statistics, which mixes the samples; eval mode with the
    running statistics)."""
    return bool(batchnorm_layers(model, training))
