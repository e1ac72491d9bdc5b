"""The attack engine: batched restarts and batched independent attacks.

P observations of the same model (one for ``attack``, many for ``attack_many``), each with R
restarts, are optimised as Q = P*R dummy batches in one vectorised computation: one
simulated client computation (``ClientSimulator``), one fused gradient-distance call, one
fused TV call, and one optimiser step per iteration. Adam is elementwise, so restarts stay
independent under it; L-BFGS is the per-problem ``BatchedLBFGS``.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fastleak._files import write_atomically
from fastleak.attacks import registration
from fastleak.attacks.graphs import StepGraph, capture_step
from fastleak.attacks.lbfgs import BatchedLBFGS, LBFGSConfig
from fastleak.attacks.presets import PRESETS, AttackConfig
from fastleak.attacks.simulate import ClientSimulator, check_observation, layer_weights
from fastleak.federated.observation import Observation
from fastleak.ops import grad_distance, total_variation

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "fastleak-attack-checkpoint"
CHECKPOINT_VERSION = 2  # 2: L-BFGS state keeps the history's products with the gradient
Callback = Callable[[int, Tensor], None]


@dataclass(frozen=True)
class AttackResult:
    """One attacked observation.

    images [B, C, H, W] in [0, 1] and labels [B] are those of the best restart (lowest final
    objective). restart_images [R, B, C, H, W], restart_losses [R] (inf for a restart that
    failed), history [T, R] (the objective every ``record_every`` steps, at ``history_steps``).
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


def _resolve_config(preset: str | AttackConfig, iterations: int | None, overrides: dict[str, Any]) -> AttackConfig:
    config = preset if isinstance(preset, AttackConfig) else PRESETS.get(preset)
    if iterations is not None:
        overrides = {**overrides, "iterations": iterations}
    config = config.replace(**overrides)
    for field in ("iterations", "lbfgs_inner", "record_every", "checkpoint_every", "group_every", "history_size"):
        if getattr(config, field) < 1:
            raise ValueError(f"{field} must be >= 1, got {getattr(config, field)}")
    choices = {"labels": ("recover", "optimize"), "distance": ("l2", "l2_relative", "cosine"),
               "optimizer": ("adam", "lbfgs"), "init": ("uniform", "gaussian"),
               "registration": ("affine", "translation")}
    for field, allowed in choices.items():
        if getattr(config, field) not in allowed:
            raise ValueError(f"{field} must be one of {allowed}, got {getattr(config, field)!r}")
    return config


def _check_batch_compatible(observations: Sequence[Observation]) -> None:
    first = observations[0]
    keys = ("kind", "num_samples", "reduction", "loss", "bn_train", "local_steps", "local_lr", "local_batch_size",
            "local_epochs", "param_names", "num_pairs")
    for i, obs in enumerate(observations[1:], start=1):
        for key in keys:
            if getattr(obs, key) != getattr(first, key):
                raise ValueError(f"observations[{i}].{key} = {getattr(obs, key)!r} differs from observations[0] "
                                 f"({getattr(first, key)!r}); attack_many needs observations of one protocol")


def _input_shape(obs: Observation, model: nn.Module) -> tuple[int, ...]:
    if obs.input_shape is not None:
        return tuple(obs.input_shape)
    from fastleak.models.registry import spec_of

    spec = spec_of(model)
    if spec is None:
        raise ValueError("the observation does not record input_shape and the model is not a fastleak model; "
                         "set Observation.input_shape")
    return tuple(spec.in_shape)


def _num_classes(obs: Observation, model: nn.Module) -> int:
    if obs.num_classes is not None:
        return int(obs.num_classes)
    from fastleak.models import final_linear

    return final_linear(model).out_features


def _fixed_labels(labels: Tensor, obs: Observation, num_classes: int) -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.dtype != torch.long or labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D int64 tensor, got dtype {labels.dtype} shape {tuple(labels.shape)}")
    if labels.numel() != obs.num_samples:
        raise ValueError(f"labels has {labels.numel()} entries but the observation's batch has "
                         f"{obs.num_samples} samples")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    return labels


class _Problem:
    """The optimisation state shared by the Adam and L-BFGS loops."""

    def __init__(self, model: nn.Module, observations: Sequence[Observation], config: AttackConfig, restarts: int,
                 labels: list[Tensor] | None, seed: int, device: torch.device) -> None:
        self.config = config
        self.P, self.R = len(observations), restarts
        self.Q = self.P * self.R
        obs = observations[0]
        self.B = obs.num_samples
        self.shape = _input_shape(obs, model)
        self.C = _num_classes(obs, model)
        self.sims = [ClientSimulator(model, observations, k, restarts, fedavg_mode=config.fedavg_mode,
                                     track_bn=config.bn > 0, lean_conv=config.lean_conv)
                     for k in range(obs.num_pairs)]
        self.targets = [sim.target() for sim in self.sims]
        self.weights = layer_weights(config.layer_weights, len(obs.param_names))
        if self.weights is not None:
            self.weights = self.weights.to(device)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.device = device
        if labels is None:
            self.hard_labels = None
        else:
            self.hard_labels = torch.stack(labels).to(device).repeat_interleave(self.R, dim=0)
        self.center: Tensor | None = None
        self.theta: Tensor | None = None

    def _random_images(self, generator: torch.Generator) -> Tensor:
        shape = (self.Q, self.B, *self.shape)
        device = generator.device
        if self.config.init == "uniform":
            return torch.rand(shape, generator=generator, device=device)
        return 0.5 + 0.25 * torch.randn(shape, generator=generator, device=device)

    def init_images(self) -> Tensor:
        """The initial images, drawn on the CPU so that a seed gives the same start on every device."""
        return self._random_images(self.generator).to(self.device)

    def fresh_images(self, step: int) -> Tensor:
        """Images for restarts started again at ``step``, drawn on the device (no host synchronisation)
        from a generator seeded by the attack's seed and the step, so a resumed run draws the same."""
        generator = torch.Generator(device=self.device).manual_seed(((self.seed & 0xFFFFFFFF) << 32) | (step + 1))
        return self._random_images(generator)

    def init_soft_labels(self) -> Tensor:
        return torch.randn((self.Q, self.B, self.C), generator=self.generator).to(self.device)

    def distance(self, shared: list[Tensor], target: list[Tensor]) -> Tensor:
        if self.P == 1:
            return grad_distance(shared, [t[0] for t in target], self.config.distance, self.weights, batched=True)
        return grad_distance(shared, target, self.config.distance, self.weights, batched=True, row_targets=True)

    def objective(self, x: Tensor, soft: Tensor | None) -> Tensor:
        """The per-dummy-batch objective [Q]: gradient distance over all pairs plus priors."""
        cfg = self.config
        y = soft if soft is not None else self.hard_labels
        total = x.new_zeros(self.Q)
        for sim, target in zip(self.sims, self.targets):
            total = total + self.distance(sim.shared(x, y), target).to(x.dtype)
            if cfg.bn > 0 and sim.bn_loss is not None:
                total = total + cfg.bn * sim.bn_loss
        flat = x.flatten(0, 1)
        if cfg.tv > 0:
            total = total + cfg.tv * total_variation(flat, p=1).view(self.Q, self.B).mean(1).to(x.dtype)
        if cfg.l2 > 0:
            total = total + cfg.l2 * x.pow(2).flatten(1).mean(1)
        if cfg.group > 0 and self.center is not None:
            total = total + cfg.group * self.group_term(x)
        return total

    def group_term(self, x: Tensor) -> Tensor:
        terms = []
        for p in range(self.P):
            sl = slice(p * self.R, (p + 1) * self.R)
            terms.append(registration.consistency_loss(x[sl], self.center[p], self.theta[sl]))
        return torch.cat(terms)

    def update_consensus(self, x: Tensor) -> None:
        translation = self.config.registration == "translation"
        thetas, centers = [], []
        for p in range(self.P):
            xp = x[p * self.R:(p + 1) * self.R].detach()
            theta = registration.register_to_mean(xp, translation_only=translation)
            thetas.append(theta)
            centers.append(registration.consensus(xp, theta))
        self.theta, self.center = torch.cat(thetas), torch.stack(centers)


def attack(obs: Observation, model: nn.Module, preset: str | AttackConfig = "inverting", *,
           labels: Tensor | str | None = None, restarts: int = 4, iterations: int | None = None, seed: int = 0,
           device: str | torch.device | None = None, callback: Callback | None = None,
           checkpoint: str | os.PathLike | None = None, **overrides: Any) -> AttackResult:
    """Reconstruct the private batch behind ``obs`` (see ``attack_many``)."""
    fixed = labels if labels is None or isinstance(labels, str) else [labels]
    return attack_many([obs], model, preset, labels=fixed, restarts=restarts, iterations=iterations, seed=seed,
                       device=device, callback=callback, checkpoint=checkpoint, **overrides)[0]


def attack_many(observations: Sequence[Observation], model: nn.Module, preset: str | AttackConfig = "inverting", *,
                labels: Sequence[Tensor] | str | None = None, restarts: int = 4, iterations: int | None = None,
                seed: int = 0, device: str | torch.device | None = None, callback: Callback | None = None,
                checkpoint: str | os.PathLike | None = None, **overrides: Any) -> list[AttackResult]:
    """Run independent attacks on several observations of the same model, all restarts batched.

    labels: None uses the preset's rule ("recover": ``fastleak.labels.recover`` with the
    preset's ``label_method``; "optimize": soft labels optimised jointly); "optimize" or
    "recover" override it; a tensor per observation fixes the labels.
    callback(step, losses [Q]) is called every ``record_every`` steps with device tensors.
    checkpoint: a file path; the run is checkpointed there every ``checkpoint_every`` steps
    and on KeyboardInterrupt, and resumed from it when it exists.
    """
    if not observations:
        raise ValueError("observations must be a non-empty sequence")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive int, got {restarts!r}")
    config = _resolve_config(preset, iterations, overrides)
    for obs in observations:
        check_observation(obs, model)
    _check_batch_compatible(observations)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = copy.deepcopy(model).to(device)

    label_mode, fixed, method = _labels(observations, model, config, labels)
    # the run optimises soft labels only when asked to; given or recovered labels are fixed
    config = config.replace(labels="optimize" if label_mode == "optimize" else "recover")
    problem = _Problem(model, [_to_device(o, device) for o in observations], config, restarts, fixed, seed, device)
    start = time.perf_counter()
    run = _AdamRun(problem) if config.optimizer == "adam" else _LBFGSRun(problem)
    step = first = run.resume(checkpoint) if checkpoint is not None and os.path.exists(checkpoint) else 0
    try:
        while step < config.iterations:
            run.step(step)
            step += 1
            if step % config.record_every == 0 or step == config.iterations:
                run.record(step)
                if callback is not None:
                    callback(step, run.losses())
            if checkpoint is not None and step % config.checkpoint_every == 0:
                run.save(checkpoint, step)
    except KeyboardInterrupt:
        if checkpoint is not None:
            run.save(checkpoint, step)
            log.warning("attack interrupted at step %d; checkpoint saved to %s", step, checkpoint)
        raise
    wall = time.perf_counter() - start
    return run.results(wall, step - first, method)


def _to_device(obs: Observation, device: torch.device) -> Observation:
    from dataclasses import replace

    from fastleak.federated.observation import Pair

    pairs = tuple(Pair(state={k: v.to(device) for k, v in p.state.items()}, shared=tuple(t.to(device)
                                                                                        for t in p.shared))
                  for p in obs.pairs)
    return replace(obs, pairs=pairs)


def _labels(observations: Sequence[Observation], model: nn.Module, config: AttackConfig,
            labels: Sequence[Tensor] | str | None) -> tuple[str, list[Tensor] | None, str | None]:
    mode = config.labels if labels is None else labels
    if isinstance(mode, str):
        if mode == "optimize":
            return "optimize", None, None
        if mode != "recover":
            raise ValueError(f"labels must be None, 'recover', 'optimize' or label tensors, got {mode!r}")
        from fastleak import labels as label_recovery

        found = label_recovery.counts_many(observations, model, config.label_method)
        for c in found:
            log.info("labels recovered with %s: %s", c.method, c.labels.tolist())
        return "recover", [c.labels for c in found], found[0].method
    if isinstance(mode, Tensor):
        mode = [mode]
    if len(mode) != len(observations):
        raise ValueError(f"labels must give one tensor per observation ({len(observations)}), got {len(mode)}")
    fixed = [_fixed_labels(y, obs, _num_classes(obs, model)) for y, obs in zip(mode, observations)]
    return "fixed", fixed, "given"


class _Run:
    """Shared bookkeeping of an optimisation loop: history, checkpoints and the result."""

    def __init__(self, problem: _Problem) -> None:
        self.problem = problem
        self.config = problem.config
        self.history: list[Tensor] = []
        self.history_steps: list[int] = []
        self.resets = torch.zeros((), dtype=torch.long, device=problem.device)

    def maybe_update_consensus(self, step: int, x: Tensor) -> None:
        cfg = self.config
        if cfg.group <= 0 or self.problem.R < 2:
            return
        first = int(cfg.group_start * cfg.iterations)
        if step >= first and (step - first) % cfg.group_every == 0:
            self.problem.update_consensus(x)

    def record(self, step: int) -> None:
        self.history.append(self.losses().detach().clone())
        self.history_steps.append(step)

    def _common_state(self, step: int) -> dict[str, Any]:
        p = self.problem
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": step,
                "config": self.config.as_dict(), "shape": [p.Q, p.B, *p.shape],
                "history": torch.stack(self.history) if self.history else torch.zeros(0, p.Q),
                "history_steps": list(self.history_steps), "resets": self.resets,
                "generator": p.generator.get_state(), "center": p.center, "theta": p.theta}

    def save(self, path: str | os.PathLike, step: int) -> None:
        state = {**self._common_state(step), **self.optimizer_state()}
        write_atomically(path, lambda tmp: torch.save(state, tmp))

    def resume(self, path: str | os.PathLike) -> int:
        try:
            state = torch.load(path, map_location=self.problem.device, weights_only=True)
        except Exception as exc:
            raise ValueError(f"checkpoint {os.fspath(path)!r} cannot be read ({exc}); delete it to start afresh") \
                from None
        p = self.problem
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a fastleak attack checkpoint")
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {os.fspath(path)!r} has version {state.get('version')}, "
                             f"expected {CHECKPOINT_VERSION}")
        if state["config"] != self.config.as_dict() or list(state["shape"]) != [p.Q, p.B, *p.shape]:
            raise ValueError(f"checkpoint {os.fspath(path)!r} belongs to a different attack configuration; "
                             "use the same options or delete it")
        self.history = list(state["history"].unbind(0))
        self.history_steps = list(state["history_steps"])
        self.resets = state["resets"]
        p.generator.set_state(state["generator"].cpu())
        p.center, p.theta = state["center"], state["theta"]
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
        labels = soft.argmax(-1) if soft is not None else p.hard_labels
        images = x.detach().clamp(0, 1).cpu()
        history = torch.stack(self.history).cpu() if self.history else torch.zeros(0, p.Q)
        out = []
        for k in range(p.P):
            sl = slice(k * p.R, (k + 1) * p.R)
            restart_losses = losses[sl].cpu()
            best = int(torch.argmin(restart_losses))
            out.append(AttackResult(
                images=images[sl][best], labels=labels[sl][best].cpu(), restart_images=images[sl],
                restart_losses=restart_losses, best_restart=best, history=history[:, sl],
                history_steps=tuple(self.history_steps), wall_time=wall, iterations=self.config.iterations,
                iterations_per_second=steps_run / wall if wall > 0 else math.inf,
                config=self.config, label_method=method if soft is None else "optimize",
                resets=int(self.resets)))
        return out


class _AdamRun(_Run):
    def __init__(self, problem: _Problem) -> None:
        super().__init__(problem)
        cfg = self.config
        self.x = problem.init_images().requires_grad_(True)
        self.soft = problem.init_soft_labels().requires_grad_(True) if cfg.labels == "optimize" else None
        self.leaves = [self.x] + ([self.soft] if self.soft is not None else [])
        self.opt = torch.optim.Adam(self.leaves, lr=cfg.lr)
        self.graph: StepGraph | bool | None = None  # None: not tried yet; False: eager
        milestones = [int(cfg.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)] if cfg.lr_decay else []
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, milestones=milestones, gamma=0.1)
        self._losses = torch.full((problem.Q,), math.inf, device=problem.device)

    def variables(self) -> tuple[Tensor, Tensor | None]:
        return self.x.detach(), None if self.soft is None else self.soft.detach()

    def losses(self) -> Tensor:
        return self._losses

    def _objective_and_grads(self) -> tuple[Tensor, tuple[Tensor, ...]]:
        losses = self.problem.objective(self.x, self.soft)
        return losses.detach(), torch.autograd.grad(losses.sum(), self.leaves)

    def _graphable(self) -> bool:
        """A CUDA graph freezes the objective's structure; the group consensus changes it during the run."""
        cfg = self.config
        return cfg.cuda_graph and self.problem.device.type == "cuda" and not (cfg.group > 0 and self.problem.R > 1)

    def step(self, step: int) -> None:
        cfg = self.config
        self.maybe_update_consensus(step, self.x)
        if self.graph is None and self._graphable():
            self.graph = capture_step(self._objective_and_grads, self.leaves) or False
        losses, grads = self.graph() if self.graph else self._objective_and_grads()
        bad = ~torch.isfinite(losses)
        with torch.no_grad():
            for v, g in zip(self.leaves, grads):
                g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
                v.grad = g.sign_() if cfg.signed else g
        self.opt.step()
        self.sched.step()
        with torch.no_grad():
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


class _LBFGSRun(_Run):
    """Images (and soft labels) of each dummy batch flattened into one L-BFGS problem per row."""

    def __init__(self, problem: _Problem) -> None:
        super().__init__(problem)
        cfg = self.config
        x = problem.init_images()
        parts = [x.flatten(1)]
        if cfg.labels == "optimize":
            parts.append(problem.init_soft_labels().flatten(1))
        self.n_image = parts[0].shape[1]
        self.opt = BatchedLBFGS(torch.cat(parts, 1), LBFGSConfig(lr=cfg.lr, history_size=cfg.history_size,
                                                                 line_search=cfg.line_search))

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
        return self._split(self.opt.x)

    def losses(self) -> Tensor:
        return self.opt.losses

    def step(self, step: int) -> None:
        self.maybe_update_consensus(step, self._split(self.opt.x)[0])
        for _ in range(self.config.lbfgs_inner):
            self.opt.step(self.closure)

    def optimizer_state(self) -> dict[str, Any]:
        return {"lbfgs": self.opt.state_dict()}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["lbfgs"])
