"""Class-conditional statistics of the final layer's gradient, from the server's public data.

With cross-entropy each sample k of a batch adds e_k = p_k − onehot(y_k) to B·Δb and e_k·h_kᵀ to
B·ΔW (h_k: its penultimate features). Over the public images of class c at the observed model state
the server measures the mean contribution μ_c = E[(e, e·hᵀ) | y = c] (RLU's "erroneous confidence",
Chen & Vikalo 2024, for the bias; here for the weight as well) and the spread of single
contributions around it, so that a batch with counts n leaves g ≈ Σ_c n_c·μ_c with noise of
covariance B·S.

The weight gradient enters through a projection of its feature axis onto the leading directions
of the public class-mean features (all of them for up to ``PROJECTION_BUDGET`` / C − 1 classes), so
the evidence vector has d = C·(1 + m) entries (C·m without a bias). For FedAvg the contributions are
averaged along a simulated local run: the client's local steps replayed on a public batch of the
observed size from the observed start state (RLU's simulation of local training).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from fastleak.errors import InvalidValueError
from fastleak.federated.client import client_gradients, local_schedule, trainable_names
from fastleak.federated.observation import Observation
from fastleak.labels.public import PublicData, client_copy, draw_counts, pick_images
from fastleak.models import features_and_logits, final_linear_param_names

log = logging.getLogger("fastleak.labels")

# Largest evidence dimension C·(1 + m) that the projection aims for (d x d covariance per model state).
PROJECTION_BUDGET = 512
# Weight of the diagonal in the shrunk within-class covariance (public batches hold few images per class).
SHRINKAGE = 0.5
# Model states along a simulated local run at which FedAvg's contributions are averaged.
TRAJECTORY_POINTS = 5
# Images per forward pass when BatchNorm uses running statistics.
EVAL_CHUNK = 256


@dataclass(frozen=True)
class ClassStatistics:
    """``projection`` [D, m]; ``means`` [C, d] (μ_c); ``precision`` [d, d]: the pseudo-inverse of one
    sample's within-class covariance (shrunk toward its diagonal); ``has_bias``; ``nonnegative``:
    whether the public images' penultimate features are all >= 0 (then a negative weight-gradient
    entry shows its class present); ``states``: model states averaged."""

    projection: torch.Tensor
    means: torch.Tensor
    precision: torch.Tensor
    has_bias: bool
    nonnegative: bool
    states: int

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def vectors(self, grad_w: torch.Tensor, grad_b: torch.Tensor | None, num_samples: torch.Tensor) -> torch.Tensor:
        """The evidence vectors g [P, d] = B·(Δb, ΔW·projection) of mean-reduction gradients."""
        gw = grad_w.double() @ self.projection
        parts = ([grad_b.double()] if self.has_bias else []) + [gw.flatten(1)]
        return torch.cat(parts, 1) * num_samples.double()[:, None]

    def terms(self, g: torch.Tensor, num_samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quad [P, C, C], lin [P, C], offset [P]) with r²(n) = nᵀ·quad·n − 2·linᵀn + offset, the
        Mahalanobis residual of g against Σ_c n_c·μ_c under noise covariance B·S."""
        b = num_samples.double()
        mp = self.means @ self.precision
        quad = (mp @ self.means.T)[None] / b[:, None, None]
        lin = g @ mp.T / b[:, None]
        offset = ((g @ self.precision) * g).sum(1) / b
        return quad, lin, offset


def _per_sample(model: torch.nn.Module, data: PublicData, chunk: int, bn_train: bool, num_classes: int,
                gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features [M, D] and residuals p − onehot(y) [M, C] (float64) of every public
    image; with batch statistics, in random chunks of ``chunk`` images as a client's batches."""
    size = chunk if bn_train else max(chunk, EVAL_CHUNK)
    order = torch.randperm(data.num_images, generator=gen) if bn_train else torch.arange(data.num_images)
    param = next(model.parameters())
    feats, residuals = [], []
    with torch.no_grad():
        for start in range(0, data.num_images, size):
            idx = order[start:start + size]
            run = torch.cat([idx, order[:2 - len(idx)]]) if bn_train and len(idx) < 2 else idx
            h, z = features_and_logits(model, data.images[run.to(data.images.device)].to(param))
            y = data.labels[run.to(data.labels.device)].to(z.device)
            feats.append(h.flatten(1).double()[:len(idx)].cpu())
            residuals.append((torch.softmax(z.double(), 1)
                              - torch.nn.functional.one_hot(y, num_classes).double())[:len(idx)].cpu())
    h, r = torch.empty_like(torch.cat(feats)), torch.empty_like(torch.cat(residuals))
    h[order], r[order] = torch.cat(feats), torch.cat(residuals)
    return h, r


def trajectory_states(model: torch.nn.Module, obs: Observation, pair: int, data: PublicData, num_samples: int,
                      num_classes: int, gen: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Model states at which a client's gradients are taken: the start state for a gradient; for an
    update, up to ``TRAJECTORY_POINTS`` evenly spaced states of the local run replayed on an IID
    public batch of ``num_samples`` images (the observation's schedule and learning rate)."""
    start = dict(obs.pairs[pair].state)
    if obs.kind == "gradient":
        return [start]
    clone = client_copy(model, start, obs.bn_train)
    names = trainable_names(clone)
    x, y = pick_images(data, draw_counts("iid", num_samples, data.frequencies(num_classes), gen), gen)
    param = next(clone.parameters())
    x, y = x.to(param), y.to(param.device)
    schedule = local_schedule(num_samples, obs.local_steps, obs.local_batch_size, obs.local_epochs)
    keep = set(torch.linspace(0, len(schedule) - 1, min(TRAJECTORY_POINTS, len(schedule))).round().long().tolist())
    buffers = {k: v for k, v in start.items() if k not in names}
    params = {n: start[n].detach() for n in names}
    states = []
    for step, (lo, hi) in enumerate(schedule):
        if step in keep:
            states.append({**start, **params})
        grads = client_gradients(clone, params, x[lo:hi], y[lo:hi], loss=obs.loss, reduction=obs.reduction,
                                 buffers=buffers)
        params = {n: (p - obs.local_lr * g).detach() for (n, p), g in zip(params.items(), grads)}
    return states


def class_statistics(model: torch.nn.Module, obs: Observation, pair: int, data: PublicData, num_samples: int,
                     num_classes: int, seed: int = 0) -> ClassStatistics:
    """The class-conditional statistics of ``data`` for observations like ``obs`` (its protocol and
    ``obs.pairs[pair].state``) with batches of ``num_samples``."""
    if obs.loss != "ce":
        raise InvalidValueError(f"class-conditional label statistics need the cross-entropy loss, but the "
                                f"observation's loss is {obs.loss!r}")
    gen = torch.Generator().manual_seed(seed)
    weight_name, bias_name = final_linear_param_names(model)
    has_bias = bias_name is not None and bias_name in obs.param_names
    states = trajectory_states(model, obs, pair, data, num_samples, num_classes, gen)
    clone = client_copy(model, states[0], obs.bn_train)
    chunk = obs.local_batch_size or num_samples
    labels = data.labels.cpu()
    total = None
    projection = None
    nonnegative = True
    for state in states:
        clone.load_state_dict(state)
        h, r = _per_sample(clone, data, chunk, obs.bn_train, num_classes, gen)
        nonnegative = nonnegative and bool((h >= 0).all())
        if projection is None:
            projection = _projection(h, labels, num_classes)
        hp = h @ projection
        parts = ([r] if has_bias else []) + [(r[:, :, None] * hp[:, None, :]).flatten(1)]
        v = torch.cat(parts, 1)
        total = v if total is None else total + v
    v = total / len(states)
    counts = torch.bincount(labels, minlength=num_classes).double()
    means = torch.zeros(num_classes, v.shape[1], dtype=torch.float64).index_add_(0, labels, v) / counts[:, None]
    centred = v - means[labels]
    weights = (1.0 / counts)[labels] * (counts / counts.sum())[labels]
    within = (centred * weights[:, None]).T @ centred
    shrunk = (1 - SHRINKAGE) * within + SHRINKAGE * torch.diag(within.diagonal())
    # A floor tied to the means keeps the precision finite where every image of a class contributes alike.
    ridge = 1e-9 * float(within.diagonal().mean()) + 1e-12 * float(means.square().mean()) + 1e-300
    precision = torch.linalg.pinv(shrunk + ridge * torch.eye(len(shrunk), dtype=torch.float64), hermitian=True)
    device = obs.pairs[pair].shared[0].device
    log.debug("class statistics: %d states, %d public images, evidence dimension %d", len(states), len(labels),
              v.shape[1])
    return ClassStatistics(projection.to(device), means.to(device), precision.to(device), has_bias, nonnegative,
                           len(states))


def _projection(h: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """An orthonormal basis [D, m] of the leading directions of the class-mean features."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    means = torch.zeros(num_classes, h.shape[1], dtype=torch.float64).index_add_(0, labels, h) / counts[:, None]
    m = max(1, min(num_classes, h.shape[1], PROJECTION_BUDGET // num_classes - 1))
    _, s, vh = torch.linalg.svd(means, full_matrices=False)
    keep = int((s > 1e-10 * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    basis = vh[:max(1, min(m, keep))].T
    return basis
