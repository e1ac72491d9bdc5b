"""``analytic``: the input read off a model's first fully connected layer (``fastleak.closedform.linear``).

The model must start with an ``nn.Linear`` with a bias that reads the input, flattened or through a
per-feature affine map (a normalisation in front; ``fastleak.inspection.layers``). What it reads:

* one sample: the input exactly, from every live row of the layer's gradient;
* a batch, when that layer is the classifier itself (softmax regression): every sample's input,
  exactly for labels that appear once (``final_features``, at least as many classes as samples);
* a batch through hidden layers: the samples that at least two rows agree on (rows reached by one
  sample alone; ``singleton_rows``) exactly; the remaining slots take the ratios of the rows with
  the largest bias gradients (each dominated by one sample), which are not exact.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fastleak.closedform.linear import (SAME_ROW_TOLERANCE, classifier_tensors, final_features, layer_input,
                                        row_inputs, singletons_of)
from fastleak.closedform.registry import Reconstruction, Target, method
from fastleak.errors import InvalidValueError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputLayer:
    """The ``nn.Linear`` that reads a model's input: its parameter names, and the per-feature affine map
    ``u = scale * x.flatten() + shift`` from the input to what the layer receives."""

    name: str
    module: nn.Linear
    weight: str
    bias: str
    scale: Tensor
    shift: Tensor

    def to_input(self, u: Tensor, in_shape: tuple[int, ...]) -> Tensor:
        """Inputs [..., *in_shape] from what the layer received [..., m]."""
        x = (u - self.shift.to(u)) / self.scale.to(u)
        return x.reshape(*u.shape[:-1], *in_shape)


def _first_layer(model: nn.Module, in_shape: tuple[int, ...]) -> str:
    """'name' (Type) of the first module with parameters that the forward pass runs."""
    order: list[tuple[str, nn.Module]] = []
    handles = [m.register_forward_pre_hook(lambda mod, args, _n=n: order.append((_n, mod)))
               for n, m in model.named_modules() if next(m.children(), None) is None and
               next(m.parameters(recurse=False), None) is not None]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *in_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    if not order:
        return "none"
    name, module = order[0]
    return f"{name!r} ({type(module).__name__})"


def input_layer(model: nn.Module, in_shape: tuple[int, ...]) -> InputLayer:
    """The fully connected layer with a bias that reads ``model``'s input (module docs), or a clear error."""
    from fastleak.inspection.layers import linear_layers

    reading = [layer for layer in linear_layers(model, tuple(in_shape)) if layer.reads_input]
    if not reading:
        raise InvalidValueError(
            f"analytic reads the input off a first fully connected layer (nn.Linear with a bias, on the flattened "
            f"input); this model's first layer is {_first_layer(model, in_shape)}. Its final layer's features come "
            "from fastleak.closedform.final_features (preset feature_inversion); conv networks: rgap")
    layer = reading[0]
    if layer.module.bias is None:
        raise InvalidValueError(f"analytic needs the bias gradient of the layer that reads the input, "
                                f"{layer.name!r}; it has no bias")
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[str, Tensor] = {}
    handle = layer.module.register_forward_pre_hook(lambda mod, args: seen.__setitem__("u", args[0].detach()))
    param = next(model.parameters())
    probes = torch.stack([torch.zeros(in_shape), torch.ones(in_shape)]).to(param)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(probes)
    finally:
        model.train(was_training)
        handle.remove()
    u = seen["u"].double()
    return InputLayer(layer.name, layer.module, names[id(layer.module.weight)], names[id(layer.module.bias)],
                      scale=u[1] - u[0], shift=u[0])


def _batch_through_hidden_layers(dw: Tensor, db: Tensor, batch: int) -> tuple[Tensor, int]:
    """``batch`` inputs [B, m] of a first layer that feeds hidden layers, and how many are certified."""
    ratios, live = row_inputs(dw, db)
    found = singletons_of(ratios[live])
    inputs = list(found.inputs[:batch])
    order = torch.argsort(db.double().abs(), descending=True)
    for k in order[live[order]].tolist():
        if len(inputs) >= batch:
            break
        candidate = ratios[k]
        if all((candidate - x).abs().amax() > SAME_ROW_TOLERANCE * x.abs().amax() for x in inputs):
            inputs.append(candidate)
    inputs += [torch.full_like(ratios[0], float("nan"))] * (batch - len(inputs))
    return torch.stack(inputs).double(), min(len(found.inputs), batch)


def paired_labels(model: nn.Module, gradients: dict[str, Tensor], images: Tensor, labels: Tensor) -> Tensor:
    """``labels`` reordered to follow ``images`` [B, ...]: the label row of the final layer's weight gradient
    leans against its own sample's features (``g = p - onehot`` is negative there), so each image takes the
    label whose row is the most anti-aligned with its features (Hungarian assignment)."""
    from scipy.optimize import linear_sum_assignment

    from fastleak.models import features_and_logits

    dw = classifier_tensors(model, gradients)[0].double()
    with torch.no_grad():
        feats = features_and_logits(model, images.to(next(model.parameters())))[0].double().flatten(1)
    rows = torch.nn.functional.normalize(dw[labels], dim=1)
    cost = torch.nn.functional.normalize(feats, dim=1) @ rows.T  # [image, label]
    cost = torch.nan_to_num(cost, nan=0.0)
    image_index, label_index = linear_sum_assignment(cost.cpu().numpy())
    out = labels.clone()
    out[torch.as_tensor(image_index, device=labels.device)] = labels[torch.as_tensor(label_index, device=labels.device)]
    return out


@method("analytic")
def analytic(targets: list[Target], labels: list[Tensor], *, refine_steps: int = 200) -> list[Reconstruction]:
    """The input off the first fully connected layer: exact for one sample, and per sample for unique labels
    when that layer is the classifier (module docs).

    refine_steps: alternations of ``final_features`` when the first layer is the classifier."""
    from fastleak.models import final_linear

    if refine_steps < 0:
        raise InvalidValueError(f"analytic option refine_steps must be >= 0, got {refine_steps!r}")
    out = []
    for target, y in zip(targets, labels):
        in_shape = target.input_shape
        layer = input_layer(target.model, in_shape)
        dw, db = target.gradients[layer.weight], target.gradients[layer.bias]
        batch = target.num_samples
        if batch == 1:
            u = layer_input(dw, db)[None]
        elif final_linear(target.model) is layer.module:
            u = final_features(dw, db, layer.module.weight.detach(), layer.module.bias.detach(), y,
                               loss=target.observation.loss, reduction=target.observation.reduction,
                               steps=refine_steps).features
        else:
            u, certified = _batch_through_hidden_layers(dw, db, batch)
            log.info("analytic: %d of %d samples certified by rows that one sample alone reached", certified, batch)
        x = torch.nan_to_num(layer.to_input(u, in_shape), nan=0.5)
        if batch > 1 and final_linear(target.model) is not layer.module:
            y = paired_labels(target.model, target.gradients, x.to(dw.dtype), y)
        out.append(Reconstruction(images=x[None], labels=y))
    return out

