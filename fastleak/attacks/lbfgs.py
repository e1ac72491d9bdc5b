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

from fastleak.errors import InvalidValueError

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

    def __init__(self, x: Tensor, config: LBFGSConfig = LBFGSConfig(), lr: Tensor | None = None) -> None:
        if x.dim() != 2:
            raise InvalidValueError(f"BatchedLBFGS: x must have shape [Q, n], got {tuple(x.shape)}")
        if config.line_search not in (None, "backtracking"):
            raise InvalidValueError(f"line_search must be None or 'backtracking', got {config.line_search!r}")
        self.config = config
        self.lr = config.lr if lr is None else lr  # a float, or one rate per problem [Q]
        q, n = x.shape
        h = config.history_size
        z = dict(device=x.device, dtype=x.dtype)
        self.x = x.detach().clone()
        self.state: dict[str, Tensor] = {
            "pairs": torch.zeros(q, h, 2, n, **z),                   # slot j: (s_j, y_j)
            "count": torch.zeros(q, dtype=torch.long, device=x.device),
            "ptr": torch.zeros(q, dtype=torch.long, device=x.device),
            "sy": torch.zeros(q, h, h, **z), "yy": torch.zeros(q, h, h, **z),
            "grad_prod": torch.zeros(q, h, 2, **z),                      # (s_j·g, y_j·g) at the last gradient
            "yd": torch.zeros(q, h, **z),                                # y_j·d for the last direction d
            "h_diag": torch.ones(q, **z), "d": torch.zeros(q, n, **z), "t": torch.zeros(q, **z),
            "prev_grad": torch.zeros(q, n, **z), "prev_loss": torch.zeros(q, **z),
            "loss": torch.zeros(q, **z), "grad": torch.zeros(q, n, **z),
            "active": torch.ones(q, dtype=torch.bool, device=x.device),
            "best_x": self.x.clone(), "best_loss": torch.full((q,), float("inf"), **z),
            "n_iter": torch.zeros((), dtype=torch.long), "evaluated": torch.zeros((), dtype=torch.bool),
        }

    def state_dict(self) -> dict[str, Tensor]:
        return {"x": self.x.clone(), **{k: v.clone() for k, v in self.state.items()}}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.x = state["x"].clone()
        for k in self.state:
            self.state[k] = state[k].clone()

    def keep(self, rows: Tensor) -> None:
        """Keep only the problems ``rows``."""
        self.x = self.x[rows]
        self.state = {k: v if v.dim() == 0 else v[rows] for k, v in self.state.items()}
        if isinstance(self.lr, Tensor):
            self.lr = self.lr[rows]

    @property
    def active(self) -> Tensor:
        return self.state["active"]

    @property
    def losses(self) -> Tensor:
        return self.state["loss"]

    @property
    def best(self) -> tuple[Tensor, Tensor]:
        """Each problem's best point so far and its loss ([Q, n], [Q]): a fixed step can overshoot, and
        the iterate the run ends on need not be its best."""
        return self.state["best_x"], self.state["best_loss"]

    def _remember_best(self) -> None:
        s = self.state
        better = s["loss"] < s["best_loss"]
        s["best_x"] = torch.where(better[:, None], self.x, s["best_x"])
        s["best_loss"] = torch.where(better, s["loss"], s["best_loss"])

    def _forget(self, rows: Tensor) -> None:
        """Drop the curvature pairs of the problems in ``rows`` (bool [Q])."""
        s = self.state
        for key in ("count", "ptr"):
            s[key] = torch.where(rows, torch.zeros_like(s[key]), s[key])
        s["h_diag"] = torch.where(rows, torch.ones_like(s["h_diag"]), s["h_diag"])
        for key in ("sy", "yy", "grad_prod", "yd"):
            s[key][rows] = 0

    def _used_slots(self, extra: int = 0) -> int:
        """How many leading ring slots can hold a pair: until a ring wraps, its pairs fill slots
        0..count-1, so the unused tail is skipped (``extra`` slots for pairs being added)."""
        h, count = self.config.history_size, self.state["count"]
        return h if bool((count == h).any()) else min(h, int(count.max()) + extra)

    def _update_and_direction(self, g: Tensor, y: Tensor, t: Tensor, mask: Tensor) -> Tensor:
        """Store the new curvature pair (y, s = t·d) of each problem in ``mask`` whose y·s > 1e-10,
        as ``torch.optim.LBFGS`` does, and return -H g for each problem's own history.

        -H g uses the compact form of Byrd, Nocedal and Schnabel (1994), which equals the two-loop
        recursion. SᵀY and YᵀY are kept up to date, and the pairs are stored interleaved. The
        history is read twice per step: once for its products with g, once to combine it into the
        direction. The other products come from small matrices: s_j·y and y_j·y are differences of
        the products with this step's and the last step's gradient, and y_j·s = t·(y_j·d) where
        Yᵀd was formed from SᵀY and YᵀY when d was.
        """
        s = self.state
        q, n = g.shape
        h = self.config.history_size
        step = s["d"] * t[:, None]
        ys = _dot(y, step)
        accept = mask & (ys > 1e-10)
        used = self._used_slots(extra=1)
        pairs = s["pairs"][:, :used].view(q, 2 * used, n)                     # rows s_0, y_0, s_1, y_1, ...
        # g as a transposed row: with a unit stride on its size-1 dimension this bmm was 6x slower on CPU
        grad_prod = (pairs @ g[:, None, :].transpose(1, 2)).view(q, used, 2)   # s_j·g, y_j·g
        y_prod = grad_prod - s["grad_prod"][:, :used]                          # s_j·y, y_j·y
        rows = torch.arange(q, device=g.device)[accept]
        slot = s["ptr"][accept]
        new_pairs = torch.stack([step[accept], y[accept]], 1)
        s["pairs"][rows, slot] = new_pairs
        # the overwritten slot's products are the new pair's own: [s|y] x [s, y, g]
        own = new_pairs @ torch.cat([new_pairs, g[accept, None]], 1).transpose(1, 2)
        y_prod[rows, slot] = own[:, :, 1]
        grad_prod[rows, slot] = own[:, :, 2]
        y_step = t[:, None] * s["yd"][:, :used]                                # y_j·s_new
        y_step[rows, slot] = own[:, 1, 0]
        s["sy"][rows, slot, :used] = y_step[rows]                              # s_new · y_j
        s["sy"][rows, :used, slot] = y_prod[rows, :, 0]                        # s_j · y_new
        s["yy"][rows, slot, :used] = y_prod[rows, :, 1]
        s["yy"][rows, :used, slot] = y_prod[rows, :, 1]
        s["grad_prod"][:, :used] = grad_prod
        s["h_diag"] = torch.where(accept, ys / _dot(y, y).clamp_min(1e-300), s["h_diag"])
        s["ptr"] = torch.where(accept, (s["ptr"] + 1) % h, s["ptr"])
        s["count"] = torch.where(accept, (s["count"] + 1).clamp(max=h), s["count"])

        k = torch.arange(used, device=g.device)
        valid = (k[None, :] < s["count"][:, None]).to(g.dtype)                # [Q, used]
        # a slot is filled once its problem has stored a pair there, so rows and columns of empty slots are 0
        slot_sy, slot_yy = s["sy"][:, :used, :used], s["yy"][:, :used, :used]
        if used < h:                                 # no ring has wrapped: slot order is chronological
            order = k.expand(q, used)
            sy, yy = slot_sy, slot_yy
        else:
            order = (s["ptr"][:, None] - s["count"][:, None] + k) % h           # oldest -> newest slot
            order = torch.where(valid.bool(), order, k[None, :])               # empty slots stay empty
            batch = torch.arange(q, device=g.device)[:, None, None]
            sy = slot_sy[batch, order[:, :, None], order[:, None, :]]
            yy = slot_yy[batch, order[:, :, None], order[:, None, :]]
        gamma = s["h_diag"][:, None]
        diag = torch.diagonal(sy, dim1=1, dim2=2) + (1 - valid)
        upper = torch.triu(sy, diagonal=1) + torch.diag_embed(diag)
        a = grad_prod[:, :, 0].gather(1, order) * valid                         # s_j · g
        b = grad_prod[:, :, 1].gather(1, order) * valid                         # y_j · g
        p = torch.linalg.solve_triangular(upper, a[..., None], upper=True).squeeze(-1)
        rhs = diag * valid * p + gamma * (yy @ p[..., None]).squeeze(-1) - gamma * b
        w = torch.linalg.solve_triangular(upper.transpose(1, 2), rhs[..., None], upper=False).squeeze(-1)
        coef = torch.zeros(q, used, 2, dtype=g.dtype, device=g.device)         # back to slot order
        coef[..., 0].scatter_(1, order, w * valid)
        coef[..., 1].scatter_(1, order, -gamma * p * valid)
        # d = -(γ g + Σ_i coef_i,s s_i + coef_i,y y_i), so y_j·d = -(γ y_j·g + Σ_i coef_i,s s_i·y_j + coef_i,y y_i·y_j)
        yd = coef[:, None, :, 0] @ slot_sy + coef[:, None, :, 1] @ slot_yy
        s["yd"][:, :used] = -(gamma * grad_prod[:, :, 1] + yd.squeeze(1))
        return -(gamma * g + (coef.view(q, 1, 2 * used) @ pairs).squeeze(1))

    def resume(self) -> None:
        """Make every problem stopped by a tolerance try again from where it is: the outer step of
        ``torch.optim.LBFGS``, whose ``step`` stops its inner iterations at a tolerance and the next
        ``step`` goes on (its curvature pairs kept). A problem whose loss is not finite stays stopped."""
        s = self.state
        if bool(s["evaluated"]):
            s["active"] = torch.isfinite(s["loss"]) & (s["grad"].abs().amax(-1) > self.config.tolerance_grad)

    def step(self, closure: Closure) -> Tensor:
        """One iteration for every still-active problem; returns the current losses [Q]."""
        cfg, s = self.config, self.state
        if not bool(s["evaluated"]):
            s["loss"], s["grad"] = (v.detach() for v in closure(self.x))
            s["evaluated"] = torch.ones((), dtype=torch.bool)
            s["active"] &= s["grad"].abs().amax(-1) > cfg.tolerance_grad
            self._remember_best()
        active = s["active"]
        if not bool(active.any()):
            return s["loss"]
        g = s["grad"]
        first = bool(s["n_iter"] == 0)
        if first:
            d = -g
        else:
            d = self._update_and_direction(g, g - s["prev_grad"], s["t"], active)
        s["prev_grad"], s["prev_loss"] = g.clone(), s["loss"].clone()
        if first:
            t = torch.clamp(1.0 / g.abs().sum(-1), max=1.0) * self.lr
        else:
            t = torch.full_like(s["loss"], 1.0) * self.lr
        gtd = _dot(g, d)
        lost = active & (gtd > -cfg.tolerance_change) & (s["count"] > 0)
        if bool(lost.any()):
            # a history that no longer gives a descent direction starts afresh from the steepest descent
            self._forget(lost)
            d = torch.where(lost[:, None], -g, d)
            t = torch.where(lost, torch.clamp(1.0 / g.abs().sum(-1), max=1.0) * self.lr, t)
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
        self._remember_best()
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
