"""Sign rules on the final layer's gradient: iDLG, GradInversion (Yin et al.), LLG, bias-LLG.

With cross-entropy, a class's logit gradient is p − y: negative only for the sample's own
class. With non-negative penultimate features (ReLU, sigmoid) the FC weight-gradient rows
of present classes therefore lean negative. Estimates returned here are whole counts.
"""
from __future__ import annotations

import torch

from fastleak.labels.evidence import Evidence
from fastleak.labels.registry import register
from fastleak.labels.types import LabelConfig
from fastleak.ops import fc_row_stats


def _one_hot_counts(picks: torch.Tensor, num_classes: int) -> torch.Tensor:
    out = torch.zeros(picks.shape[0], num_classes, dtype=torch.float64, device=picks.device)
    return out.scatter_add_(1, picks, torch.ones_like(picks, dtype=torch.float64))


@register("idlg", single_sample=True)
def idlg(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """iDLG (Zhao et al. 2020): the one label is argmin_c Σ_m ΔW[c, m]; batch size 1 only."""
    row_sum = fc_row_stats(ev.grad_w)[0]
    return _one_hot_counts(row_sum.argmin(1, keepdim=True), ev.num_classes)


@register("yin", unique_labels=True)
def yin(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """GradInversion (Yin et al. 2021): the B classes whose ΔW rows have the most negative minimum."""
    row_min = fc_row_stats(ev.grad_w)[1].double()
    order = row_min.argsort(1)
    rank = torch.arange(ev.num_classes, device=order.device)
    chosen = rank[None, :] < ev.num_samples[:, None]
    return torch.zeros_like(row_min).scatter_(1, order, chosen.double())


def llg_counts(g: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
    """LLG (Wainakh et al.) on per-class scores g [P, C] (negative = present).

    Stage 1 takes every class with g < 0 once and removes one sample's impact
    m = (Σ_{g<0} g)(1 + 1/C)/B from it; stage 2 repeatedly takes argmin g and removes the
    impact from THAT class, until B labels are taken. If stage 1 finds more than B classes,
    the B most negative ones are kept.
    """
    g = g.double().clone()
    p, c = g.shape
    b = num_samples.to(g.device).long()
    negative = g < 0
    impact = (g * negative).sum(1) * (1.0 + 1.0 / c) / b.double()
    over = negative.sum(1) > b
    if bool(over.any()):
        rank = g.argsort(1).argsort(1)
        negative = torch.where(over[:, None], negative & (rank < b[:, None]), negative)
    counts = negative.double()
    g = g - impact[:, None] * counts
    left = b - negative.sum(1)
    rows = torch.arange(p, device=g.device)
    for _ in range(int(left.max().clamp_min(0))):
        active = left > 0
        pick = g.argmin(1)
        step = active.double()
        counts[rows, pick] += step
        g[rows, pick] -= impact * step
        left = left - active.long()
    return counts


@register("llg")
def llg(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """LLG (Wainakh et al. 2022): greedy counts from the FC weight-gradient row sums."""
    return llg_counts(fc_row_stats(ev.grad_w)[0], ev.num_samples)


@register("bias", needs_bias=True)
def bias(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """LLG's greedy rule on the FC bias gradient Δb (Δb_c = mean_k p_kc − n_c/B)."""
    return llg_counts(ev.grad_b, ev.num_samples)
