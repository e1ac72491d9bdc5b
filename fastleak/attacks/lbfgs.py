"""L-BFGS over many independent problems at once.

Each of the Q problems keeps its own curvature pairs, step size, convergence state and
history ring, exactly as ``torch.optim.LBFGS`` would if it ran on that problem alone; only the
arithmetic is batched. One joint L-BFGS over the summed loss would instead couple the
problems through shared dot products and step sizes.

``line_search=None`` reproduces ``torch.optim.LBFGS(line_search_fn=None)`` (fixed step ``lr``,
the first step scaled by min(1, 1/|g|_1)); ``line_search="backtracking"`` halves each
problem's step until it satisfies the Armijo condition (at most ``max_ls`` halvings).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# closure(x [Q, n]) -> (losses [Q], grads [Q, n]) evaluated at x
Closure = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class LBFGSConfig:
    lr: float = 1.0
    history_size: int = 100
    tolerance_grad: float = 1e-7
    tolerance_change: float = 1e-9
    line_search: str | None = None
    max_ls: int = 10
    armijo_c1: float = 1e-4


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1)


class BatchedLBFGS:
    """Minimise Q independent functions of x [Q, n]; ``step(closure)`` is one L-BFGS iteration.

    State is a dict of tensors (``state_dict``/``load_state_dict``), so a run can be
    checkpointed and resumed to the same result.
    """

    def __init__(self, x: Tensor, config: LBFGSConfig = LBFGSConfig()) -> None:
        if x.dim() != 2:
            raise ValueError(f"BatchedLBFGS: x must have shape [Q, n], got {tuple(x.shape)}")
        if config.line_search not in (None, "backtracking"):
            raise ValueError(f"line_search must be None or 'backtracking', got {config.line_search!r}")
        self.config = config
        q, n = x.shape
        h = config.history_size
        z = dict(device=x.device, dtype=x.dtype)
        self.x = x.detach().clone()
        self.state: dict[str, Tensor] = {
            "dirs": torch.zeros(q, h, n, **z), "stps": torch.zeros(q, h, n, **z),
            "count": torch.zeros(q, dtype=torch.long, device=x.device),
            "ptr": torch.zeros(q, dtype=torch.long, device=x.device),
            "sy": torch.zeros(q, h, h, **z), "yy": torch.zeros(q, h, h, **z),
            "h_diag": torch.ones(q, **z), "d": torch.zeros(q, n, **z), "t": torch.zeros(q, **z),
            "prev_grad": torch.zeros(q, n, **z), "prev_loss": torch.zeros(q, **z),
            "loss": torch.zeros(q, **z), "grad": torch.zeros(q, n, **z),
            "active": torch.ones(q, dtype=torch.bool, device=x.device),
            "n_iter": torch.zeros((), dtype=torch.long), "evaluated": torch.zeros((), dtype=torch.bool),
        }

    def state_dict(self) -> dict[str, Tensor]:
        return {"x": self.x.clone(), **{k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.x = state["x"].clone()
        for k in self.state:
            self.state[k] = state[k].clone()

    @property
    def active(self) -> Tensor:
        return self.state["active"]

    @property
    def losses(self) -> Tensor:
        return self.state["loss"]

    def _used_slots(self, extra: int = 0) -> int:
        """How many leading ring slots can hold a pair: until a ring wraps, its pairs fill slots
        0..count-1, so the unused tail is skipped (``extra`` slots for pairs being added)."""
        h, count = self.config.history_size, self.state["count"]
        return h if bool((count == h).any()) else min(h, int(count.max()) + extra)

    def _direction(self, g: Tensor) -> Tensor:
        """-H g for each problem's own history, in the compact form of Byrd, Nocedal and Schnabel
        (1994), which equals the two-loop recursion. SᵀY and YᵀY are kept up to date by
        ``_remember``, so a step costs a few batched matrix-vector products over the used slots."""
        s = self.state
        h = self.config.history_size
        used = self._used_slots()
        if used == 0:
            return -s["h_diag"][:, None] * g
        S, Y = s["stps"][:, :used], s["dirs"][:, :used]
        k = torch.arange(used, device=g.device)
        order = (s["ptr"][:, None] - s["count"][:, None] + k) % h               # oldest -> newest slot
        valid = (k[None, :] < s["count"][:, None]).to(g.dtype)                # [Q, used]
        order = torch.where(valid.bool(), order, k[None, :])                   # in range for gathers
        pair = valid[:, :, None] * valid[:, None, :]
        rows = torch.arange(g.shape[0], device=g.device)[:, None, None]
        sy = s["sy"][rows, order[:, :, None], order[:, None, :]] * pair        # chronological
        yy = s["yy"][rows, order[:, :, None], order[:, None, :]] * pair
        gamma = s["h_diag"][:, None]
        diag = torch.diagonal(sy, dim1=1, dim2=2) + (1 - valid)
        upper = torch.triu(sy, diagonal=1) + torch.diag_embed(diag)
        a = (S @ g[..., None]).squeeze(-1).gather(1, order) * valid
        b = (Y @ g[..., None]).squeeze(-1).gather(1, order) * valid
        p = torch.linalg.solve_triangular(upper, a[..., None], upper=True).squeeze(-1)
        yy_p = (yy @ p[..., None]).squeeze(-1)
        rhs = diag * valid * p + gamma * yy_p - gamma * b
        w = torch.linalg.solve_triangular(upper.transpose(1, 2), rhs[..., None], upper=False).squeeze(-1)
        coef_s = torch.zeros_like(w).scatter_(1, order, w * valid)             # back to slot order
        coef_y = torch.zeros_like(p).scatter_(1, order, p * valid)
        hg = gamma * g + (S.transpose(1, 2) @ coef_s[..., None]).squeeze(-1) \
            - gamma * (Y.transpose(1, 2) @ coef_y[..., None]).squeeze(-1)
        return -hg

    def _remember(self, y: Tensor, step: Tensor, mask: Tensor) -> None:
        s = self.state
        ys = _dot(y, step)
        accept = mask & (ys > 1e-10)
        q_idx = torch.arange(y.shape[0], device=y.device)[accept]
        slot = s["ptr"][accept]
        s["dirs"][q_idx, slot] = y[accept]
        s["stps"][q_idx, slot] = step[accept]
        used = self._used_slots(extra=1)
        S, Y = s["stps"][:, :used], s["dirs"][:, :used]                        # views, new pair included
        sy_row = (Y @ step[..., None]).squeeze(-1)[accept]                    # s_new · y_j
        sy_col = (S @ y[..., None]).squeeze(-1)[accept]                       # s_i · y_new
        yy_row = (Y @ y[..., None]).squeeze(-1)[accept]
        s["sy"][q_idx, slot, :used] = sy_row
        s["sy"][q_idx, :used, slot] = sy_col
        s["yy"][q_idx, slot, :used] = yy_row
        s["yy"][q_idx, :used, slot] = yy_row
        s["h_diag"] = torch.where(accept, ys / _dot(y, y).clamp_min(1e-300), s["h_diag"])
        s["ptr"] = torch.where(accept, (s["ptr"] + 1) % self.config.history_size, s["ptr"])
        s["count"] = torch.where(accept, (s["count"] + 1).clamp(max=self.config.history_size), s["count"])

    def step(self, closure: Closure) -> Tensor:
        """One iteration for every still-active problem; returns the current losses [Q]."""
        cfg, s = self.config, self.state
        if not bool(s["evaluated"]):
            s["loss"], s["grad"] = (v.detach() for v in closure(self.x))
            s["evaluated"] = torch.ones((), dtype=torch.bool)
            s["active"] &= s["grad"].abs().amax(-1) > cfg.tolerance_grad
        active = s["active"]
        if not bool(active.any()):
            return s["loss"]
        g = s["grad"]
        first = bool(s["n_iter"] == 0)
        if first:
            d = -g
        else:
            self._remember(g - s["prev_grad"], s["d"] * s["t"][:, None], active)
            d = self._direction(g)
        s["prev_grad"], s["prev_loss"] = g.clone(), s["loss"].clone()
        if first:
            t = torch.clamp(1.0 / g.abs().sum(-1), max=1.0) * cfg.lr
        else:
            t = torch.full_like(s["loss"], cfg.lr)
        gtd = _dot(g, d)
        active = active & (gtd <= -cfg.tolerance_change)
        s["d"] = torch.where(active[:, None], d, s["d"])
        s["n_iter"] += 1
        if cfg.line_search is None:
            x_new = self.x + (t * active)[:, None] * d
            loss, grad = (v.detach() for v in closure(x_new))
        else:
            x_new, loss, grad, t = self._backtrack(closure, d, t, gtd, active)
        keep = active[:, None]
        self.x = torch.where(keep, x_new, self.x)
        s["loss"] = torch.where(active, loss, s["loss"])
        s["grad"] = torch.where(keep, grad, s["grad"])
        s["t"] = torch.where(active, t, s["t"])
        done = (s["grad"].abs().amax(-1) <= cfg.tolerance_grad)
        done |= (d * t[:, None]).abs().amax(-1) <= cfg.tolerance_change
        done |= (s["loss"] - s["prev_loss"]).abs() < cfg.tolerance_change
        s["active"] = active & ~done & torch.isfinite(s["loss"])
        return s["loss"]

    def _backtrack(self, closure: Closure, d: Tensor, t: Tensor, gtd: Tensor, active: Tensor):
        cfg, s = self.config, self.state
        pending = active.clone()
        x_new, loss, grad = self.x.clone(), s["loss"].clone(), s["grad"].clone()
        for _ in range(cfg.max_ls + 1):
            trial = self.x + (t * pending)[:, None] * d
            f, g = (v.detach() for v in closure(trial))
            ok = pending & (f <= s["loss"] + cfg.armijo_c1 * t * gtd)
            last = pending & ~ok
            take = ok | last
            x_new = torch.where(take[:, None], trial, x_new)
            loss = torch.where(take, f, loss)
            grad = torch.where(take[:, None], g, grad)
            pending = last
            if not bool(pending.any()):
                break
            t = torch.where(pending, t * 0.5, t)
        return x_new, loss, grad, t
