"""The cases both sides attack: one FedSGD gradient each, written once and read by both.

    python -m benchmarks.peers.cases [--out runs/peers/cases]          # fastleak's venv

A case file (``torch.save``) holds what a server sees and what only the evaluation may see: the
model's registry name, options and seed, its state dict, whether BatchNorm ran in train mode,
the gradient (one tensor per parameter, in ``model.parameters()`` order), the batch size and the
true images and labels. A case name starts with the attack both sides run on it (``fastleak_side.PRESETS``,
``breaching_side.ATTACKS``). A case with ``trained_round`` attacks the MNIST trainer's global model after
that round (``benchmarks.trained_states``; its BatchNorm running statistics are real) on held-out digits. The model is rebuilt on each side from ``fastleak.models`` (pure PyTorch,
importable without the compiled extension) and loaded with the state dict, so both attack the
same weights, the same gradient and the same images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.peers.common import output_folder, writer_options


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    options: tuple[tuple[str, object], ...]
    batch: int
    bn_train: bool = True
    dataset: str = "cifar10"
    seed: int = 0
    trained_round: int | None = None


CASES = (
    *(Case(f"ig_convnet16_b{b}", "convnet", (("width", 16),), b) for b in (1, 4, 8)),
    *(Case(f"ig_plainconv_b{b}", "plainconv", (("width", 16), ("depth", 3)), b) for b in (1, 4, 8)),
    Case("dlg_lenet_b1", "lenet", (), 1, bn_train=False),
    # the optimisation attacks breaching configures differently (RESULTS.md, "Every optimisation attack of breaching")
    *(Case(f"{attack}_plainconv_b{b}", "plainconv", (("width", 16), ("depth", 3)), b)
      for attack in ("modern", "clsattack", "multiscale") for b in (4, 8)),
    *(Case(f"{attack}_lenet_b1", "lenet", (), 1, bn_train=False) for attack in ("wei", "beyondinfering")),
    Case("seethrough_convnet16r5_b8", "convnet", (("width", 16),), 8, dataset="mnist", trained_round=5),
)


def write(case: Case, out: Path) -> Path:
    from fastleak import data, models
    from fastleak.federated import fedsgd

    meta = data.info(case.dataset)
    if case.trained_round is None:
        x, y = data.load(case.dataset, case.batch, seed=case.seed, labels="random")
        model = models.build(case.model, meta.num_classes, in_shape=meta.shape, seed=case.seed, **dict(case.options))
    else:
        from benchmarks.trained_states import DATASET, trained_model

        if case.dataset != DATASET:
            raise ValueError(f"{case.name}: trained states are trained on {DATASET}, not {case.dataset}")
        x, y = data.load(case.dataset, case.batch, seed=case.seed, labels="random", split="test")
        model, _ = trained_model(case.model, case.trained_round, seed=case.seed, width=dict(case.options).get("width"))
    model.train(case.bn_train)
    obs = fedsgd(model, x, y)
    names = [n for n, _ in model.named_parameters()]
    if list(obs.param_names) != names:
        raise RuntimeError(f"{case.name}: the observation's parameters are not in model.parameters() order")
    path = out / f"{case.name}.pt"
    torch.save({"name": case.name, "model": case.model, "options": dict(case.options), "seed": case.seed,
                "trained_round": case.trained_round,
                "num_classes": meta.num_classes, "in_shape": tuple(meta.shape), "bn_train": case.bn_train,
                "state_dict": model.state_dict(), "gradients": [g.clone() for g in obs.pairs[0].shared],
                "reduction": obs.reduction, "batch": case.batch, "images": x, "labels": y}, path)
    return path


def main() -> None:
    out = output_folder(writer_options(__doc__.split("\n\n")[0], "runs/peers/cases").parse_args().out)
    for case in CASES:
        print(write(case, out))


if __name__ == "__main__":
    main()
