"""The fully connected layers of a model, and which of them read the client's input directly.

A layer "reads the input" when what it receives is the flattened input itself, or an affine map of
each input value (a normalisation ``(x - mean) / std`` in front of it): its weight gradient is then
a sum of the client's inputs weighted per sample, which closed-form attacks read. Found by running
the model (in eval mode, no gradients) on three probe inputs and fitting, per feature, the affine
map from the first two to the layer's input; the third must follow it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastleak.errors import InvalidValueError


@dataclass(frozen=True)
class LinearLayer:
    """``name`` in ``model.named_modules()``, the module, and whether it reads the input (module docs)."""

    name: str
    module: nn.Linear
    reads_input: bool


def probes(in_shape: tuple[int, ...], like: torch.Tensor | None) -> torch.Tensor:
    """Three probe inputs [3, *in_shape], uniform in [0, 1] (seeded, so that every feature varies
    from one to the next), on ``like``'s device and floating dtype."""
    out = torch.rand((3, *in_shape), generator=torch.Generator().manual_seed(0))
    return out.to(device=like.device if like is not None else None,
                  dtype=like.dtype if like is not None and like.is_floating_point() else torch.float32)


def _affine_of_input(received: torch.Tensor, inputs: torch.Tensor) -> bool:
    """Whether every feature of ``received`` [3, N] is ``a * inputs + b`` [3, N] per feature (rows 0, 1 fit
    ``a``/``b``, row 2 must follow)."""
    if received.shape != inputs.shape:
        return False
    r, x = received.double(), inputs.double()
    dx = x[1] - x[0]
    varies = dx.abs() > 1e-6
    a = torch.where(varies, (r[1] - r[0]) / torch.where(varies, dx, 1.0), 0.0)
    b = r[0] - a * x[0]
    predicted = a * x[2] + b
    scale = r.abs().amax().clamp_min(1e-12)
    constant_ok = (r[1] - r[0]).abs()[~varies].le(1e-5 * scale).all()
    return bool(constant_ok) and bool(((predicted - r[2]).abs() <= 1e-4 * scale + 1e-5 * r[2].abs()).all()) \
        and bool((a[varies] != 0).any())


def linear_layers(model: nn.Module, in_shape: tuple[int, ...]) -> list[LinearLayer]:
    """Every ``nn.Linear`` of ``model`` (in ``named_modules`` order), each marked by whether it reads
    the input (module docs)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return []
    param = next(model.parameters(), None)
    inputs = probes(in_shape, param)
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor):
                seen.setdefault(name, args[0].detach())
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(inputs)
    except RuntimeError as exc:
        raise InvalidValueError(f"model does not accept inputs of shape {tuple(inputs.shape[1:])}: {exc}") from None
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    flat = inputs.flatten(1)
    return [LinearLayer(n, m, n in seen and seen[n].dim() == 2 and _affine_of_input(seen[n], flat))
            for n, m in linears]
