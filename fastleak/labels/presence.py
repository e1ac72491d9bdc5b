"""Which classes the final layer's gradient shows present, without false positives.

With cross-entropy a sample adds p − onehot(y) to B·Δb: negative only at its own label. A class
that no sample holds therefore has Δb_c = mean_k p_kc > 0, and, when the penultimate features are
non-negative (ReLU, sigmoid), no negative entry in its weight-gradient row either (the signs that
iDLG, Yin et al. and RLG read). So a negative Δb_c, or a negative entry of row c of ΔW, shows
class c present however confident the model is. FedAvg updates are sums of such gradients along
the local run, which keep the signs. A present class can still be missed: the positive mass of the
other classes' samples may outweigh its own on every entry.
"""
from __future__ import annotations

import torch

from fastleak.labels.evidence import Evidence

# Relative size below which a negative entry counts as rounding of a zero (float32 gradients).
RELATIVE_TOLERANCE = 1e-6
FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def detected(ev: Evidence, nonnegative_features: bool) -> torch.Tensor:
    """Bool [P, C]: the classes each row's gradient shows present (see the module docstring)."""
    gw = ev.grad_w.double()
    scale = gw.abs().amax((1, 2))
    tol_w = RELATIVE_TOLERANCE * scale
    if ev.delta_w is not None:
        # An update's pseudo-gradient is a difference of float32 weights: allow their rounding.
        raw = ev.delta_w.double().abs().amax((1, 2)).clamp_min(1e-300)
        ratio = torch.where(ev.is_update, scale / raw, torch.zeros_like(scale))
        weights = ev.weight.double().abs().amax((1, 2))[ev.state_index]
        tol_w = torch.maximum(tol_w, 4 * FLOAT32_EPS * weights * ratio)
    shown = torch.zeros(gw.shape[:2], dtype=torch.bool, device=gw.device)
    if nonnegative_features:
        shown |= gw.amin(2) < -tol_w[:, None]
    if ev.grad_b is not None:
        gb = ev.grad_b.double()
        tol_b = RELATIVE_TOLERANCE * gb.abs().amax(1)
        if ev.delta_b is not None:
            raw_b = ev.delta_b.double().abs().amax(1).clamp_min(1e-300)
            ratio_b = torch.where(ev.is_update, gb.abs().amax(1) / raw_b, torch.zeros_like(tol_b))
            biases = ev.bias.double().abs().amax(1)[ev.state_index]
            tol_b = torch.maximum(tol_b, 4 * FLOAT32_EPS * biases * ratio_b)
        shown |= gb < -tol_b[:, None]
    return shown


def nonnegative_features(ev: Evidence, inputs: torch.Tensor) -> bool:
    """Whether the model's penultimate features are >= 0 on ``inputs`` at every row's start state."""
    import copy

    from fastleak.models import features_and_logits

    model = copy.deepcopy(ev.model)
    for index in torch.unique(ev.state_index).tolist():
        row = int((ev.state_index == index).nonzero()[0])
        obs = ev.observations[ev.pair_ids[row][0]]
        model.load_state_dict(ev.states[index])
        model.train(obs.bn_train)
        with torch.no_grad():
            feats, _ = features_and_logits(model, inputs.to(next(model.parameters())))
        if bool((feats < 0).any()):
            return False
    return True
