"""``feature_inversion``: the final layer's inputs in closed form, then images that produce them.

``fastleak.closedform.linear.final_features`` reads every unique-label sample's features off the
classifier's gradient exactly. Images are then optimised to produce those features: a forward and
one backward pass per step, where gradient matching needs the gradient of a gradient (a double
backward through the model). Where the features determine the image (a classifier that reads
full-resolution feature maps, as the plainconv's does) this reaches gradient matching's quality in a
fraction of its time.

The optimiser is ``inverting``'s: Adam on signed gradients with step decay at 3/8, 5/8 and 7/8 of the
run, images boxed to [0, 1], anisotropic TV. BatchNorm runs in the clients' mode, so in train mode the
batch's images are optimised together (its statistics mix them). Samples whose label repeats have no
closed-form features; they are left out of the objective (in train-mode BatchNorm they still move the
statistics), and a warning says how many.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from fastleak.closedform.linear import classifier_tensors, final_features
from fastleak.closedform.registry import Reconstruction, Target, method
from fastleak.errors import InvalidValueError

log = logging.getLogger(__name__)

DISTANCES = ("cosine", "l2")
DEFAULT_ITERATIONS = 500
RECORD_EVERY = 10


def target_features(targets: list[Target], labels: list[Tensor], steps: int) -> tuple[Tensor, Tensor]:
    """(features [P, B, m], which are exact [P, B]) of every observation's batch, by one batched refinement."""
    pieces = [classifier_tensors(t.model, t.gradients) for t in targets]
    dw, db, w, b = (torch.stack([piece[i] for piece in pieces]) for i in range(4))
    obs = targets[0].observation
    found = final_features(dw, db, w, b, torch.stack(labels), loss=obs.loss, reduction=obs.reduction, steps=steps)
    return found.features, found.exact


def _features(target: Target, x: Tensor) -> Tensor:
    """The final layer's inputs [R, B, m] of R dummy batches x [R, B, C, H, W] under ``target``'s model."""
    from fastleak.models import features_and_logits, has_batchnorm

    if has_batchnorm(target.model, training=True):  # batch statistics: each dummy batch on its own
        return torch.stack([features_and_logits(target.model, batch)[0].flatten(1) for batch in x])
    feats = features_and_logits(target.model, x.flatten(0, 1))[0]
    return feats.reshape(*x.shape[:2], -1)


def _distance(feats: Tensor, wanted: Tensor, mask: Tensor, kind: str) -> Tensor:
    """Per dummy batch [R]: the distance of its known samples' features [R, B, m] to ``wanted`` [B, m]."""
    mine = (feats * mask[None, :, None]).flatten(1)
    theirs = (wanted * mask[:, None]).flatten().to(feats)
    if kind == "cosine":
        return 1 - F.cosine_similarity(mine, theirs[None], dim=1)
    return (mine - theirs).pow(2).sum(1) / theirs.pow(2).sum().clamp_min(1e-30)


@method("feature_inversion", iterative=True)
def feature_inversion(targets: list[Target], labels: list[Tensor], *, restarts: int = 1,
                      iterations: int | None = None, seed: int = 0, callback=None, lr: float = 0.1, tv: float = 1e-4,
                      distance: str = "cosine", refine_steps: int = 200) -> list[Reconstruction]:
    """The classifier's input of every unique-label sample in closed form, then images optimised to produce it
    (module docs): a forward-only objective.

    lr: Adam's step on signed gradients (decayed at 3/8, 5/8, 7/8); tv: the anisotropic TV weight; distance:
    "cosine" or "l2" (relative) between the batch's features and the closed-form ones; refine_steps:
    ``final_features``' alternations. ``iterations`` default: 500."""
    from fastleak.ops import total_variation

    if distance not in DISTANCES:
        raise InvalidValueError(f"feature_inversion option distance must be one of {', '.join(DISTANCES)}, "
                                f"got {distance!r}")
    if not (lr > 0 and tv >= 0):
        raise InvalidValueError(f"feature_inversion options: lr must be > 0 and tv >= 0, got {lr!r}, {tv!r}")
    steps = DEFAULT_ITERATIONS if iterations is None else iterations
    if steps < 1:
        raise InvalidValueError(f"iterations must be a positive int, got {iterations!r}")
    wanted, exact = target_features(targets, labels, refine_steps)
    if not bool(exact.any(1).all()):
        raise InvalidValueError("feature_inversion needs samples whose label appears once in the batch (and at least "
                                "as many classes as samples): only those have closed-form features")
    missing = int((~exact).sum())
    if missing:
        log.warning("feature_inversion: %d of %d samples repeat a label; their features are unknown and the "
                    "objective leaves them out", missing, exact.numel())
    shape = (len(targets), restarts, targets[0].num_samples, *targets[0].input_shape)
    device = wanted.device
    # every observation starts from the same draw, so attacking it alone or among others gives the same images
    start = torch.rand(shape[1:], generator=torch.Generator().manual_seed(seed))
    x = start.expand(shape).contiguous().to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [steps * 3 // 8, steps * 5 // 8, steps * 7 // 8], 0.1)
    history, recorded = [], []
    with torch.enable_grad():
        for step in range(1, steps + 1):
            optimizer.zero_grad(set_to_none=True)
            losses = torch.stack([_distance(_features(t, x[p]), wanted[p], exact[p].to(x.dtype), distance)
                                  for p, t in enumerate(targets)])                      # [P, R]
            if tv > 0:
                losses = losses + tv * total_variation(x.flatten(0, 2), p=1).view(shape[:3]).mean(2)
            losses.sum().backward()
            x.grad.sign_()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                x.clamp_(0, 1)
            if step % RECORD_EVERY == 0 or step == steps:
                history.append(losses.detach())
                recorded.append(step)
    trace = torch.stack(history)                                                            # [T, P, R]
    return [Reconstruction(images=x[p].detach(), labels=labels[p], history=trace[:, p], history_steps=tuple(recorded),
                           iterations=steps) for p in range(len(targets))]
