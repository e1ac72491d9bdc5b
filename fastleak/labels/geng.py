"""Label counts with duplicates from the FC weight gradient (Geng et al. 2021)."""
from __future__ import annotations

import torch

from fastleak.labels.evidence import Evidence
from fastleak.labels.registry import register
from fastleak.labels.statistics import dummy_statistics, shifted_mean_softmax
from fastleak.labels.types import LabelConfig
from fastleak.ops import fc_row_stats


@register("geng")
def geng(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """Geng et al. 2021: n_c = B·(mean_k p̂_kc·Ô_k − Σ_m ΔW[c, m]) / mean_k Ô_k on dummy inputs.

    With mean reduction Σ_m ΔW[c, m] = (1/B)·Σ_k (p_kc − y_kc)·Ô_k; the dummies stand in for
    the unknown softmax outputs p and feature sums Ô of the private batch. (Geng's formula
    uses the product of the two means; the mean of the product is the same estimate with the
    correlation between confidence and feature size kept.)
    """
    a, obar, _ = dummy_statistics(ev, config)
    g = fc_row_stats(ev.grad_w)[0].double()
    return ev.num_samples[:, None].double() * (a - g) / obar[:, None]


@register("geng_bias", needs_bias=True)
def geng_bias(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """Geng et al.'s estimator on the FC bias, a weight on the constant feature 1:
    n_c = B·(mean_k p̂_kc − Δb_c) on dummy inputs.

    With mean reduction Δb_c = mean_k p_kc − n_c/B exactly, so only the batch's mean softmax
    output is approximated; the variation of the feature sums across samples, which limits
    ``geng``, does not enter.
    """
    _, _, pbar = dummy_statistics(ev, config)
    return ev.num_samples[:, None].double() * (pbar - ev.grad_b.double())


def batch_mean_features(ev: Evidence) -> torch.Tensor:
    """h̄ [P, D] = ΔWᵀΔb / |Δb|²: the batch's mean penultimate feature, to first order.

    ΔW = (1/B)·Σ_k (p_k − y_k)·h_kᵀ = Δb·h̄ᵀ + (1/B)·Σ_k (p_k − y_k)·(h_k − h̄)ᵀ, and the
    second term is small when the features vary little with the label, as in an untrained
    model. The ratio does not depend on the gradient's scale or sign. Rows with Δb = 0: NaN.
    """
    gw, gb = ev.grad_w.double(), ev.grad_b.double()
    return (gw.transpose(1, 2) @ gb[..., None])[..., 0] / (gb * gb).sum(1, keepdim=True)


@register("geng_shift", needs_bias=True)
def geng_shift(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """``geng_bias`` with the dummies moved to the batch: n_c = B·(mean_k p̂_kc − Δb_c), where
    p̂_k is the softmax of dummy k with its penultimate features translated by h̄ − mean_k ĥ_k,
    h̄ from ``batch_mean_features``.

    Dummies only know the population: which inputs, hence which mean softmax, the private batch
    has varies from batch to batch by about √B·std(p) per class, which exceeds the 0.5 that
    rounding tolerates once B is large. Matching the dummies' mean feature to the batch's
    removes most of that variation. It assumes that the features vary little with the label,
    as in untrained models (early rounds); trained models separate the classes in their
    features, and there ``geng_bias`` is more accurate (benchmarks/RESULTS.md).
    """
    pbar = shifted_mean_softmax(ev, config, batch_mean_features(ev))
    return ev.num_samples[:, None].double() * (pbar - ev.grad_b.double())
