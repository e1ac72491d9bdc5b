"""The Adam run: all dummy batches as one set of leaf tensors under ``torch.optim.Adam``.

Adam is elementwise, so the restarts stay independent under it. The step optionally uses the
gradients' signs (or breaching's soft sign), adds Langevin noise, follows a rate schedule (steps at
3/8, 5/8 and 7/8 of the run, or cosine annealing, after an optional linear warm-up), clamps the
images to [0, 1], and on a GPU replays the objective and its gradients as a CUDA graph
(``fastleak.attacks.graphs``). With ``stages`` > 1 the images are optimised coarse to fine: each
stage's variables are images of a lower resolution, upsampled for the model, with an Adam and a
schedule of their own.
"""
from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fastleak.attacks.graphs import StepGraph, capture_step
from fastleak.attacks.problem import Problem
from fastleak.attacks.run import Run

DECAY_AT = (3 / 8, 5 / 8, 7 / 8)  # the step schedule's milestones, fractions of the run (or stage)


def rate_factor(decay: bool | str, warmup: int, length: int, t: int) -> float:
    """The rate's multiplier at step ``t`` of a run (or stage) of ``length`` steps: a linear warm-up to 1
    over ``warmup`` steps, then ``decay`` (True: 0.1 per milestone of ``DECAY_AT`` passed, "cosine":
    cosine annealing to 0 at the end, False: 1)."""
    if t < warmup:
        return (t + 1) / warmup
    if decay is True:
        return 0.1 ** sum(t >= int(length * f) for f in DECAY_AT)
    if decay == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (t - warmup) / max(1, length - warmup)))
    return 1.0


def stage_sizes(stages: int, size: tuple[int, int]) -> list[tuple[int, int]]:
    """The image size (H, W) of each stage: (k+1)/stages of ``size``, at least one pixel."""
    return [tuple(max(1, round(n * (k + 1) / stages)) for n in size) for k in range(stages)]


def stage_of(step: int, stages: int, iterations: int) -> int:
    return min(stages - 1, step * stages // iterations)


def stage_start(stage: int, stages: int, iterations: int) -> int:
    """The first step of ``stage`` (equal to the next stage's first step when the stage is empty)."""
    return -(-stage * iterations // stages)


class AdamRun(Run):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem)
        cfg = self.config
        self.sizes = stage_sizes(cfg.stages, tuple(problem.shape[-2:]))
        self.stage = stage_of(0, cfg.stages, cfg.iterations)
        self.x = problem.init_images(self._size()).requires_grad_(True)
        self.soft = problem.init_soft_labels().requires_grad_(True) if cfg.labels == "optimize" else None
        self.leaves = [self.x] + ([self.soft] if self.soft is not None else [])
        self._optimise(self.leaves)
        self._losses = torch.full((problem.Q,), math.inf, device=problem.device)

    def _size(self) -> tuple[int, int] | None:
        """The current stage's image size, None for the input's own (a single stage)."""
        return None if self.config.stages == 1 else self.sizes[self.stage]

    def _bounds(self) -> tuple[int, int]:
        """The current stage's first step and its number of steps."""
        cfg = self.config
        first = stage_start(self.stage, cfg.stages, cfg.iterations)
        return first, stage_start(self.stage + 1, cfg.stages, cfg.iterations) - first

    def _optimise(self, leaves: list[Tensor]) -> None:
        """A fresh Adam and rate schedule over ``leaves``; the CUDA graph is captured afresh."""
        cfg = self.config
        self.leaves = leaves
        self.opt = torch.optim.Adam(leaves, lr=cfg.lr, betas=cfg.adam_betas, eps=cfg.adam_eps)
        self.graph: StepGraph | bool | None = None  # None: not tried yet; False: eager
        length = self._bounds()[1]
        if cfg.warmup == 0 and cfg.lr_decay != "cosine":
            milestones = [int(length * f) for f in DECAY_AT] if cfg.lr_decay else []
            self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones, gamma=0.1)
        else:
            self.sched = torch.optim.lr_scheduler.LambdaLR(
                self.opt, functools.partial(rate_factor, cfg.lr_decay, cfg.warmup, length))

    def full(self, x: Tensor) -> Tensor:
        """Images at the input's size: ``x`` itself, or a stage's images upsampled (bilinear)."""
        p = self.problem
        if tuple(x.shape[-2:]) == tuple(p.shape[-2:]):
            return x
        up = F.interpolate(x.flatten(0, 1), size=tuple(p.shape[-2:]), mode="bilinear", align_corners=False)
        return up.view(*x.shape[:3], *p.shape[-2:])

    def _next_stage(self, stage: int) -> None:
        """Move to ``stage``: its images are the current ones resized to its size, under a fresh Adam."""
        self.stage = stage
        size = self.sizes[stage]
        with torch.no_grad():
            x = self.x.detach()
            x = F.interpolate(x.flatten(0, 1), size=size, mode="bilinear", align_corners=False)
            self.x = x.view(*self.x.shape[:3], *size).requires_grad_(True)
        self._optimise([self.x] + ([self.soft] if self.soft is not None else []))

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
        return self.full(self.x.detach()), None if self.soft is None else self.soft.detach()

    def losses(self) -> Tensor:
        return self._losses

    def _objective_and_grads(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        losses = self.problem.objective(self.full(self.x), self.soft)
        return losses.detach(), torch.autograd.grad(losses.sum(), self.leaves)

    def _graphable(self) -> bool:
        """A CUDA graph freezes the objective's structure, which some priors change during the run."""
        p = self.problem
        return p.execution.cuda_graph and p.device.type == "cuda" and p.capturable()

    def _direction(self, g: Tensor, step: int, image: bool) -> Tensor:
        """The gradient Adam is given: with Langevin noise (images only) and signed as configured."""
        cfg = self.config
        if image and cfg.langevin > 0:
            noise = torch.randn(g.shape, generator=self.problem.step_generator(step, stream=1), device=g.device,
                                dtype=g.dtype)
            g = g + (cfg.langevin * self.opt.param_groups[0]["lr"]) * noise
        if cfg.signed == "soft":
            first, length = self._bounds()
            scale = 1 - (step - first) / length
            return torch.tanh(g * scale) / scale
        return g.sign_() if cfg.signed else g

    def step(self, step: int) -> None:
        cfg = self.config
        stage = stage_of(step, cfg.stages, cfg.iterations)
        if stage != self.stage:
            self._next_stage(stage)
        self.problem.before_step(step, self.full(self.x))
        if self.graph is None and self._graphable():
            self.graph = capture_step(self._objective_and_grads, self.leaves) or False
        losses, grads = self.graph() if self.graph else self._objective_and_grads()
        bad = ~torch.isfinite(losses)
        with torch.no_grad():
            for v, g in zip(self.leaves, grads):
                g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                v.grad = self._direction(g, step, v is self.x)
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
        fresh = self.problem.fresh_images(step, self._size())
        mask = bad.view(-1, *([1] * (self.x.dim() - 1)))
        self.x.copy_(torch.where(mask, fresh, self.x))
        state = self.opt.state.get(self.x, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key].copy_(torch.where(mask, torch.zeros_like(state[key]), state[key]))
        self.resets += bad.sum()

    def optimizer_state(self) -> dict[str, Any]:
        return {"x": self.x.detach(), "soft": None if self.soft is None else self.soft.detach(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "losses": self._losses,
                "stage": self.stage}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.stage = int(state.get("stage", 0))
        with torch.no_grad():
            self.x = state["x"].clone().requires_grad_(True)
            if self.soft is not None:
                self.soft = state["soft"].clone().requires_grad_(True)
        self._optimise([self.x] + ([self.soft] if self.soft is not None else []))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self._losses = state["losses"]
