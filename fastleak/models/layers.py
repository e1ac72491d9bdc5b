"""Small building blocks shared by the registered models."""
from __future__ import annotations

import torch
from torch import nn

from fastleak._registry import Registry
from fastleak.errors import InvalidValueError

ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation")
ACTIVATIONS.register("relu")(nn.ReLU)
ACTIVATIONS.register("sigmoid")(nn.Sigmoid)
ACTIVATIONS.register("tanh")(nn.Tanh)


def image_shape(in_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    if len(in_shape) != 3:
        raise InvalidValueError(f"model {model!r} needs in_shape (channels, height, width), got {in_shape!r}")
    return in_shape  # type: ignore[return-value]


def flat_features(body: nn.Module, in_shape: tuple[int, ...], model: str) -> int:
    """Number of features ``body`` produces per sample for inputs of ``in_shape`` (a dry run)."""
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(1, *in_shape))
    except RuntimeError as exc:
        raise InvalidValueError(f"in_shape {in_shape} does not fit model {model!r} (too small?): {exc}") from None
    finally:
        body.train(was_training)
    return out[0].numel()
