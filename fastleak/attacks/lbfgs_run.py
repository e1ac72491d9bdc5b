"""The L-BFGS run: each dummy batch's images (and soft labels) flattened into one problem of
``BatchedLBFGS``, so every restart keeps its own curvature history and step size.

A boxed run clamps the images to [0, 1] after every ``lbfgs_inner`` iterations (breaching's boxed
L-BFGS does so after every ``torch.optim.LBFGS.step``), evaluates the objective again at the clamped
images, and counts the clamp as part of the last step, so the next curvature pair is the secant of
the move actually made.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from fastleak.attacks.lbfgs import BatchedLBFGS, LBFGSConfig
from fastleak.attacks.problem import Problem
from fastleak.attacks.run import Run


class LBFGSRun(Run):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        cfg = self.config
        x = problem.init_images()
        parts = [x.flatten(1)]
        if cfg.labels == "optimize":
            parts.append(problem.init_soft_labels().flatten(1))
        self.n_image = parts[0].shape[1]
        lr = problem.row_value("lr", cfg.lr)
        self.opt = BatchedLBFGS(torch.cat(parts, 1), LBFGSConfig(lr=cfg.lr, history_size=cfg.history_size,
                                                                 line_search=cfg.line_search),
                                lr=lr.to(parts[0].dtype) if isinstance(lr, Tensor) else None)

    def _split(self, flat: Tensor) -> tuple[Tensor, Tensor | None]:
        p = self.problem
        x = flat[:, :self.n_image].reshape(p.Q, p.B, *p.shape)
        soft = flat[:, self.n_image:].reshape(p.Q, p.B, p.C) if flat.shape[1] > self.n_image else None
        return x, soft

    def closure(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            flat = flat.detach().requires_grad_(True)
            losses = self.problem.objective(*self._split(flat))
            grad, = torch.autograd.grad(losses.sum(), flat)
        return losses, grad

    def variables(self) -> tuple[Tensor, Tensor | None]:
        """Each problem's best point so far (lowest objective), as breaching's and the DLG reference code keep."""
        return self._split(self.opt.best[0])

    def losses(self) -> Tensor:
        return self.opt.losses

    def step(self, step: int) -> None:
        self.problem.before_step(step, self._split(self.opt.x)[0])
        self.opt.resume()
        for _ in range(self.config.lbfgs_inner):
            self.opt.step(self.closure)
        if self.config.boxed:
            self._box()

    def _box(self) -> None:
        """Clamp the images to [0, 1]; the last direction absorbs the clamp (d += delta / t, and its
        products with the stored y_j), and the objective is evaluated again before the next iteration."""
        opt, n = self.opt, self.n_image
        inside = opt.x[:, :n].clamp(0, 1)
        delta = torch.zeros_like(opt.x)
        delta[:, :n] = inside - opt.x[:, :n]
        if not bool(delta.any()):
            return
        s = opt.state
        moved = s["t"] > 0
        shift = torch.where(moved[:, None], delta / torch.where(moved, s["t"], 1.0)[:, None], 0.0)
        s["d"] = s["d"] + shift
        s["yd"] = s["yd"] + (s["pairs"][:, :, 1] @ shift[..., None]).squeeze(-1)
        opt.x = torch.cat([inside, opt.x[:, n:]], 1)
        s["evaluated"] = torch.zeros((), dtype=torch.bool, device=s["evaluated"].device)

    def keep(self, rows: Tensor) -> None:
        self.opt.keep(rows)

    def optimizer_state(self) -> dict[str, Any]:
        return {"lbfgs": self.opt.state_dict()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["lbfgs"])
