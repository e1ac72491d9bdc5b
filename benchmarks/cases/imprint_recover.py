"""Imprint recovery (bin inputs and bias differences): one fused pass against the eager reference."""
from __future__ import annotations

import torch

from benchmarks.cases import Case
from fastleak import data, federated, malicious, models
from fastleak.ops import imprint_recover, imprint_recover_reference


def _imprint_gradients() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The bin-layer gradients of real FedSGD clients on imprint models: 256 MNIST test digits with
    512 bins fitted on the train digits; and 4 clients of 64 of those digits each, 128 bins, at once."""
    x, y = data.load("mnist", 256, seed=0)
    public, _ = data.load("mnist", 4000, seed=0, split="train")
    base = models.build("lenet", 10, in_shape=(1, 28, 28))
    out = {}
    for name, batches, bins in (("256 digits, 512 bins", [slice(0, 256)], 512),
                                ("4 clients x 64 digits, 128 bins", [slice(i * 64, i * 64 + 64) for i in range(4)],
                                 128)):
        model = malicious.imprint_model(base, public, malicious.ImprintConfig(bins=bins))
        grads = [federated.fedsgd(model, x[s], y[s]).shared_dict() for s in batches]
        out[name] = (torch.stack([g["block.bins.weight"] for g in grads]),
                     torch.stack([g["block.bins.bias"] for g in grads]))
    return out


def cases(device: str) -> list[Case]:
    out = []
    for name, (w, b) in _imprint_gradients().items():
        w, b = w.to(device), b.to(device)
        out.append(Case(name=f"imprint_recover {name}", fused=lambda w=w, b=b: imprint_recover(w, b),
                        eager=lambda w=w, b=b: imprint_recover_reference(w, b), target=1.5))
    return out
