"""The model a malicious server sends: a block of its own in front of any classifier.

``MaliciousModel(block, model)`` computes ``model(block(x))``. The block maps inputs of shape
``in_shape`` back to that shape, so the original network runs unchanged after it; the client sees
an ordinary ``nn.Module`` and trains all of it. The parameters of the block are named
``block.<...>`` in ``named_parameters()`` and come first; the original model's follow as
``model.<...>``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from fastleak._checks import all_finite
from fastleak.errors import InvalidTypeError, InvalidValueError


class MaliciousModel(nn.Module):
    def __init__(self, block: nn.Module, model: nn.Module, in_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.block = block
        self.model = model
        self.in_shape = tuple(in_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise InvalidValueError(f"x has per-sample shape {tuple(x.shape[1:])}, but the malicious model was built "
                                    f"for in_shape {self.in_shape}")
        return self.model(self.block(x))


def input_shape(model: nn.Module, in_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """``in_shape``, else the fastleak model's own; checked by running ``model`` on one zero input."""
    from fastleak.models import spec_of

    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if in_shape is None:
        spec = spec_of(model)
        if spec is None or spec.in_shape is None:
            raise InvalidValueError("in_shape is needed for a model not built by fastleak.models.build, "
                                    "e.g. in_shape=(3, 32, 32)")
        in_shape = spec.in_shape
    if (not isinstance(in_shape, (tuple, list)) or not in_shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in in_shape)):
        raise InvalidValueError(f"in_shape must be a tuple of positive ints such as (3, 32, 32), got {in_shape!r}")
    in_shape = tuple(in_shape)
    param = next(model.parameters(), None)
    probe = torch.zeros((1, *in_shape), dtype=param.dtype if param is not None else torch.float32,
                        device=param.device if param is not None else None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(probe)
    except RuntimeError as exc:
        raise InvalidValueError(f"model does not accept inputs of in_shape {in_shape}: {exc}") from None
    finally:
        model.train(was_training)
    return in_shape


def check_public(public: torch.Tensor, in_shape: tuple[int, ...]) -> None:
    if not isinstance(public, torch.Tensor) or not public.is_floating_point():
        raise InvalidTypeError("public must be a floating-point tensor [M, *in_shape] of the server's own data, got "
                               + (f"dtype {public.dtype}" if isinstance(public, torch.Tensor) else type(public).__name__))
    if tuple(public.shape[1:]) != in_shape:
        raise InvalidValueError(f"public has per-sample shape {tuple(public.shape[1:])}, expected the model's in_shape "
                                f"{in_shape}")
    if public.shape[0] < 2:
        raise InvalidValueError(f"public must hold at least 2 samples to fit bins, got {public.shape[0]}")
    if not all_finite(public):
        raise InvalidValueError("public contains NaN or inf")


def attach(block: nn.Module, model: nn.Module, in_shape: tuple[int, ...]) -> MaliciousModel:
    """``block`` in front of a copy of ``model`` (the caller's model is left as it is)."""
    return MaliciousModel(block, copy.deepcopy(model), in_shape)
