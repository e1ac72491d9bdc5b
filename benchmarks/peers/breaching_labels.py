"""breaching's side of the label comparison: every label strategy of breaching 0.1.2, through its public API.

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.breaching_labels [--cases runs/peers/labels/cases]
        [--only convnet_] [--threads 1] [--out runs/peers/labels/breaching]

Runs in the peer venv (``make_venv.sh``), from the repository root, on the case files of ``label_cases``. For every
strategy of ``STRATEGIES`` it takes Inverting Gradients' stock configuration with only
``label_strategy`` overridden, builds the attacker with ``breaching.attacks.prepare_attack`` and
calls its ``prepare_attack`` on the case as breaching_side hands it over, with the labels left
out of the user's metadata (``num_data_points`` is the batch size): the labels that come back are
what breaching recovers from the shared gradient. A strategy that raises is recorded with its
error. ``torch.manual_seed(trial)`` precedes each call: ``random``, ``wainakh-whitebox`` and the
random padding of short label lists draw from it.

Before any strategy runs, the gradient of breaching's reconstruction model at the true batch must
match the case's (relative error at most 1e-4), so that breaching attacks the client's weights in
the client's BatchNorm mode. Writes ``<out>/<case>.pt`` with the labels, errors and times.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import torch

from benchmarks.peers.breaching_side import payloads
from benchmarks.peers.common import (breaching_attacker, load, model_of, options, quiet, run_record,
                                     selected_cases, start)

STRATEGIES = ("iDLG", "analytic", "yin", "wainakh-simple", "wainakh-whitebox", "bias-corrected", "bias-text",
              "random", "exhaustive")


def attacker_for(case: dict, strategy: str):
    return breaching_attacker(model_of(case), torch.nn.CrossEntropyLoss(reduction=case["reduction"]),
                              "invertinggradients", [f"label_strategy={strategy}"])


def gradient_error(case: dict) -> float:
    """Relative distance between the gradient of breaching's reconstruction model at the truth and the case's."""
    attacker = attacker_for(case, "random")
    rec_models, _, _ = attacker.prepare_attack(*payloads(case, model_of(case), labels_given=True))
    model = rec_models[0]
    loss = attacker.loss_fn(model(case["images"]), case["labels"])
    ours = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
    theirs = torch.cat([g.flatten() for g in case["gradients"]])
    return float((ours - theirs).norm() / theirs.norm())


def run(case_path: Path, out: Path) -> Path:
    case = load(case_path)
    error = gradient_error(case)
    if not error <= 1e-4:
        raise RuntimeError(f"{case['name']}: breaching's model gives a gradient {error:.2g} away from the case's")
    result = {"case": case["name"], "gradient_error": error, "strategies": list(STRATEGIES), "labels": {},
              "errors": {}, "seconds": {}, **run_record(peer=True)}
    for strategy in STRATEGIES:
        attacker = attacker_for(case, strategy)
        server, user = payloads(case, model_of(case), labels_given=False)
        torch.manual_seed(case["trial"])
        start = time.perf_counter()
        try:
            with quiet():
                _, labels, _ = attacker.prepare_attack(server, user)
        except Exception as exc:  # a strategy that cannot run here is a result, not a failure of the run
            result["errors"][strategy] = f"{type(exc).__name__}: {exc}"
            continue
        result["seconds"][strategy] = time.perf_counter() - start
        result["labels"][strategy] = labels.detach().long().cpu()
    path = out / f"{case['name']}.pt"
    torch.save(result, path)
    return path


def main() -> None:
    args = options(__doc__.split("\n\n")[0], "runs/peers/labels/cases", "runs/peers/labels/breaching").parse_args()
    out = start(args)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", module=r"breaching|torch\.jit")
    for case_path in selected_cases(args.cases, args.only):
        result = load(run(case_path, out))
        print(f"{case_path.stem}: gradient error {result['gradient_error']:.1e}, {len(result['labels'])} strategies "
              f"ran, failed: {', '.join(result['errors']) or 'none'}", flush=True)


if __name__ == "__main__":
    main()
