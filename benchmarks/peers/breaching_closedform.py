"""breaching's side of the closed-form comparison: its analytic, rgap and april_analytic configurations.

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.breaching_closedform [--cases runs/peers/closedform/cases]
        [--only rgap_] [--repeat 3] [--threads 1] [--out runs/peers/closedform/breaching]

Runs in the peer venv (``make_venv.sh``), from the repository root. For every case file it rebuilds the
model from ``fastleak.models`` with the case's state dict, hands breaching the gradient and the labels
(as ``breaching_side`` does) and runs ``prepare_attack(...).reconstruct`` with the stock configuration
(``closedform_cases.ATTACKS``). breaching's APRIL reads ``model.model.blocks[0]``, the layout of its
wrapped timm models, so the ViT is wrapped in a module whose ``model`` is the ViT (the parameters keep
their order). One untimed call, then the median of ``--repeat`` timed ones; a call of ten seconds or more
is timed once (``closedform_cases.timed``). A configuration that fails on a model is recorded with its
error. Writes ``<out>/<case>.pt``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from benchmarks.peers.closedform_cases import ATTACKS, timed
from benchmarks.peers.common import (breaching_attacker, breaching_payloads, load, model_of, options,
                                     quiet, run_record, selected_cases, start)


class Wrapped(torch.nn.Module):
    """A model as breaching's wrapped timm models hold it: under ``.model``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def run(case_path: Path, repeat: int, out: Path) -> Path:
    case = load(case_path)
    model = model_of(case)
    if case["attack"] == "april":
        model = Wrapped(model)
    loss = torch.nn.CrossEntropyLoss(reduction=case["reduction"])
    attacker = breaching_attacker(model, loss, ATTACKS[case["attack"]])

    def payloads():
        return breaching_payloads(model, case["in_shape"], case["num_classes"], case["gradients"], case["batch"],
                                  case["labels"])

    def reconstruct(server, user):
        with quiet():
            return attacker.reconstruct(server, user, server_secrets={}, dryrun=False)[0]

    result = {"case": case["name"], "attack": ATTACKS[case["attack"]], **run_record(peer=True)}
    try:
        seconds, times, found = timed(reconstruct, repeat, payloads)
        result.update(images=found["data"].detach().float().clamp(0, 1), labels=found["labels"], seconds=seconds,
                      times=times)
    except Exception as exc:  # a configuration that does not apply to the model: its own error, recorded
        result["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    path = out / f"{case['name']}.pt"
    torch.save(result, path)
    return path


def main() -> None:
    ap = options(__doc__.split("\n\n")[0], "runs/peers/closedform/cases", "runs/peers/closedform/breaching")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out = start(args)
    logging.basicConfig(level=logging.ERROR)
    for case_path in selected_cases(args.cases, args.only):
        result = load(run(case_path, args.repeat, out))
        print(f"{case_path.stem}: " + (result.get("error") or f"{result['seconds']:.3f} s"), flush=True)


if __name__ == "__main__":
    main()
