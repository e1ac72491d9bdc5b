"""breaching's side of the peer comparison: its Inverting Gradients and DLG through its public API.

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.breaching_side [--cases runs/peers/cases]
        [--only ig_convnet16] [--iterations 300] [--restarts 1] [--threads 1] [--out runs/peers/breaching]

Runs in the peer venv (``make_venv.sh``), from the repository root. For every case file
(``cases``) it rebuilds the model from ``fastleak.models`` (pure PyTorch, imported from this source
tree) with the case's state dict, hands breaching the gradient as a user's ``shared_data`` with no
buffers (so breaching runs BatchNorm in train mode when the client did) and the labels given (DLG:
none, it optimises them jointly), and runs ``breaching.attacks.prepare_attack(...).reconstruct``
with the attack's stock configuration (``get_attack_config``) and only the budget changed. Images
stay in [0, 1]: the metadata carries no mean/std, so breaching's normalisation is the identity.

One untimed one-iteration attack runs first, on each side, so that imports and first calls are
not timed. Before attacking, breaching's own objective is evaluated at the true images; it must be ~0 (the
cosine objective at most 1e-5), otherwise the case is reported as broken and not attacked.
Writes ``<out>/<case>_<attack>_<iterations>x<restarts>.pt`` with the images, labels and times.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from benchmarks.peers.common import (attack_options, breaching_attacker, breaching_payloads, load, model_of,
                                     profiled, run_record, selected_cases, start)

ATTACKS = {"ig": "invertinggradients", "dlg": "deepleakage"}


def payloads(case: dict, model: torch.nn.Module, labels_given: bool = True) -> tuple[list[dict], list[dict]]:
    """The case as breaching is handed it; the model's buffers only when BatchNorm ran in eval mode."""
    return breaching_payloads(model, case["in_shape"], case["num_classes"], case["gradients"], case["batch"],
                              case["labels"] if labels_given else None, buffers=not case["bn_train"])


def objective_at_truth(attacker, case: dict, server: list[dict], user: list[dict]) -> float:
    rec_models, labels, _ = attacker.prepare_attack(server, user)
    attacker.objective.initialize(attacker.loss_fn, attacker.cfg.impl, None)
    value, _ = attacker.objective(rec_models[0], user[0]["gradients"], case["images"].clone(), labels)
    return float(value)


def warm_up(attacker, server: list[dict], user: list[dict]) -> None:
    """One untimed iteration, so that first-call costs fall outside the timed run (as on fastleak's side)."""
    attacker.reconstruct(server, user, server_secrets={}, dryrun=False)


def run(case_path: Path, attack: str, iterations: int, restarts: int, out: Path, profile: bool = False) -> Path:
    case = load(case_path)
    model = model_of(case)
    loss = torch.nn.CrossEntropyLoss(reduction=case["reduction"])

    def attacker_for(iterations: int):
        return breaching_attacker(model, loss, ATTACKS[attack], [f"optim.max_iterations={iterations}",
                                                                 f"restarts.num_trials={restarts}",
                                                                 "optim.callback=100000"])

    server, user = payloads(case, model, labels_given=attack != "dlg")  # DLG optimises the labels jointly
    warm_up(attacker_for(1), *payloads(case, model, labels_given=attack != "dlg"))
    attacker = attacker_for(iterations)
    stem = f"{case['name']}_{attack}_{iterations}x{restarts}"
    at_truth = objective_at_truth(attacker, case, *payloads(case, model))
    result = {"case": case["name"], "attack": attack, "iterations": iterations, "restarts": restarts,
              "objective_at_truth": at_truth, **run_record(peer=True)}
    limit = 1e-5 if attacker.cfg.objective.type == "cosine-similarity" else 1e-6 * max(1.0, sum(
        float(g.pow(2).sum()) for g in case["gradients"]))
    if not at_truth <= limit:
        result["error"] = f"breaching's objective at the true images is {at_truth:.3g}, not ~0: the case is broken"
    else:
        with profiled(profile, out / f"{stem}_profile.txt"):
            started = time.perf_counter()
            reconstruction, _ = attacker.reconstruct(server, user, server_secrets={}, dryrun=False)
            seconds = time.perf_counter() - started
        result.update(images=reconstruction["data"].detach().clamp(0, 1), labels=reconstruction["labels"],
                      seconds=seconds, seconds_per_iteration=seconds / iterations)
    path = out / f"{stem}.pt"
    torch.save(result, path)
    return path


def main() -> None:
    args = attack_options(__doc__.split("\n\n")[0], "runs/peers/breaching").parse_args()
    out = start(args)
    logging.basicConfig(level=logging.WARNING)
    for case_path in selected_cases(args.cases, args.only):
        attack = case_path.stem.split("_")[0]
        path = run(case_path, attack, args.iterations, args.restarts, out, args.profile)
        result = load(path)
        print(f"{case_path.stem}: " + (result.get("error") or
              f"{result['seconds']:.1f} s, {1e3 * result['seconds_per_iteration']:.1f} ms/it, objective at the "
              f"truth {result['objective_at_truth']:.2e}"), flush=True)


if __name__ == "__main__":
    main()
