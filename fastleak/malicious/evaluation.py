"""Scoring a recovery against the client's true batch (evaluation only: the attack never sees it).

Recovered inputs are matched to true samples by the Hungarian algorithm on MSE (as
``fastleak.metrics``), values clamped to [0, 1]; a true sample counts as recovered exactly when
its match reaches ``EXACT_PSNR`` dB. The bins the true samples reach (the block's ``members``)
give the batch's singleton fraction (samples alone in a bin) and its peeling fraction (what a
server that also subtracts the samples it read reaches, ``theory.peeling_fraction``): the most a
recovery without and with peeling can read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment

from fastleak.errors import InvalidValueError
from fastleak.malicious.imprint import copy_of
from fastleak.malicious.model import MaliciousModel
from fastleak.malicious.recovery import Recovery
from fastleak.malicious.theory import peeling_fraction
from fastleak.metrics import psnr
from fastleak.metrics.labels import LabelScores, label_scores

EXACT_PSNR = 60.0


@dataclass(frozen=True)
class RecoveryScore:
    """Per true sample: ``matched`` (the index in ``recovery.images`` of its match, -1 for none),
    ``psnr`` of its matched recovery (nan when none is left for it, capped at 100 dB), ``exact``
    (psnr >= EXACT_PSNR), ``bin_psnr`` (an oracle diagnostic: the best PSNR among the candidates of
    the bins the sample reaches, whatever their status; nan when it reaches none), ``true_bin``
    (its bin by measurement for an imprint block of one measurement, else -1) and ``alone`` (no
    other sample in one of its bins).
    Batch figures: ``recovered_fraction`` (exact / B), ``singleton_fraction`` (alone / B),
    ``peeling_fraction`` (``theory.peeling_fraction`` of the batch),
    ``false_singles`` (recoveries not matched to any sample at ``EXACT_PSNR``), ``empty_bins_flagged``
    (bins with no true sample that the recovery called empty, out of ``empty_bins``),
    ``occupied_bins_flagged_empty`` and label scores when both label sets are given."""

    matched: tuple[int, ...]
    psnr: tuple[float, ...]
    exact: tuple[bool, ...]
    bin_psnr: tuple[float, ...]
    true_bin: tuple[int, ...]
    alone: tuple[bool, ...]
    recovered_fraction: float
    singleton_fraction: float
    peeling_fraction: float
    false_singles: int
    empty_bins: int
    empty_bins_flagged: int
    occupied_bins_flagged_empty: int
    labels: LabelScores | None = None


def evaluate(recovery: Recovery, model: MaliciousModel, true_images: torch.Tensor,
             true_labels: torch.Tensor | None = None, *, num_classes: int | None = None,
             clients: torch.Tensor | None = None) -> RecoveryScore:
    """Match ``recovery.images`` to ``true_images`` [B, *in_shape] and score them (module docs).
    ``clients`` [B]: each sample's client, for a block separated per client (``imprint.separate``):
    a sample reaches only its client's copy of the bins."""
    if not isinstance(true_images, torch.Tensor) or tuple(true_images.shape[1:]) != model.in_shape:
        raise InvalidValueError(f"true_images must have shape [B, *{model.in_shape}], got "
                                + (str(tuple(true_images.shape)) if isinstance(true_images, torch.Tensor)
                                   else type(true_images).__name__))
    true = true_images.detach().to("cpu", torch.float64).clamp(0, 1).flatten(1)
    rec = recovery.images.detach().to("cpu", torch.float64).clamp(0, 1).flatten(1)
    b = len(true)
    scores = [math.nan] * b
    matched = [-1] * b
    matched_exact = 0
    if len(rec):
        cost = ((true.pow(2).sum(1, keepdim=True) + rec.pow(2).sum(1) - 2 * true @ rec.T) / true.shape[1]).clamp_min(0)
        rows, cols = linear_sum_assignment(cost.numpy())
        values = psnr(rec[cols].reshape(len(cols), 1, 1, -1), true[rows].reshape(len(rows), 1, 1, -1))
        for r, c, v in zip(rows.tolist(), cols.tolist(), values.clamp(max=100.0).tolist()):
            scores[r], matched[r] = v, c
        matched_exact = int((values >= EXACT_PSNR).sum())
    exact = tuple(not math.isnan(s) and s >= EXACT_PSNR for s in scores)

    block = model.block
    members = block.members(true_images.detach().to(block.bins.weight.device)).cpu()
    if clients is not None:
        members &= copy_of(block, torch.arange(members.shape[1]))[None, :] == torch.as_tensor(clients)[:, None].cpu()
    per_bin = members.sum(0)
    alone = tuple(bool(v) for v in (members & (per_bin == 1)).any(1).tolist())
    empty_truth = per_bin == 0
    own = recovery.bin_images.detach().to("cpu", torch.float64).clamp(0, 1).flatten(1)
    sample, row = torch.nonzero(members, as_tuple=True)
    best = torch.full((b,), -math.inf, dtype=torch.float64)
    if len(sample):
        values = psnr(own[row][:, None, None], true[sample][:, None, None]).clamp(max=100.0).to(best)
        best = best.scatter_reduce(0, sample, values, "amax")
    bin_psnr = tuple(v if v > -math.inf else math.nan for v in best.tolist())
    single_direction = hasattr(block, "bin_of") and block.measurement.dim() == 1
    bins = block.bin_of(true_images.detach().to(block.measurement.device)).cpu() if single_direction else \
        torch.full((b,), -1, dtype=torch.long)
    flagged_empty = torch.tensor([s == "empty" for s in recovery.status])
    labels = None
    if true_labels is not None and recovery.labels is not None:
        labels = label_scores(recovery.labels, true_labels, num_classes)
    return RecoveryScore(matched=tuple(matched), psnr=tuple(scores), exact=exact, bin_psnr=bin_psnr,
                         true_bin=tuple(bins.tolist()), alone=alone,
                         recovered_fraction=sum(exact) / b, singleton_fraction=sum(alone) / b,
                         peeling_fraction=peeling_fraction(members),
                         false_singles=len(rec) - matched_exact, empty_bins=int(empty_truth.sum()),
                         empty_bins_flagged=int((empty_truth & flagged_empty).sum()),
                         occupied_bins_flagged_empty=int((~empty_truth & flagged_empty).sum()), labels=labels)
