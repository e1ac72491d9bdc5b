"""Instance-wise label restoration from the FC gradients (iLRG, Ma et al. 2023)."""
from __future__ import annotations

import torch

from fastleak.labels import trajectory
from fastleak.labels.evidence import Evidence
from fastleak.labels.registry import register
from fastleak.labels.types import LabelConfig


def class_probabilities(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """P̂ [P, C, C]: row c is softmax(W ē_c + b) with ē_c = ΔW_c / Δb_c, averaged along the
    local-training trajectory for updates (the logits are linear in the trajectory time)."""
    gw, gb = ev.grad_w.double(), ev.grad_b.double()
    tiny = torch.finfo(torch.float64).tiny
    safe_gb = torch.where(gb.abs() < tiny, torch.full_like(gb, tiny), gb)
    emb = gw / safe_gb[..., None]
    logits = torch.empty(ev.num_rows, ev.num_classes, ev.num_classes, dtype=torch.float64, device=gw.device)
    for u in torch.unique(ev.state_index).tolist():
        rows = (ev.state_index == u).nonzero().squeeze(1)
        w, b = ev.weight[u].double(), ev.bias[u].double()
        logits[rows] = emb[rows] @ w.T + b
    if ev.delta_w is None:
        return torch.softmax(logits, dim=2)
    t, weights = trajectory.times(ev, config)
    dlogits = emb @ ev.delta_w.double().transpose(1, 2) + ev.delta_b.double()[:, None, :]
    probs = torch.zeros_like(logits)
    for k in range(t.shape[1]):
        probs += weights[:, k, None, None] * torch.softmax(logits + t[:, k, None, None] * dlogits, dim=2)
    return probs


@register("ilrg", needs_bias=True)
def ilrg(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """iLRG (Ma et al. 2023): least squares [1ᵀ; P̂ᵀ − I]·n = [B; B·Δb] for the counts n."""
    probs = class_probabilities(ev, config)
    p, c = ev.num_rows, ev.num_classes
    b = ev.num_samples.double()
    eye = torch.eye(c, dtype=torch.float64, device=probs.device)
    system = torch.cat([torch.ones(p, 1, c, dtype=torch.float64, device=probs.device),
                        probs.transpose(1, 2) - eye], dim=1)
    rhs = torch.cat([b[:, None], b[:, None] * ev.grad_b.double()], dim=1)
    return torch.linalg.lstsq(system, rhs[..., None]).solution[..., 0]
