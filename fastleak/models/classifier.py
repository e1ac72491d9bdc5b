"""The final classifier of a model: the ``nn.Linear`` that produces the logits.

Label recovery and attacks on arbitrary user ``nn.Module`` s use these helpers. A model qualifies
when its output is returned unchanged by an ``nn.Linear`` (no softmax, reshape or other function
after it).
"""
from __future__ import annotations

import torch
from torch import nn

from fastleak.errors import InvalidTypeError, InvalidValueError

_REQUIREMENT = ("model must end in an nn.Linear classifier whose output is the model's output "
                "(no activation, softmax or reshape after it)")


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]


def final_linear(model: nn.Module, x: torch.Tensor | None = None) -> nn.Linear:
    """The ``nn.Linear`` that produces ``model``'s output.

    Without ``x`` this is the last leaf module in registration order (``model.modules()``), which
    is the execution order for ``nn.Sequential`` and for every model of ``fastleak.models``. With
    an example input ``x``, the model is run once (no grad) and the leaf module whose output IS
    the model's output is taken, so the check also holds for models that register modules out of
    order. Raises ``ValueError`` when that module is not an ``nn.Linear``.
    """
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if x is None:
        leaves = _leaves(model)
        name, last = leaves[-1]
        if not isinstance(last, nn.Linear):
            raise InvalidValueError(f"{_REQUIREMENT}; its last module {name or type(model).__name__!r} is "
                                    f"{type(last).__name__}")
        return last
    produced: list[tuple[str, nn.Module, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, inp, out, _n=name: produced.append((_n, mod, out)))
               for name, m in _leaves(model)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    for name, module, result in reversed(produced):
        if result is out:
            if not isinstance(module, nn.Linear):
                raise InvalidValueError(f"{_REQUIREMENT}; the output comes from {name!r}, a {type(module).__name__}")
            return module
    raise InvalidValueError(f"{_REQUIREMENT}; the output is not returned by any submodule "
                            "(a function is applied after the last layer)")


def final_linear_param_names(model: nn.Module, x: torch.Tensor | None = None) -> tuple[str, str | None]:
    """Names in ``model.named_parameters()`` of the classifier's weight and bias (None without bias)."""
    layer = final_linear(model, x)
    names = {id(p): n for n, p in model.named_parameters()}
    weight = names.get(id(layer.weight))
    if weight is None:
        raise InvalidValueError("the classifier weight is not a parameter of the model")
    bias = None if layer.bias is None else names.get(id(layer.bias))
    return weight, bias


def features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model(x)`` and return (input of the final Linear, logits), both still in the graph.

    Wrap the call in ``torch.no_grad()`` when no gradient is needed. Raises ``ValueError`` when the
    output does not come straight from the final ``nn.Linear``.
    """
    layer = final_linear(model)
    seen: dict[str, torch.Tensor] = {}

    def hook(mod, inp, out):
        seen["features"], seen["out"] = inp[0], out

    handle = layer.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if "out" not in seen or seen["out"] is not logits:
        raise InvalidValueError(f"{_REQUIREMENT}; the last registered Linear did not produce the output")
    return seen["features"], logits
