"""The cases of the closed-form comparison: one FedSGD gradient each, for analytic, rgap and april.

    python -m benchmarks.peers.closedform_cases [--out runs/peers/closedform/cases] [--seeds 0,1,2]   # fastleak's venv

A case file holds the keys of a ``cases`` case (so that ``common.model_of`` rebuilds the model on
either side) plus ``attack``: fastleak's closed-form method; breaching's configuration is
``ATTACKS[attack]``. Models are untrained (built from the registry with the case's seed), except
``april_vittrained``: the ViT with APRIL's plain first block trained for ``VIT_EPOCHS`` epochs
(Adam, lr 1e-3, batches of 64, seed 0) on the 4,000 shipped MNIST training digits repeated over three
channels (breaching's APRIL assumes three), attacked on held-out digits; its state is cached under
``runs/peers/closedform/``. Seed s draws the batch (and builds the untrained model) with seed s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.peers.common import median_seconds, output_folder, writer_options

# fastleak's method -> breaching's configuration of the same attack
ATTACKS = {"analytic": "analytic", "rgap": "rgap", "april": "april_analytic"}
VIT_EPOCHS = 20
VIT = (("first_block", "plain"),)
LONG_CALL = 10.0  # seconds: a call this long is timed once, its first-call costs being negligible


def timed(call, repeat: int, fresh_arguments=tuple) -> tuple[float, list[float], object]:
    """``common.median_seconds`` (one untimed call, the median of ``repeat`` timed ones), except for a call of
    ``LONG_CALL`` seconds or more, which is timed once."""
    import time

    started = time.perf_counter()
    result = call(*fresh_arguments())
    first = time.perf_counter() - started
    if first >= LONG_CALL:
        return first, [first], result
    return median_seconds(call, repeat, fresh_arguments)


@dataclass(frozen=True)
class Case:
    stem: str
    attack: str
    model: str
    options: tuple[tuple[str, object], ...]
    batch: int
    dataset: str = "cifar10"
    labels: str = "unique"
    trained: bool = False


CASES = (
    Case("analytic_mlp_b1", "analytic", "mlp", (), 1),                                  # theory: exact
    Case("analytic_linear_b8", "analytic", "mlp", (("hidden", ()),), 8, "cifar100"),    # unique labels: exact
    Case("analytic_mlp_b4", "analytic", "mlp", (("hidden", (512,)),), 4),               # rows one sample reached
    Case("rgap_cnn6_b1", "rgap", "cnn6", (), 1),                                        # R-GAP's network
    Case("rgap_lenet_b1", "rgap", "lenet", (), 1),                                      # biases and sigmoids
    Case("april_vit_b1", "april", "vit", VIT, 1),                                       # at initialisation
    Case("april_vittrained_b1", "april", "vit", VIT, 1, "mnist", trained=True),
)


def mnist_in_colour(split: str, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped MNIST ``split`` (its first ``count`` digits) repeated over three channels, and its labels."""
    import numpy as np

    from fastleak import data

    source = data.open_split("mnist", split=split)
    indices = np.arange(len(source) if count is None else count)
    x = source.pixels(indices).float().div(255).expand(-1, 3, -1, -1).contiguous()
    return x, torch.as_tensor(source.labels[indices], dtype=torch.long)


def trained_vit(cache: Path) -> dict[str, torch.Tensor]:
    """The state of the ViT trained as the module docs say (cached)."""
    from fastleak import models

    path = cache / f"vit_plain_mnist3_e{VIT_EPOCHS}_s0.pt"
    if path.exists():
        return torch.load(path)
    x, y = mnist_in_colour("train")
    model = models.build("vit", 10, in_shape=(3, 28, 28), seed=0, **dict(VIT))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(VIT_EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"vit epoch {epoch + 1}/{VIT_EPOCHS}: loss {loss.item():.3f}", flush=True)
    test_x, test_y = mnist_in_colour("test", 1000)
    with torch.no_grad():
        accuracy = float((model.eval()(test_x).argmax(1) == test_y).double().mean())
    print(f"vit trained: {accuracy:.3f} held-out accuracy", flush=True)
    torch.save(model.state_dict(), path)
    return model.state_dict()


def write(case: Case, seed: int, out: Path) -> Path:
    from fastleak import data, models
    from fastleak.federated import fedsgd

    if case.trained:
        x, y = mnist_in_colour("test")
        pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:case.batch]
        x, y, classes, in_shape = x[pick], y[pick], 10, (3, 28, 28)
    else:
        meta = data.info(case.dataset)
        x, y = data.load(case.dataset, case.batch, seed=seed, labels=case.labels if case.batch > 1 else "random")
        classes, in_shape = meta.num_classes, tuple(meta.shape)
    model = models.build(case.model, classes, in_shape=in_shape, seed=0 if case.trained else seed, **dict(case.options))
    if case.trained:
        model.load_state_dict(trained_vit(out.parent))
    model.eval()
    obs = fedsgd(model, x, y)
    name = f"{case.stem}_s{seed}"
    path = out / f"{name}.pt"
    torch.save({"name": name, "attack": case.attack, "model": case.model, "options": dict(case.options),
                "seed": 0 if case.trained else seed, "num_classes": classes, "in_shape": in_shape, "bn_train": False,
                "state_dict": model.state_dict(), "gradients": [g.clone() for g in obs.pairs[0].shared],
                "reduction": obs.reduction, "batch": case.batch, "images": x, "labels": y}, path)
    return path


def main() -> None:
    ap = writer_options(__doc__.split("\n\n")[0], "runs/peers/closedform/cases")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    out = output_folder(args.out)
    for case in CASES:
        for seed in (int(s) for s in args.seeds.split(",")):
            print(write(case, seed, out), flush=True)


if __name__ == "__main__":
    main()
