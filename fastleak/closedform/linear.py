"""What the weight and bias gradients of a fully connected layer say about its input.

A layer ``z = W u + b`` with the loss gradient ``g_i = dL/dz`` for sample ``i`` has the weight gradient
``dW = sum_i g_i u_i^T`` and the bias gradient ``db = sum_i g_i``. Row ``k`` of ``dW`` over ``db_k`` is
the average of the inputs that reach row ``k``, weighted by their ``g_ik``:

* one sample: every row with ``db_k != 0`` is its input exactly (``layer_input``);
* rows reached by one sample of a batch are that sample exactly (``singleton_rows``);
* the final classifier: the row of a label that appears once is dominated by its sample
  (``g = p - onehot``, large and negative there). With the labels known, ``dW = G^T F`` is a linear
  system in the features ``F`` [B, m] once ``G`` [B, C] is, and ``G`` follows from ``F`` through the
  logits; alternating the two from the rows' ratios converges to the exact features of every
  sample in a few steps when the labels are unique and there are at least as many classes as
  samples (``final_features``: the cross-entropy's in ten steps or so, the squared error's slower).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fastleak.errors import InvalidValueError
from fastleak.federated.losses import LOSSES

log = logging.getLogger(__name__)

SAME_ROW_TOLERANCE = 1e-4  # relative: two rows that hold the same sample agree to float32 rounding


def _live_rows(bias_grad: Tensor) -> Tensor:
    scale = bias_grad.abs().amax(-1, keepdim=True)
    return bias_grad.abs() > 1e-12 * scale.clamp_min(torch.finfo(torch.float64).tiny)


def layer_input(weight_grad: Tensor, bias_grad: Tensor) -> Tensor:
    """The input [..., m] of a fully connected layer for one sample, from its weight gradient [..., K, m]
    and bias gradient [..., K]: the least-squares solution of ``dW_k = db_k u`` over the rows (returned in
    float64)."""
    if weight_grad.shape[:-1] != bias_grad.shape:
        raise InvalidValueError(f"weight_grad {tuple(weight_grad.shape)} and bias_grad {tuple(bias_grad.shape)} do not "
                                "belong to one layer: expected [..., K, m] and [..., K]")
    norm = bias_grad.double().pow(2).sum(-1, keepdim=True)
    if bool((norm == 0).any()):
        raise InvalidValueError("bias_grad is zero: no sample reached the layer, so its input cannot be read")
    # one matrix-vector product in the gradient's dtype: each entry a sum of K products, rounded once more
    return (bias_grad.unsqueeze(-2).to(weight_grad.dtype) @ weight_grad).squeeze(-2).double() / norm


def row_inputs(weight_grad: Tensor, bias_grad: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's ratio ``dW_k / db_k`` [K, m] (in the gradient's dtype; zero where the row is dead) and which
    rows are live [K]."""
    live = _live_rows(bias_grad.double())
    db = torch.where(live, bias_grad, torch.ones_like(bias_grad))
    return (weight_grad / db[:, None]).mul_(live[:, None]), live


@dataclass(frozen=True)
class Singletons:
    """Inputs read off rows that one sample alone reached: ``inputs`` [S, m], each seen in ``rows`` [S] rows
    (at least two agree, so each is certified), in decreasing order of rows."""

    inputs: Tensor
    rows: Tensor


def _agreeing_groups(ratios: Tensor) -> list[list[int]]:
    """Rows whose ratios agree to ``SAME_ROW_TOLERANCE`` (relative to the first row of the group's largest entry),
    grouped. Rows are visited in the order of a seeded random projection ``d``; two rows that agree project within
    ``||d||_1`` times their largest allowed difference of each other, so each row is compared entry by entry only
    with the groups whose first row projects that close."""
    import numpy as np

    direction = torch.randn(ratios.shape[1], generator=torch.Generator().manual_seed(0), dtype=ratios.dtype)
    projected = (ratios @ direction.to(ratios.device)).cpu().numpy()
    limits = (SAME_ROW_TOLERANCE * ratios.abs().amax(1)).cpu().numpy()
    reach = float(direction.abs().sum()) * limits
    order = np.argsort(projected, kind="stable")
    widest = float(reach.max()) if len(reach) else 0.0
    rows = ratios.detach().cpu().numpy()  # one copy: the comparisons below are many and small
    groups: list[list[int]] = []
    heads = np.empty(len(order), dtype=np.int64)  # each group's first row
    near = 0  # groups near, near + 1, ... have their first row within reach
    for k in order.tolist():
        while near < len(groups) and projected[k] - projected[heads[near]] > widest:
            near += 1
        ids = np.arange(near, len(groups))
        ids = ids[projected[k] - projected[heads[ids]] <= reach[heads[ids]]]
        if len(ids):
            agree = np.abs(rows[heads[ids]] - rows[k]).max(1) <= limits[heads[ids]]
            if agree.any():
                groups[int(ids[np.argmax(agree)])].append(k)
                continue
        heads[len(groups)] = k
        groups.append([k])
    return groups


def singleton_rows(weight_grad: Tensor, bias_grad: Tensor, min_rows: int = 2) -> Singletons:
    """The inputs that at least ``min_rows`` rows agree on: rows reached by one sample hold it exactly, while
    rows that mix samples hold weighted averages that differ from row to row."""
    ratios, live = row_inputs(weight_grad, bias_grad)
    return singletons_of(ratios[live], min_rows)


def singletons_of(ratios: Tensor, min_rows: int = 2) -> Singletons:
    """``singleton_rows`` of live rows' ratios [K, m]."""
    groups = sorted((g for g in _agreeing_groups(ratios) if len(g) >= min_rows), key=len, reverse=True)
    if not groups:
        return Singletons(ratios.new_zeros(0, ratios.shape[1]), torch.zeros(0, dtype=torch.long))
    return Singletons(torch.stack([ratios[g].mean(0) for g in groups]), torch.tensor([len(g) for g in groups]))


def _loss_gradient(logits: Tensor, labels: Tensor, loss: str, reduction: str) -> Tensor:
    """dL/dlogits [P, B, C] of each observation's loss (its ``reduction`` over its own B samples)."""
    with torch.enable_grad():
        z = logits.detach().requires_grad_(True)
        per_sample = LOSSES.get(loss)(z.flatten(0, 1), labels.flatten()).view(labels.shape)
        total = per_sample.mean(1).sum() if reduction == "mean" else per_sample.sum()
        (grad,) = torch.autograd.grad(total, z)
    return grad


@dataclass(frozen=True)
class Features:
    """The final layer's inputs: ``features`` [P, B, m] (float64) and which samples' are exact, ``exact``
    [P, B] (those whose label appears once, when the refinement converged with C >= B), after ``steps``."""

    features: Tensor
    exact: Tensor
    steps: int


def final_features(weight_grad: Tensor, bias_grad: Tensor, weight: Tensor, bias: Tensor, labels: Tensor, *,
                   loss: str = "ce", reduction: str = "mean", steps: int = 200, tolerance: float = 1e-12) -> Features:
    """The inputs of the final classifier ``logits = F W^T + b`` for every sample (module docs).

    weight_grad [P, C, m] and bias_grad [P, C]: P observations' gradients of the layer (or [C, m], [C]);
    weight [P, C, m], bias [P, C]: the layer at each observation's state; labels [P, B]. Every sample
    starts at its label's row ratio; ``steps`` alternations of the logits' loss gradient ``G`` and the
    least-squares features ``F = argmin ||G^T F - dW||`` follow, stopping when the features change by less
    than ``tolerance`` (relative).
    """
    single = weight_grad.dim() == 2
    if single:
        weight_grad, bias_grad, weight, bias, labels = (t.unsqueeze(0) for t in
                                                        (weight_grad, bias_grad, weight, bias, labels))
    dw, db, w, b = (t.double() for t in (weight_grad, bias_grad, weight, bias))
    p, c = db.shape
    if labels.dim() != 2 or labels.shape[0] != p:
        raise InvalidValueError(f"labels must be [P, B] with P = {p}, got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise InvalidValueError(f"labels must lie in [0, {c}), got [{int(labels.min())}, {int(labels.max())}]")
    live = torch.gather(_live_rows(db), 1, labels)
    rows = torch.gather(dw, 1, labels[..., None].expand(-1, -1, dw.shape[-1]))
    features = torch.where(live[..., None], rows / torch.where(live, torch.gather(db, 1, labels), 1.0)[..., None], 0.0)
    counts = torch.zeros(p, c, dtype=torch.long, device=labels.device).scatter_add_(1, labels,
                                                                                     torch.ones_like(labels))
    unique = torch.gather(counts, 1, labels) == 1
    batch = labels.shape[1]
    done, converged, change = 0, False, float("inf")
    if c >= batch:
        for done in range(1, steps + 1):
            logits = features @ w.transpose(1, 2) + b[:, None, :]
            g = _loss_gradient(logits, labels, loss, reduction)
            # the least-squares features through the normal equations: G G^T is only [B, B] and well conditioned
            # (each row of G is dominated by its own label's entry); its pseudo-inverse keeps a singular one
            # (repeated labels that start alike) at the minimum-norm solution
            new = torch.linalg.pinv(g @ g.transpose(1, 2), hermitian=True) @ (g @ dw)
            change = (new - features).norm() / new.norm().clamp_min(1e-300)
            features = new
            if float(change) <= tolerance:
                converged = True
                break
        if not converged:
            log.warning("final_features: not converged in %d steps (last change %.1e); the features are not exact",
                        steps, float(change))
    else:
        log.info("final_features: %d classes < %d samples, the row ratios are not refined", c, batch)
    exact = unique & converged
    if single:
        return Features(features[0], exact[0], done)
    return Features(features, exact, done)


def classifier_tensors(model: nn.Module, gradients: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The final classifier's (weight gradient, bias gradient, weight, bias) of ``model`` from ``gradients``
    (by parameter name); refuses a classifier without a bias."""
    from fastleak.models import final_linear, final_linear_param_names

    layer = final_linear(model)
    weight_name, bias_name = final_linear_param_names(model)
    if bias_name is None:
        raise InvalidValueError("the final nn.Linear has no bias: the closed-form features need its bias gradient "
                                "(build the model with bias=True)")
    return gradients[weight_name], gradients[bias_name], layer.weight.detach(), layer.bias.detach()
