"""The label set from the low-rank structure of the FC weight gradient (Dang et al. 2021, RLG).

With cross-entropy the FC weight gradient is ΔW = (1/B)·Σ_k e_k·h_kᵀ with e_k = p_k − y_k,
so its column space is spanned by the B vectors e_k, each of which is negative in exactly one
entry: the sample's label. A class c is in the batch when the column space holds a vector whose
only negative entry is c; for B below the class count this is rarely true of an absent class.
The test is a linear program per class, and it holds however confident the model is: only the
signs of e_k matter, not their size, which is what makes it useful on trained models.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linprog

from fastleak.labels.evidence import Evidence
from fastleak.labels.geng import geng, geng_bias
from fastleak.labels.registry import register
from fastleak.labels.types import LabelConfig

# Singular values below this fraction of the largest are treated as rounding noise of a float32 gradient.
RANK_TOLERANCE = 1e-5


def column_basis(grad_w: torch.Tensor, rank: int) -> torch.Tensor:
    """An orthonormal basis [C, r] of the leading ``rank``-dimensional column space of ``grad_w`` [C, D]."""
    u, s, _ = torch.linalg.svd(grad_w.double(), full_matrices=False)
    keep = int((s > RANK_TOLERANCE * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    return u[:, :min(rank, keep)]


def one_negative_entry(basis: np.ndarray, c: int) -> bool:
    """Whether span(``basis``) holds a vector negative in entry ``c`` and positive in every other.

    Strict signs are scale-free, so the program asks for a margin of one: x_c <= -1, x_j >= 1.
    """
    num_classes, r = basis.shape
    if r == 0:
        return False
    sign = np.ones(num_classes)
    sign[c] = -1.0
    # -sign_j · (basis z)_j <= -1 for every j.
    result = linprog(np.zeros(r), A_ub=-sign[:, None] * basis, b_ub=-np.ones(num_classes),
                     bounds=[(None, None)] * r, method="highs")
    return result.status == 0


def label_set(grad_w: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Boolean [C]: the classes RLG finds present in one row's gradient [C, D]."""
    basis = column_basis(grad_w, min(num_samples, grad_w.shape[0] - 1)).cpu().numpy()
    return torch.tensor([one_negative_entry(basis, c) for c in range(grad_w.shape[0])], dtype=torch.bool)


def fill_counts(present: torch.Tensor, estimates: torch.Tensor, num_samples: torch.Tensor) -> torch.Tensor:
    """Counts [P, C] that give every present class one sample and share the remaining samples
    out over the present classes in proportion to ``estimates`` (clamped at zero) beyond one.

    Rows whose set is empty or larger than the batch keep ``estimates``.
    """
    k = present.sum(1)
    usable = (k > 0) & (k <= num_samples)
    extra = (estimates.clamp_min(0) - 1).clamp_min(0) * present
    left = (num_samples - k).clamp_min(0).double()
    total = extra.sum(1, keepdim=True)
    share = torch.where(total > 0, extra / total.clamp_min(1e-300), present.double() / k.clamp_min(1)[:, None])
    filled = present.double() + left[:, None] * share
    return torch.where(usable[:, None], filled, estimates)


@register("rlg")
def rlg(ev: Evidence, config: LabelConfig) -> torch.Tensor:
    """RLG (Dang et al. 2021): the label set from the column space of ΔW; the counts within the
    set from ``geng_bias`` (``geng`` without a bias).

    Exact whenever the labels are distinct and the set is found; with duplicates, the set still
    fixes which classes may take the extra samples.
    """
    estimates = (geng_bias if ev.has_bias else geng)(ev, config)
    present = torch.stack([label_set(ev.grad_w[row], int(ev.num_samples[row])) for row in range(ev.num_rows)])
    return fill_counts(present.to(estimates.device), estimates, ev.num_samples.to(estimates.device))
