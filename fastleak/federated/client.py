"""Simulated federated clients: what an honest-but-curious server observes for one private batch.

The client receives the server's model, computes on its private batch ``(x, y)`` and shares

* FedSGD (``fedsgd``): the gradient of ``client_loss(model(x), y, loss, reduction)`` with respect
  to every trainable parameter (``requires_grad``), in ``model.named_parameters()`` order;
* FedAvg (``fedavg``): ``W_after - W_before`` per trainable parameter after real local SGD steps
  ``W <- W - lr * grad`` (no momentum, no weight decay).

BatchNorm follows the model's mode: in train mode the batch statistics are used (and
``Observation.bn_train`` is True); in eval mode the running statistics. The caller's model is never
modified: the client computes on copies of its parameters and buffers (``torch.func.functional_call``).

FedAvg schedule (``local_schedule``): the batch is cut, in sample order, into consecutive
mini-batches of ``batch_size`` samples (the last one smaller when ``batch_size`` does not divide
``n``; ``batch_size=None`` means the full batch). Each of the ``epochs`` epochs takes
``local_steps`` SGD steps on mini-batches 0, 1, 2, ... in that order, wrapping around to
mini-batch 0 when ``local_steps`` exceeds their number; every epoch starts again at mini-batch 0.
There is no shuffling, so the schedule is fully determined by (n, local_steps, batch_size, epochs)
and an attack can replay it exactly. Total steps: ``epochs * local_steps``. Each step's loss uses
``reduction`` over that mini-batch's samples.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fastleak._checks import positive_int, positive_number
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated.losses import LOSSES, check_reduction, client_loss
from fastleak.federated.observation import Observation, Pair
from fastleak.models.batchnorm import has_batchnorm
from fastleak.models.registry import spec_of

Tensors = Mapping[str, torch.Tensor]


def trainable_names(model: nn.Module) -> tuple[str, ...]:
    """Names of the parameters a client shares: ``model.named_parameters()`` with ``requires_grad``."""
    names = tuple(n for n, p in model.named_parameters() if p.requires_grad)
    if not names:
        raise InvalidValueError("model has no trainable parameters (requires_grad=True)")
    return names


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model.state_dict()``: the state the client received."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def validate_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Check a private batch against ``model``; return the number of classes of its output.

    Raises TypeError/ValueError naming the argument when x is not a non-empty float tensor that the
    model accepts, or y is not one class id in [0, num_classes) per sample.
    """
    if not isinstance(model, nn.Module):
        raise InvalidTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InvalidTypeError(f"x must be a floating-point tensor [n, C, H, W], got {type(x).__name__}"
                               + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else ""))
    if x.dim() < 2 or x.shape[0] == 0:
        raise InvalidValueError(f"x must hold at least one sample, shape [n, ...] with n > 0; got {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.dim() != 1:
        raise InvalidTypeError("y must be a 1-D int64 tensor of class ids, got "
                               + (f"dtype {y.dtype}, shape {tuple(y.shape)}" if isinstance(y, torch.Tensor)
                                  else type(y).__name__))
    if y.shape[0] != x.shape[0]:
        raise InvalidValueError(f"y has {y.shape[0]} labels but x has {x.shape[0]} samples")
    if y.device != x.device:
        raise InvalidValueError(f"x and y must be on the same device, got {x.device} and {y.device}")
    spec = spec_of(model)
    if spec is not None and tuple(x.shape[1:]) != spec.in_shape:
        raise InvalidValueError(f"x has per-sample shape {tuple(x.shape[1:])} but model {spec.name!r} was built for "
                                f"in_shape {spec.in_shape}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x[:1])
    except RuntimeError as exc:
        raise InvalidValueError(f"x (per-sample shape {tuple(x.shape[1:])}, {x.dtype}, {x.device}) does not fit the "
                                f"model: {exc}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise InvalidValueError("the model must return logits of shape [n, num_classes], got "
                                + (f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
                                   else type(out).__name__))
    num_classes = out.shape[1]
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise InvalidValueError(f"y must hold class ids in [0, {num_classes}) for this model, got values in [{lo}, "
                                f"{hi}]")
    return num_classes


def _buffers(model: nn.Module, buffers: Tensors | None) -> dict[str, torch.Tensor]:
    source = dict(model.named_buffers()) if buffers is None else buffers
    return {k: v.detach().clone() for k, v in source.items()}


def client_gradients(model: nn.Module, params: Tensors, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
                     reduction: str = "mean", buffers: Tensors | None = None,
                     create_graph: bool = False) -> tuple[torch.Tensor, ...]:
    """Gradients of ``client_loss(model(x), y, loss, reduction)`` w.r.t. ``params``, in their order.

    ``params`` maps parameter names to the values to use (e.g. ``obs.pairs[i].state`` entries, or the
    tensors of an unrolled simulation); parameters not in it keep the model's own values. ``buffers``
    (default: the model's) are copied first, so running statistics are never modified. ``y`` may be
    class ids or soft labels [n, C]. ``create_graph=True`` keeps the graph for a double backward
    (gradient matching). Unused parameters get zero gradients. No input validation: this is the fast
    path that attacks call in their loop.
    """
    leaves = {n: (p if p.requires_grad else p.detach().requires_grad_()) for n, p in params.items()}
    logits = functional_call(model, {**_buffers(model, buffers), **leaves}, (x,))
    value = client_loss(logits, y, loss, reduction)
    grads = torch.autograd.grad(value, tuple(leaves.values()), create_graph=create_graph, allow_unused=True)
    return tuple(torch.zeros_like(p) if g is None else g for p, g in zip(leaves.values(), grads))


def local_schedule(num_samples: int, local_steps: int, batch_size: int | None = None,
                   epochs: int = 1) -> tuple[tuple[int, int], ...]:
    """The (start, stop) sample range of every local SGD step, in order (see the module docstring)."""
    n = positive_int(num_samples, "num_samples")
    steps = positive_int(local_steps, "local_steps")
    epochs = positive_int(epochs, "epochs")
    b = n if batch_size is None else positive_int(batch_size, "batch_size")
    if b > n:
        raise InvalidValueError(f"batch_size must be at most the number of samples {n}, got {b}")
    num_batches = math.ceil(n / b)
    per_epoch = tuple(((s % num_batches) * b, min((s % num_batches + 1) * b, n)) for s in range(steps))
    return per_epoch * epochs


def local_sgd(model: nn.Module, params: Tensors, x: torch.Tensor, y: torch.Tensor, *, lr: float,
              schedule: tuple[tuple[int, int], ...], loss: str = "ce", reduction: str = "mean",
              buffers: Tensors | None = None, create_graph: bool = False) -> dict[str, torch.Tensor]:
    """Run the client's local SGD ``W <- W - lr * grad`` over ``schedule``; return the final ``params``.

    With ``create_graph=True`` the result stays differentiable w.r.t. ``x``/``y`` (unrolled
    simulation for update-matching attacks). ``buffers`` (default: the model's) are only read.
    """
    current = dict(params)
    for start, stop in schedule:
        grads = client_gradients(model, current, x[start:stop], y[start:stop], loss=loss, reduction=reduction,
                                 buffers=buffers, create_graph=create_graph)
        current = {n: p - lr * g for (n, p), g in zip(current.items(), grads)}
        if not create_graph:
            current = {n: p.detach() for n, p in current.items()}
    return current


def per_example_gradients(model: nn.Module, params: Tensors, x: torch.Tensor, y: torch.Tensor, *,
                          loss: str = "ce", buffers: Tensors | None = None) -> tuple[torch.Tensor, ...]:
    """Gradient of each sample's loss separately: one tensor [n, *param.shape] per entry of ``params``.

    Needs a model without BatchNorm in train mode (batch statistics mix the samples).
    """
    if has_batchnorm(model, training=True):
        raise InvalidValueError("per-example gradients need BatchNorm in eval mode (batch statistics mix samples); "
                                "call model.eval() or use a model without BatchNorm")
    state = _buffers(model, buffers)
    names = tuple(params)

    def sample_loss(values, xi, yi):
        logits = functional_call(model, {**state, **dict(zip(names, values))}, (xi.unsqueeze(0),))
        return client_loss(logits, yi.unsqueeze(0), loss, "sum")

    values = tuple(p.detach() for p in params.values())
    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(values, x, y)


def make_observation(kind: str, model: nn.Module, state: Mapping[str, torch.Tensor], names: tuple[str, ...],
                     shared: tuple[torch.Tensor, ...], x: torch.Tensor, num_classes: int, *, loss: str,
                     reduction: str, meta: Mapping[str, Any] | None = None, **fields: Any) -> Observation:
    """Assemble a one-pair ``Observation`` of the batch ``x`` computed by a client on ``model``."""
    spec = spec_of(model)
    info: dict[str, Any] = {"training": model.training}
    if spec is not None:
        info["model"] = {"name": spec.name, "num_classes": spec.num_classes, "in_shape": spec.in_shape,
                         "seed": spec.seed, "options": dict(spec.options)}
    info.update(meta or {})
    return Observation(kind=kind, pairs=(Pair(state=state, shared=tuple(t.detach() for t in shared)),),
                       param_names=names, num_samples=x.shape[0], reduction=reduction, loss=loss,
                       bn_train=has_batchnorm(model, training=True), input_shape=tuple(x.shape[1:]), num_classes=num_classes,
                       meta=info, **fields)


def _check_loss(loss: str, reduction: str) -> None:
    LOSSES.get(loss)
    check_reduction(reduction)


def fedsgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
           reduction: str = "mean") -> Observation:
    """FedSGD: the client shares the gradient of its loss on the whole batch (kind "gradient")."""
    _check_loss(loss, reduction)
    num_classes = validate_batch(model, x, y)
    state = snapshot(model)
    names = trainable_names(model)
    current = dict(model.named_parameters())
    grads = client_gradients(model, {n: current[n] for n in names}, x, y, loss=loss, reduction=reduction)
    return make_observation("gradient", model, state, names, grads, x, num_classes, loss=loss, reduction=reduction)


def fedavg(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, local_steps: int, lr: float,
           batch_size: int | None = None, epochs: int = 1, loss: str = "ce", reduction: str = "mean") -> Observation:
    """FedAvg: the client runs ``epochs * local_steps`` real SGD steps (schedule in the module
    docstring) on a copy of the model and shares ``W_after - W_before`` (kind "update")."""
    _check_loss(loss, reduction)
    positive_number(lr, "lr")
    num_classes = validate_batch(model, x, y)
    schedule = local_schedule(x.shape[0], local_steps, batch_size, epochs)
    state = snapshot(model)
    names = trainable_names(model)
    current = dict(model.named_parameters())
    start = {n: current[n].detach() for n in names}
    final = local_sgd(model, start, x, y, lr=float(lr), schedule=schedule, loss=loss, reduction=reduction)
    shared = tuple(final[n] - start[n] for n in names)
    return make_observation("update", model, state, names, shared, x, num_classes, loss=loss, reduction=reduction,
                            local_steps=local_steps, local_lr=float(lr), local_batch_size=batch_size,
                            local_epochs=epochs)
