"""FC-gradient row statistics (sum and min): one fused pass against two eager reductions."""
from __future__ import annotations

import torch

from benchmarks.cases import Case, foolbox_images
from fastleak.ops import fc_row_stats


def _last_layer_gradients() -> dict[str, torch.Tensor]:
    """Real last-layer weight gradients of seeded two-layer MLPs (flattened 32x32 images ->
    hidden ReLU layer -> classes) under cross-entropy on real labelled images."""
    gen = torch.Generator().manual_seed(0)

    def probs_and_features(x, hidden, classes):
        w1 = torch.randn(x.shape[1], hidden, generator=gen) / x.shape[1] ** 0.5
        w2 = torch.randn(hidden, classes, generator=gen) / hidden ** 0.5
        h = torch.relu(x @ w1)
        return torch.softmax(h @ w2, dim=1), h

    # ImageNet photos with their ILSVRC labels, 1000 classes, 2048 features: batch gradient [C, D].
    x, y = foolbox_images("imagenet", 32)
    probs, h = probs_and_features(x.flatten(1), 2048, 1000)
    err = probs - torch.nn.functional.one_hot(y, 1000)
    batch_grad = err.T @ h / len(y)
    # CIFAR-100 images, 100 classes, 512 features: 16 per-example gradients [P, C, D].
    x, y = foolbox_images("cifar100")
    probs, h = probs_and_features(x.flatten(1)[:16], 512, 100)
    err = probs - torch.nn.functional.one_hot(y[:16], 100)
    per_example = err[:, :, None] * h[:, None, :]
    return {"1000x2048 imagenet batch": batch_grad, "16x100x512 cifar100 per-example": per_example}


def eager_row_stats(g: torch.Tensor):
    return g.sum(-1), g.amin(-1)


def cases(device: str) -> list[Case]:
    out = []
    for name, grad in _last_layer_gradients().items():
        g = grad.contiguous().to(device)
        out.append(Case(name=f"fc_row_stats {name}", fused=lambda g=g: fc_row_stats(g),
                        eager=lambda g=g: eager_row_stats(g), target=1.5))
    return out
