"""What the weights of a fully connected layer give away without any data.

* Rows that share one direction: ``w_k = s_k u`` for one unit vector ``u`` (up to float rounding),
  with different thresholds ``t_k = -b_k / |w_k|``. Each such row tests the same measurement
  ``u . x`` against its own threshold: the bins of an imprint layer ("Robbing the Fed", and any
  number of such groups for several measurements). Randomly initialised or trained rows are never
  parallel; rows set to one constant (an unusual but honest initialisation) share their threshold too.
* Rows that lean negative together: ``z_k = sum_j w_kj / |w_k|`` is row ``k``'s response to a
  constant input in units of its norm, about standard normal for a row of independent symmetric
  entries. Trap weights scale the positive entries of random rows down, so that they rarely fire
  on non-negative inputs such as pixels: every ``z_k`` moves the same way while their spread stays
  that of random rows (about 1). Training leans the first layer of a network on pixels negative
  too, but unevenly: the spread grows with the lean (measured on MLPs trained on MNIST: mean over
  spread no lower than -1.3 at any round, spread 1.3-2.1 once trained; trap rows: -2 to -8 at
  spreads 0.75-1).
* Positive entries shrunk with their signs kept: trap weights scale each row's positive entries by
  one factor below 1 and leave every sign alone, so in every row the mean positive magnitude falls
  below the mean negative one (``shrink``: the t statistic over rows of the log of their ratio)
  while the share of positive entries stays one half (``balance``: its z score). Training leans
  rows by adding to their entries, which moves entries across zero, so a shrink comes with an
  imbalance of the same order (measured on the MLP trained on MNIST: shrink -8.7 with balance
  -7.0 after one round, -23 with -36 after twenty; trap rows for batches of 8 to 64, 50 draws each:
  shrink -3.5 to -135 with balance within +-3, the least shrunk being CIFAR-size traps for 8). This
  reads trap rows sized for small batches, which lean too little for the mean over spread.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

COSINE_TOLERANCE = 1e-6  # float32 rows of one direction scaled differently agree to ~1e-12 in cosine


@dataclass(frozen=True)
class DirectionGroup:
    """Rows ``rows`` of a layer that share one direction, and how many distinct thresholds they hold."""

    rows: tuple[int, ...]
    thresholds: int


def direction_groups(weight: torch.Tensor, bias: torch.Tensor | None, min_rows: int = 2) -> list[DirectionGroup]:
    """Groups of at least ``min_rows`` rows of ``weight`` [K, N] with one direction (cosine above
    ``1 - COSINE_TOLERANCE``), largest first: rows are sorted by their projection on a seeded random
    direction, so that parallel rows sit next to each other, and runs of parallel neighbours form a
    group. Zero rows belong to none."""
    w = weight.detach().to(torch.float64).flatten(1)
    norms = w.norm(dim=1)
    nonzero = torch.nonzero(norms > 0).flatten()
    if len(nonzero) < min_rows:
        return []
    unit = w[nonzero] / norms[nonzero, None]
    probe = torch.randn(w.shape[1], generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(w.device)
    order = torch.argsort(unit @ probe)
    sorted_unit = unit[order]
    parallel = (sorted_unit[1:] * sorted_unit[:-1]).sum(1) > 1 - COSINE_TOLERANCE
    b = torch.zeros(len(w), dtype=torch.float64, device=w.device) if bias is None else \
        bias.detach().to(torch.float64).reshape(-1)
    groups: list[DirectionGroup] = []
    start = 0
    flags = parallel.tolist() + [False]
    for i, joined in enumerate(flags):
        if joined:
            continue
        if i + 1 - start >= min_rows:
            rows = nonzero[order[start:i + 1]]
            groups.append(DirectionGroup(tuple(sorted(rows.tolist())), distinct_count(-b[rows] / norms[rows])))
        start = i + 1
    return sorted(groups, key=lambda g: -len(g.rows))


def distinct_count(values: torch.Tensor, relative: float = 1e-6) -> int:
    """How many values differ from their sorted neighbour by more than ``relative`` of the largest magnitude."""
    if len(values) == 0:
        return 0
    v = torch.sort(values).values
    scale = v.abs().amax().clamp_min(1e-300)
    return 1 + int(((v[1:] - v[:-1]) > relative * scale).sum())


@dataclass(frozen=True)
class Lean:
    """``mean`` and ``spread`` (standard deviation) of the rows' ``z_k`` over ``rows`` non-zero rows;
    ``shrink`` and ``balance`` of their entries' signs (module docs; 0 where undefined)."""

    mean: float
    spread: float
    rows: int
    shrink: float = 0.0
    balance: float = 0.0

    @property
    def ratio(self) -> float:
        """mean / spread (0 for fewer than two rows or no spread)."""
        return self.mean / self.spread if self.rows > 1 and self.spread > 0 else 0.0


def lean(weight: torch.Tensor) -> Lean:
    """The rows' lean (module docs) of ``weight`` [K, N]."""
    w = weight.detach().to(torch.float64).flatten(1)
    norms = w.norm(dim=1)
    keep = norms > 0
    z = w[keep].sum(1) / norms[keep]
    rows = int(keep.sum())
    shrink, balance = _signs(w)
    return Lean(float(z.mean()) if rows else 0.0, float(z.std()) if rows > 1 else 0.0, rows, shrink, balance)


def _signs(w: torch.Tensor) -> tuple[float, float]:
    """``shrink`` and ``balance`` (module docs) of the rows of ``w`` [K, N] that hold both signs."""
    positive, negative = w > 0, w < 0
    both = positive.any(1) & negative.any(1)
    if int(both.sum()) < 2:
        return 0.0, 0.0
    positive, negative, w = positive[both], negative[both], w[both]
    counts_pos, counts_neg = positive.sum(1).double(), negative.sum(1).double()
    mean_pos = torch.where(positive, w, 0.0).sum(1) / counts_pos
    mean_neg = -torch.where(negative, w, 0.0).sum(1) / counts_neg
    log_ratio = torch.log(mean_pos / mean_neg)
    spread = float(log_ratio.std())
    shrink = float(log_ratio.mean()) * len(log_ratio) ** 0.5 / spread if spread > 0 else 0.0
    signed = float((counts_pos + counts_neg).sum())
    balance = (float(counts_pos.sum()) / signed - 0.5) / (0.5 / signed ** 0.5)
    return shrink, balance
