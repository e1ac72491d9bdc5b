"""Label-recovery metrics over label multisets (batch order is unknown to the attacker)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabelScores:
    """LnAcc: fraction of classes whose recovered count equals the true count.
    LeAcc: fraction of classes whose existence (count > 0) is recovered correctly.
    Both are taken over the classes present in the truth or in the recovery, so the
    many absent classes of a large label space do not inflate them.
    exact: whether the whole multiset was recovered.
    """

    ln_acc: float
    le_acc: float
    exact: bool


def _counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(labels.reshape(-1).long().cpu(), minlength=num_classes)


def label_scores(recovered: torch.Tensor, true: torch.Tensor, num_classes: int | None = None) -> LabelScores:
    if recovered.numel() == 0 and true.numel() == 0:
        return LabelScores(1.0, 1.0, True)
    c = int(max(int(recovered.max()) if recovered.numel() else 0, int(true.max()) if true.numel() else 0) + 1)
    c = max(c, num_classes or 0)
    rec, tru = _counts(recovered, c), _counts(true, c)
    involved = (rec > 0) | (tru > 0)
    ln = (rec == tru)[involved].float().mean().item()
    le = ((rec > 0) == (tru > 0))[involved].float().mean().item()
    return LabelScores(ln_acc=ln, le_acc=le, exact=bool(torch.equal(rec, tru)))
