"""Gradient-inversion attacks written the way public attack scripts write them.

This is the baseline that ``bench_attack.py`` measures fastleak's engine against. It follows
the structure of the public DLG / inversefed / breaching code: the client's gradient from
``torch.autograd.grad(create_graph=True)`` on the plain ``nn.Module`` forward, the gradient
distance as a Python loop over the parameter tensors, total variation from tensor slicing,
``backward(inputs=...)`` into the optimised variables only (not into the model's parameters),
``torch.optim.Adam`` (signed gradients, ``MultiStepLR`` at 3/8, 5/8 and 7/8 of the run, images
clamped to [0, 1]) or ``torch.optim.LBFGS(max_iter=lbfgs_inner)``, and every restart of every
attack run to completion one after another.

It computes the same objective as ``fastleak.attacks.problem.Problem.objective`` for a given
``AttackConfig`` and starts from the same images: all P*R initial batches are drawn at once
with ``torch.rand`` (or ``randn``) from a CPU generator seeded with ``seed``, in the engine's
[P*R, B, C, H, W] layout, then soft labels (when optimised) from the same generator.

Supported: gradient observations with any number of pairs, fixed or optimised (soft) labels,
"l2"/"cosine" distance with layer weights, the tv, l2 and bn priors, Adam and L-BFGS without
line search. Not supported (ValueError): update observations, group consistency, backtracking
line search.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastleak.attacks.presets import AttackConfig, configure
from fastleak.attacks.simulate import layer_weights
from fastleak.federated.losses import client_loss
from fastleak.federated.observation import Observation
from fastleak.models import batchnorm_layers

EPS = 1e-12  # as fastleak.ops.grad_distance
# step_callback(attack index, restart index, step (1-based), loss at the start of the step)
StepCallback = Callable[[int, int, int, Tensor], None]


@dataclass(frozen=True)
class EagerResult:
    """One attacked observation: final images [R, B, C, H, W] clamped to [0, 1] and the
    objective losses [R, T] evaluated at the start of each of the T steps."""

    images: Tensor
    losses: Tensor


def gradient_distance(rec: Sequence[Tensor], target: Sequence[Tensor], metric: str,
                      weights: Tensor | None) -> Tensor:
    if metric == "l2":
        total = 0.0
        for i, (r, t) in enumerate(zip(rec, target)):
            term = (r - t).pow(2).sum()
            total = total + (term if weights is None else weights[i] * term)
        return total
    dot, rr, tt = 0.0, 0.0, 0.0
    for i, (r, t) in enumerate(zip(rec, target)):
        w = 1.0 if weights is None else weights[i]
        dot = dot + w * (r * t).sum()
        rr = rr + w * r.pow(2).sum()
        tt = tt + w * t.pow(2).sum()
    return 1 - dot / (rr.clamp_min(EPS * EPS).sqrt() * tt.clamp_min(EPS * EPS).sqrt())


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic TV (p=1) averaged over the batch: every image has as many pairs, so the
    batch mean of the per-image means is the mean over all pairs."""
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean()
    return dx + dy


class _Client:
    """One observed pair: the model in that pair's state and the shared gradient."""

    def __init__(self, model: nn.Module, obs: Observation, pair: int, track_bn: bool) -> None:
        self.model = copy.deepcopy(model)
        self.model.load_state_dict(obs.pairs[pair].state)
        self.model.train(obs.bn_train)
        named = dict(self.model.named_parameters())
        self.params = [named[n] for n in obs.param_names]
        device = self.params[0].device
        self.target = [t.detach().to(device) for t in obs.pairs[pair].shared]
        self.obs = obs
        self.bn_terms: list[Tensor] = []
        if track_bn:  # as the engine's bn prior: layers whose statistics no batch has updated are left out
            for m in batchnorm_layers(self.model):
                if m.num_batches_tracked is not None and int(m.num_batches_tracked) == 0:
                    continue
                stats = (m.running_mean.detach().clone(), m.running_var.detach().clone())
                m.register_forward_pre_hook(self._bn_hook(*stats))

    def _bn_hook(self, running_mean: Tensor, running_var: Tensor):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
            x = inputs[0]
            dims = [0] + list(range(2, x.dim()))
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            self.bn_terms.append((mean - running_mean).norm() + (var - running_var).norm())
        return hook

    def gradient(self, x: Tensor, y: Tensor) -> tuple[Tensor, ...]:
        self.bn_terms = []
        target = F.softmax(y, dim=-1) if y.is_floating_point() else y
        loss = client_loss(self.model(x), target, self.obs.loss, self.obs.reduction)
        return torch.autograd.grad(loss, self.params, create_graph=True)


def _objective(clients: Sequence[_Client], x: Tensor, y: Tensor, config: AttackConfig,
               weights: Tensor | None) -> Tensor:
    loss = 0.0
    for client in clients:
        loss = loss + gradient_distance(client.gradient(x, y), client.target, config.distance, weights)
        if config.prior_weight("bn") > 0 and client.bn_terms:
            loss = loss + config.prior_weight("bn") * torch.stack(client.bn_terms).sum()
    if config.prior_weight("tv") > 0:
        loss = loss + config.prior_weight("tv") * total_variation(x)
    if config.prior_weight("l2") > 0:
        loss = loss + config.prior_weight("l2") * x.pow(2).mean()
    return loss


def _run_adam(clients, x0: Tensor, y0: Tensor, config: AttackConfig, weights, on_step) -> tuple[Tensor, Tensor]:
    x = x0.clone().requires_grad_(True)
    soft = y0.clone().requires_grad_(True) if y0.is_floating_point() else None
    variables = [x] + ([soft] if soft is not None else [])
    optimizer = torch.optim.Adam(variables, lr=config.lr)
    milestones = [int(config.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)] if config.lr_decay else []
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)

    def closure():
        optimizer.zero_grad()
        loss = _objective(clients, x, soft if soft is not None else y0, config, weights)
        loss.backward(inputs=variables)
        if config.signed:
            for v in variables:
                v.grad.sign_()
        return loss

    losses = []
    for step in range(config.iterations):
        loss = optimizer.step(closure)
        scheduler.step()
        if config.boxed:
            with torch.no_grad():
                x.clamp_(0, 1)
        losses.append(loss.detach())
        on_step(step + 1, losses[-1])
    return x.detach(), torch.stack(losses)


def _run_lbfgs(clients, x0: Tensor, y0: Tensor, config: AttackConfig, weights, on_step) -> tuple[Tensor, Tensor]:
    x = x0.clone().requires_grad_(True)
    soft = y0.clone().requires_grad_(True) if y0.is_floating_point() else None
    variables = [x] + ([soft] if soft is not None else [])
    optimizer = torch.optim.LBFGS(variables, lr=config.lr, max_iter=config.lbfgs_inner,
                                  history_size=config.history_size)

    def closure():
        optimizer.zero_grad()
        loss = _objective(clients, x, soft if soft is not None else y0, config, weights)
        loss.backward(inputs=variables)
        return loss

    losses = []
    for step in range(config.iterations):
        losses.append(optimizer.step(closure).detach())
        on_step(step + 1, losses[-1])
    return x.detach(), torch.stack(losses)


_OPTIMIZERS = {"adam": _run_adam, "lbfgs": _run_lbfgs}


def _check_supported(observations: Sequence[Observation], config: AttackConfig) -> None:
    if any(obs.kind != "gradient" for obs in observations):
        raise ValueError("the eager reference attacks gradient observations only")
    others = sorted(name for name, params in config.priors.items()
                    if params["weight"] > 0 and name not in ("bn", "tv", "l2"))
    if others:
        raise ValueError(f"the eager reference implements the bn, tv and l2 priors only, not {others} (group "
                         "consistency and the rest must have weight 0)")
    if not (isinstance(config.signed, bool) and isinstance(config.lr_decay, bool) and config.warmup == 0
            and config.langevin == 0 and config.stages == 1 and config.adam_betas == (0.9, 0.999)
            and config.adam_eps == 1e-8 and config.init in ("uniform", "gaussian")
            and not (config.optimizer == "lbfgs" and config.boxed)):
        raise ValueError("the eager reference runs Adam with signed or plain gradients and step decay or none, or "
                         "unboxed L-BFGS, from a uniform or gaussian start")
    if config.optimizer == "lbfgs" and config.line_search is not None:
        raise ValueError("the eager reference runs torch.optim.LBFGS without line search (line_search must be None)")
    if config.search or config.halving:
        raise ValueError("the eager reference runs plain restarts: search and halving must be empty (search={} pins "
                         "a preset's)")
    if config.optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {config.optimizer!r}")
    if config.distance not in ("l2", "cosine"):
        raise ValueError(f"distance must be 'l2' or 'cosine', got {config.distance!r}")
    for i, obs in enumerate(observations):
        if obs.input_shape is None or obs.num_classes is None:
            raise ValueError(f"observations[{i}] must record input_shape and num_classes")


def eager_attack_many(observations: Sequence[Observation], model: nn.Module, preset: str | AttackConfig,
                      labels: Sequence[Tensor] | str, *, restarts: int = 1, seed: int = 0,
                      device: str | torch.device = "cpu", on_step: StepCallback | None = None,
                      **overrides) -> list[EagerResult]:
    """Attack each observation with ``restarts`` restarts, all run one after another.

    labels: one int64 tensor [B] per observation (fixed labels), or "optimize" (soft labels
    optimised jointly, as DLG does). Overrides replace fields of the preset's config.
    """
    config = configure(preset, **overrides)[0]
    _check_supported(observations, config)
    device = torch.device(device)
    model = copy.deepcopy(model).to(device)
    obs0 = observations[0]
    n_attacks, batch = len(observations), obs0.num_samples
    shape = (n_attacks * restarts, batch, *obs0.input_shape)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    init = torch.rand(shape, generator=generator) if config.init == "uniform" \
        else 0.5 + 0.25 * torch.randn(shape, generator=generator)
    if isinstance(labels, str):
        if labels != "optimize":
            raise ValueError(f"labels must be label tensors or 'optimize', got {labels!r}")
        label_init = torch.randn((n_attacks * restarts, batch, obs0.num_classes), generator=generator)
    else:
        if len(labels) != n_attacks:
            raise ValueError(f"labels must give one tensor per observation ({n_attacks}), got {len(labels)}")
        label_init = torch.stack([torch.as_tensor(y) for y in labels]).repeat_interleave(restarts, dim=0)
    weights = layer_weights(config.layer_weights, len(obs0.param_names))
    weights = None if weights is None else weights.to(device)
    run = _OPTIMIZERS[config.optimizer]
    results = []
    for p, obs in enumerate(observations):
        clients = [_Client(model, obs, k, track_bn=config.prior_weight("bn") > 0) for k in range(obs.num_pairs)]
        images, losses = [], []
        for r in range(restarts):
            q = p * restarts + r

            def step_hook(step: int, loss: Tensor, p: int = p, r: int = r) -> None:
                if on_step is not None:
                    on_step(p, r, step, loss)

            x, curve = run(clients, init[q].to(device), label_init[q].to(device), config, weights, step_hook)
            images.append(x.clamp(0, 1).cpu())
            losses.append(curve.cpu())
        results.append(EagerResult(images=torch.stack(images), losses=torch.stack(losses)))
    return results
