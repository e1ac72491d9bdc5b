"""What every optimiser run of an attack shares: the step loop, history, checkpoints and results.

A run (``fastleak.attacks.adam.AdamRun``, ``fastleak.attacks.lbfgs_run.LBFGSRun``) owns the
variables of a ``Problem`` and implements ``step``, ``losses``, ``variables`` and its optimiser's
checkpoint entries; ``Run.optimise`` drives it.
"""
from __future__ import annotations

import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fastleak.attacks import checkpoint as checkpoints
from fastleak.attacks.presets import AttackConfig
from fastleak.attacks.problem import Problem
from fastleak.attacks.search import Candidate, SearchReport, halving_steps, survivors

log = logging.getLogger(__name__)

Callback = Callable[[int, Tensor], None]


@dataclass(frozen=True)
class AttackResult:
    """One attacked observation.

    images [B, C, H, W] in [0, 1] and labels [B] are those of the best restart (first in the ranking of
    ``config.select``: by default the lowest final objective).
    restart_images [R, B, C, H, W], restart_losses [R] (the final objective; inf for a restart that
    failed) and restart_scores [R] are those of the rows that ran to the end; history [T, R0] (the
    objective every ``record_every`` steps, at ``history_steps``) has a column for every first row,
    NaN after a search dropped it. search: what a search tried and chose (None without one).
    wall_time and iterations_per_second cover the steps this call ran: after a resume, only those
    after the checkpoint.
    """

    images: Tensor
    labels: Tensor
    restart_images: Tensor
    restart_losses: Tensor
    best_restart: int
    history: Tensor
    history_steps: tuple[int, ...]
    wall_time: float
    iterations: int
    iterations_per_second: float
    config: AttackConfig
    label_method: str | None
    resets: int
    restart_scores: Tensor | None = None
    search: SearchReport | None = None


class Run(ABC):
    """An optimiser's loop over a ``Problem``; subclasses implement the optimiser."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.config = problem.config
        self.history: list[Tensor] = []
        self.history_steps: list[int] = []
        self.resets = torch.zeros((), dtype=torch.long, device=problem.device)
        self.halving = halving_steps(self.config.halving, self.config.iterations)
        # per first row: its score when it was dropped or at the end, and the step it was dropped at (-1: never)
        self.row_scores = torch.full((problem.Q0,), math.inf)
        self.dropped_at = torch.full((problem.Q0,), -1, dtype=torch.long)

    @abstractmethod
    def step(self, step: int) -> None:
        """One optimiser step (step counts from 0)."""

    @abstractmethod
    def losses(self) -> Tensor:
        """The objective [Q] at the current variables (device tensor)."""

    @abstractmethod
    def variables(self) -> tuple[Tensor, Tensor | None]:
        """The images [Q, B, C, H, W] and the soft labels [Q, B, classes] (None when labels are fixed)."""

    @abstractmethod
    def keep(self, rows: Tensor) -> None:
        """Keep only the optimiser state of the current rows ``rows``."""

    @abstractmethod
    def optimizer_state(self) -> dict[str, Any]:
        """The optimiser's checkpoint entries."""

    @abstractmethod
    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Restore the entries ``optimizer_state`` wrote."""

    def optimise(self, checkpoint: str | os.PathLike | None, callback: Callback | None) -> int:
        """Run the steps left to ``config.iterations``, resuming from ``checkpoint`` when it exists and
        saving it every ``checkpoint_every`` steps and on KeyboardInterrupt; returns the steps run."""
        cfg, run = self.config, self.problem.execution
        step = first = self.resume(checkpoint) if checkpoint is not None and os.path.exists(checkpoint) else 0
        try:
            while step < cfg.iterations:
                self.step(step)
                step += 1
                recorded = step % run.record_every == 0 or step == cfg.iterations
                if recorded:
                    self.record(step)
                if step in self.halving:
                    self.halve(step)
                if recorded and callback is not None:
                    callback(step, self.losses())
                if checkpoint is not None and step % run.checkpoint_every == 0:
                    self.save(checkpoint, step)
        except KeyboardInterrupt:
            if checkpoint is not None:
                self.save(checkpoint, step)
                log.warning("attack interrupted at step %d; checkpoint saved to %s", step, checkpoint)
            raise
        return step - first

    def halve(self, step: int) -> None:
        """Drop the worse half of every observation's rows (by ``Problem.ranking``), at least one kept."""
        p = self.problem
        before, keep = p.R, max(1, p.R // 2)
        if keep == before:
            return
        scores = p.scores(self.losses()).detach()
        rows = survivors(p.ranking(scores), p.P, keep)
        dropped = torch.ones(p.Q, dtype=torch.bool)
        dropped[rows.cpu()] = False
        self.row_scores[p.rows[dropped]] = scores.cpu()[dropped].float()
        self.dropped_at[p.rows[dropped]] = step
        p.keep(rows)
        self.keep(rows)
        log.info("search: step %d keeps %d of %d rows per observation", step, keep, before)

    def record(self, step: int) -> None:
        p = self.problem
        losses = self.losses().detach()
        full = torch.full((p.Q0,), math.nan, dtype=losses.dtype, device=losses.device)
        full[p.rows.to(losses.device)] = losses
        self.history.append(full)
        self.history_steps.append(step)

    def _shape(self) -> list[int]:
        p = self.problem
        return [p.Q0, p.B, *p.shape]

    def save(self, path: str | os.PathLike, step: int) -> None:
        p = self.problem
        checkpoints.save(path, {
            "step": step, "config": self.config.as_dict(), "shape": self._shape(),
            "history": torch.stack(self.history) if self.history else torch.zeros(0, p.Q0),
            "history_steps": list(self.history_steps), "resets": self.resets,
            "generator": p.generator.get_state(), "priors": p.prior_state(),
            "rows": p.rows, "row_scores": self.row_scores, "dropped_at": self.dropped_at,
            **self.optimizer_state()})

    def resume(self, path: str | os.PathLike) -> int:
        """Load the run's state from ``path``; returns the step it was saved at."""
        p = self.problem
        state = checkpoints.load(path, p.device, self.config.as_dict(), self._shape())
        self.history = list(state["history"].unbind(0))
        self.history_steps = list(state["history_steps"])
        self.resets = state["resets"]
        p.generator.set_state(state["generator"].cpu())
        if len(state["rows"]) < p.Q:
            rows = torch.searchsorted(p.rows, state["rows"].cpu()).to(p.device)
            p.keep(rows)
            self.keep(rows)
        self.row_scores, self.dropped_at = state["row_scores"].cpu(), state["dropped_at"].cpu()
        p.load_prior_state(state["priors"])
        self.load_optimizer_state(state)
        log.info("resumed attack from %s at step %d", os.fspath(path), state["step"])
        return int(state["step"])

    def final_losses(self, x: Tensor, soft: Tensor | None) -> Tensor:
        with torch.enable_grad():
            losses = self.problem.objective(x, soft).detach()
        return torch.where(torch.isfinite(losses), losses, torch.full_like(losses, math.inf))

    def results(self, wall: float, steps_run: int, method: str | None) -> list[AttackResult]:
        """``wall``: seconds spent on the ``steps_run`` steps this call ran (a resumed run ran fewer)."""
        p = self.problem
        x, soft = self.variables()
        losses = self.final_losses(x, soft)
        scores = p.scores(losses).detach()
        scores = torch.where(torch.isfinite(losses), scores, torch.full_like(scores, math.inf))
        ranking = p.ranking(scores).cpu()
        scores = scores.cpu()
        self.row_scores[p.rows] = scores.float()
        labels = soft.argmax(-1) if soft is not None else p.hard_labels
        images = x.detach().clamp(0, 1).cpu()
        history = torch.stack(self.history).cpu() if self.history else torch.zeros(0, p.Q0)
        out = []
        for k in range(p.P):
            sl = slice(k * p.R, (k + 1) * p.R)
            best = int(torch.argmin(ranking[sl]))
            out.append(AttackResult(
                images=images[sl][best], labels=labels[sl][best].cpu(), restart_images=images[sl],
                restart_losses=losses[sl].cpu(), best_restart=best,
                history=history[:, k * p.Q0 // p.P:(k + 1) * p.Q0 // p.P],
                history_steps=tuple(self.history_steps), wall_time=wall, iterations=self.config.iterations,
                iterations_per_second=steps_run / wall if wall > 0 else math.inf,
                config=self.config, label_method=method if soft is None else "optimize",
                resets=int(self.resets), restart_scores=scores[sl], search=self._report(k, int(p.rows[sl][best]))))
        return out

    def _report(self, k: int, winner: int) -> SearchReport | None:
        """What the search of observation ``k`` tried (every candidate: its rows' best score) and chose."""
        p = self.problem
        if not self.config.search:
            return None
        per = p.Q0 // p.P
        found = []
        for c, values in enumerate(p.candidates):
            rows = torch.arange(k * per + c * p.restarts, k * per + (c + 1) * p.restarts)
            survived = bool((self.dropped_at[rows] < 0).any())
            found.append(Candidate(values=values, score=float(self.row_scores[rows].min()),
                                   dropped_at=None if survived else int(self.dropped_at[rows].max())))
        return SearchReport(select=self.config.select, chosen=p.setting(winner), candidates=tuple(found))
