"""The Adam run: all dummy batches as one set of leaf tensors under ``torch.optim.Adam``.

Adam is elementwise, so the restarts stay independent under it. The step optionally uses the
gradients' signs, decays the rate at 3/8, 5/8 and 7/8 of the run, clamps the images to [0, 1],
and on a GPU replays the objective and its gradients as a CUDA graph (``fastleak.attacks.graphs``).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from fastleak.attacks.graphs import StepGraph, capture_step
from fastleak.attacks.problem import Problem
from fastleak.attacks.run import Run


class AdamRun(Run):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        cfg = self.config
        self.x = problem.init_images().requires_grad_(True)
        self.soft = problem.init_soft_labels().requires_grad_(True) if cfg.labels == "optimize" else None
        self.leaves = [self.x] + ([self.soft] if self.soft is not None else [])
        self._optimise(self.leaves)
        self._losses = torch.full((problem.Q,), math.inf, device=problem.device)

    def _optimise(self, leaves: list[Tensor]) -> None:
        """A fresh Adam and step-decay schedule over ``leaves``; the CUDA graph is captured afresh."""
        cfg = self.config
        self.leaves = leaves
        self.opt = torch.optim.Adam(leaves, lr=cfg.lr)
        self.graph: StepGraph | bool | None = None  # None: not tried yet; False: eager
        milestones = [int(cfg.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)] if cfg.lr_decay else []
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones, gamma=0.1)

    def keep(self, rows: Tensor) -> None:
        optimizer, scheduler = self.opt.state_dict(), self.sched.state_dict()
        for state in optimizer["state"].values():
            for key in ("exp_avg", "exp_avg_sq"):
                state[key] = state[key][rows]
        with torch.no_grad():
            self.x = self.x[rows].clone().requires_grad_(True)
            self.soft = None if self.soft is None else self.soft[rows].clone().requires_grad_(True)
        self._optimise([self.x] + ([self.soft] if self.soft is not None else []))
        self.opt.load_state_dict(optimizer)
        self.sched.load_state_dict(scheduler)
        self._losses = self._losses[rows]

    def variables(self) -> tuple[Tensor, Tensor | None]:
        return self.x.detach(), None if self.soft is None else self.soft.detach()

    def losses(self) -> Tensor:
        return self._losses

    def _objective_and_grads(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        losses = self.problem.objective(self.x, self.soft)
        return losses.detach(), torch.autograd.grad(losses.sum(), self.leaves)

    def _graphable(self) -> bool:
        """A CUDA graph freezes the objective's structure, which some priors change during the run."""
        p = self.problem
        return p.execution.cuda_graph and p.device.type == "cuda" and p.capturable()

    def step(self, step: int) -> None:
        cfg = self.config
        self.problem.before_step(step, self.x)
        if self.graph is None and self._graphable():
            self.graph = capture_step(self._objective_and_grads, self.leaves) or False
        losses, grads = self.graph() if self.graph else self._objective_and_grads()
        bad = ~torch.isfinite(losses)
        with torch.no_grad():
            for v, g in zip(self.leaves, grads):
                g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                v.grad = g.sign_() if cfg.signed else g
        lr = self.problem.row_value("lr", cfg.lr)
        before = [v.detach().clone() for v in self.leaves] if isinstance(lr, Tensor) else None
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
            if before is not None:  # Adam's step is linear in its rate: scale each row's to the row's own
                for v, v0 in zip(self.leaves, before):
                    v.copy_(v0 + (v - v0) * (lr / cfg.lr).to(v.dtype).view(-1, *([1] * (v.dim() - 1))))
            if cfg.boxed:
                self.x.clamp_(0, 1)
            self._reset(bad, step)
        self._losses = losses.clone()

    def _reset(self, bad: Tensor, step: int) -> None:
        """Restarts whose objective is NaN/inf start again from a fresh random image."""
        if bad.device.type == "cpu" and not bool(bad.any()):
            return
        fresh = self.problem.fresh_images(step)
        mask = bad.view(-1, *([1] * (self.x.dim() - 1)))
        self.x.copy_(torch.where(mask, fresh, self.x))
        state = self.opt.state.get(self.x, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].copy_(torch.where(mask, torch.zeros_like(state[key]), state[key]))
        self.resets += bad.sum()

    def optimizer_state(self) -> dict[str, Any]:
        return {"x": self.x.detach(), "soft": None if self.soft is None else self.soft.detach(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "losses": self._losses}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.x.copy_(state["x"])
            if self.soft is not None:
                self.soft.copy_(state["soft"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self._losses = state["losses"]
