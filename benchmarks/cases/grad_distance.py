"""grad_distance (forward + backward to rec) against the per-tensor Python loop of attack code.

The tensor lists have the parameter shapes of a CIFAR ResNet-18 (62 tensors, 11.2M values) and
of the LeNet-style ConvNet of the DLG attack. Their values are timing inputs only (the run time
of these ops does not depend on them).
"""
from __future__ import annotations

import torch

from benchmarks.cases import Case
from fastleak.ops import grad_distance


def resnet18_cifar_shapes(num_classes: int = 10) -> list[tuple[int, ...]]:
    """Parameter shapes of ResNet-18 for 32x32 inputs (3x3 stem, BasicBlocks [2, 2, 2, 2])."""
    shapes: list[tuple[int, ...]] = [(64, 3, 3, 3), (64,), (64,)]
    in_planes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            shapes += [(planes, in_planes, 3, 3), (planes,), (planes,), (planes, planes, 3, 3), (planes,), (planes,)]
            if s != 1 or in_planes != planes:
                shapes += [(planes, in_planes, 1, 1), (planes,), (planes,)]
            in_planes = planes
    return shapes + [(num_classes, 512), (num_classes,)]


def dlg_convnet_shapes(num_classes: int = 10) -> list[tuple[int, ...]]:
    """Parameter shapes of the DLG LeNet: three 5x5 convs of 12 channels and a linear head, 32x32 inputs."""
    return [(12, 3, 5, 5), (12,), (12, 12, 5, 5), (12,), (12, 12, 5, 5), (12,), (num_classes, 768), (num_classes,)]


def eager_l2(rec, target):
    return sum((r - t).pow(2).sum() for r, t in zip(rec, target))


def eager_cosine(rec, target):
    dot = rr = tt = 0
    for r, t in zip(rec, target):
        dot = dot + (r * t).sum()
        rr = rr + r.pow(2).sum()
        tt = tt + t.pow(2).sum()
    return 1 - dot / (rr.sqrt() * tt.sqrt())


EAGER = {"l2": eager_l2, "cosine": eager_cosine}


def _lists(shapes, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    target = [torch.randn(s, generator=gen).to(device) for s in shapes]
    rec = [torch.randn(s, generator=gen).to(device).requires_grad_() for s in shapes]
    return rec, target


def cases(device: str) -> list[Case]:
    out = []
    # The DLG ConvNet has 20k values: both sides are bound by per-op host overhead there.
    for model, shapes, target_ratio in (("resnet18", resnet18_cifar_shapes(), 2.5),
                                        ("dlg-convnet", dlg_convnet_shapes(), 1.2)):
        rec, target = _lists(shapes, device, seed=0)
        values = sum(t.numel() for t in target)
        for metric, eager in EAGER.items():
            def fused(metric=metric, rec=rec, target=target):
                return torch.autograd.grad(grad_distance(rec, target, metric), rec)

            def eager_fn(eager=eager, rec=rec, target=target):
                return torch.autograd.grad(eager(rec, target), rec)

            name = f"grad_distance {metric} fwd+bwd {model} ({len(shapes)} tensors, {values / 1e6:.2f}M) fp32"
            out.append(Case(name, fused=fused, eager=eager_fn, target=target_ratio))
    return out
