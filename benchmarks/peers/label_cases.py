"""The cases of the label comparison: FedSGD gradients of real images whose labels repeat.

    python -m benchmarks.peers.label_cases [--out runs/peers/labels/cases] [--trials 3] [--grid]   # fastleak's venv

A case file holds the keys of a ``cases`` case, so that ``common.model_of`` and
``breaching_side.payloads`` read it as they read those, plus the model's ``state`` and the ``trial``.
Each model runs untrained, built from the registry on CIFAR-10 images as ``cases`` builds it, and in
the final trained state of ``trained_states`` (cached under runs/trained/, trained there if not),
on held-out MNIST digits it never saw. Trial t draws its batch with seed t, with labels drawn at
random so that classes repeat; an untrained model is built with seed t as well. BatchNorm runs in
train mode, as a FedSGD client's does.

``--grid`` adds the FedSGD cells of the trained-model grid (``trained_states.GRID``): every grid
state of both models, at B = 8, 32 and 64, with the grid's label patterns (``bench_labels.draw_labels``,
so trial t is the batch of the grid's trial t); their case names carry the pattern unless it is
random.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.peers.common import output_folder, writer_options
from benchmarks.trained_states import FINAL_ROUND, GRID, trained_model

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


def grid_models() -> tuple[Model, ...]:
    """Every state of the trained-model grid, both models, as the grid's clients run them."""
    options = {"lenet": (), "convnet": (("width", GRID.convnet_width),)}
    return tuple(Model(name, options[name], state, "mnist", name == "convnet" and GRID.bn == "train")
                 for name in GRID.models for state in GRID.states(name))


def pattern_tag(pattern: str) -> str:
    return "" if pattern == "random" else "_" + pattern.replace(":", "").replace(".", "")


def victim(spec: Model, seed: int) -> tuple[torch.nn.Module, int]:
    """The client's model and the seed that rebuilds its architecture from the registry."""
    from fastleak import data, models

    options = dict(spec.options)
    if spec.state == "untrained":
        meta = data.info(spec.dataset)
        return models.build(spec.name, meta.num_classes, in_shape=meta.shape, seed=seed, **options), seed
    model, _ = trained_model(spec.name, int(spec.state.removeprefix("round")), width=options.get("width"))
    return model, 0


def write(spec: Model, batch: int, trial: int, out: Path, pattern: str = "random") -> Path:
    from benchmarks.bench_labels import draw_labels
    from fastleak import data
    from fastleak.federated import fedsgd

    meta = data.info(spec.dataset)
    model, seed = victim(spec, trial)
    model.train(spec.bn_train)
    x, y = draw_labels(spec.dataset, batch, pattern, trial)
    obs = fedsgd(model, x, y)
    if list(obs.param_names) != [n for n, _ in model.named_parameters()]:
        raise RuntimeError(f"{spec.name}: the observation's parameters are not in model.parameters() order")
    name = f"{spec.name}_{spec.state}{pattern_tag(pattern)}_b{batch}_t{trial}"
    path = out / f"{name}.pt"
    torch.save({"name": name, "model": spec.name, "options": dict(spec.options), "seed": seed, "state": spec.state,
                "dataset": spec.dataset, "trial": trial, "num_classes": meta.num_classes,
                "in_shape": tuple(meta.shape), "bn_train": spec.bn_train, "state_dict": model.state_dict(),
                "gradients": [g.clone() for g in obs.pairs[0].shared], "reduction": obs.reduction, "batch": batch,
                "images": x, "labels": y, "pattern": pattern}, path)
    return path


def main() -> None:
    ap = writer_options(__doc__.split("\n\n")[0], "runs/peers/labels/cases")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--grid", action="store_true", help="also the FedSGD cells of the trained-model grid")
    args = ap.parse_args()
    out = output_folder(args.out)
    jobs = [(spec, batch, "random") for spec in models_compared() for batch in BATCHES]
    if args.grid:
        done = set(jobs)
        jobs += [(spec, batch, pattern) for spec in grid_models() for batch in BATCHES
                 for pattern in GRID.label_patterns if not (pattern.startswith("repeat") and batch > 32)
                 and (spec, batch, pattern) not in done]
    for spec, batch, pattern in jobs:
        for trial in range(args.trials):
            print(write(spec, batch, trial, out, pattern), flush=True)


if __name__ == "__main__":
    main()
