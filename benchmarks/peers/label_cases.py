"""The cases of the label comparison: FedSGD gradients of real images whose labels repeat.

    python -m benchmarks.peers.label_cases [--out runs/peers/labels/cases] [--trials 3]     # fastleak's venv

A case file holds the keys of a ``cases`` case, so that ``common.model_of`` and
``breaching_side.payloads`` read it as they read those, plus the model's ``state`` and the ``trial``.
Each model runs untrained, built from the registry on CIFAR-10 images as ``cases`` builds it, and in
the final trained state of ``trained_states`` (cached under runs/trained/, trained there if not),
on held-out MNIST digits it never saw. Trial t draws its batch with seed t, with labels drawn at
random so that classes repeat; an untrained model is built with seed t as well. BatchNorm runs in
train mode, as a FedSGD client's does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.peers.common import output_folder, writer_options
from benchmarks.trained_states import FINAL_ROUND, trained_model

BATCHES = (8, 32, 64)


@dataclass(frozen=True)
class Model:
    name: str
    options: tuple[tuple[str, object], ...]
    state: str
    dataset: str
    bn_train: bool


def models_compared() -> tuple[Model, ...]:
    return (Model("lenet", (), "untrained", "cifar10", False),
            Model("convnet", (("width", 16),), "untrained", "cifar10", True),
            Model("lenet", (), f"round{FINAL_ROUND['lenet']}", "mnist", False),
            Model("convnet", (("width", 16),), f"round{FINAL_ROUND['convnet']}", "mnist", True))


def victim(spec: Model, seed: int) -> tuple[torch.nn.Module, int]:
    """The client's model and the seed that rebuilds its architecture from the registry."""
    from fastleak import data, models

    options = dict(spec.options)
    if spec.state == "untrained":
        meta = data.info(spec.dataset)
        return models.build(spec.name, meta.num_classes, in_shape=meta.shape, seed=seed, **options), seed
    model, _ = trained_model(spec.name, int(spec.state.removeprefix("round")), width=options.get("width"))
    return model, 0


def write(spec: Model, batch: int, trial: int, out: Path) -> Path:
    from fastleak import data
    from fastleak.federated import fedsgd

    meta = data.info(spec.dataset)
    model, seed = victim(spec, trial)
    model.train(spec.bn_train)
    x, y = data.load(spec.dataset, batch, seed=trial, labels="random")
    obs = fedsgd(model, x, y)
    if list(obs.param_names) != [n for n, _ in model.named_parameters()]:
        raise RuntimeError(f"{spec.name}: the observation's parameters are not in model.parameters() order")
    name = f"{spec.name}_{spec.state}_b{batch}_t{trial}"
    path = out / f"{name}.pt"
    torch.save({"name": name, "model": spec.name, "options": dict(spec.options), "seed": seed, "state": spec.state,
                "dataset": spec.dataset, "trial": trial, "num_classes": meta.num_classes,
                "in_shape": tuple(meta.shape), "bn_train": spec.bn_train, "state_dict": model.state_dict(),
                "gradients": [g.clone() for g in obs.pairs[0].shared], "reduction": obs.reduction, "batch": batch,
                "images": x, "labels": y}, path)
    return path


def main() -> None:
    ap = writer_options(__doc__.split("\n\n")[0], "runs/peers/labels/cases")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    out = output_folder(args.out)
    for spec in models_compared():
        for batch in BATCHES:
            for trial in range(args.trials):
                print(write(spec, batch, trial, out), flush=True)


if __name__ == "__main__":
    main()
