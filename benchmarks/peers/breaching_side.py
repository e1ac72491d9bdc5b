"""breaching's side of the peer comparison: its optimisation attacks through its public API.

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.breaching_side [--cases runs/peers/cases]
        [--only ig_convnet16] [--iterations 300] [--restarts 1] [--threads 1] [--out runs/peers/breaching]

Runs in the peer venv (``make_venv.sh``), from the repository root. For every case file
(``cases``) it rebuilds the model from ``fastleak.models`` (pure PyTorch, imported from this source
tree) with the case's state dict, hands breaching the gradient as a user's ``shared_data`` with no
buffers (so breaching runs BatchNorm in train mode when the client did) and the labels given (DLG:
none, it optimises them jointly), and runs ``breaching.attacks.prepare_attack(...).reconstruct``
with the attack's stock configuration (``get_attack_config``; the case name's prefix picks it,
``ATTACKS``) and only the budget changed. Images stay in [0, 1]: the metadata carries no mean/std,
so breaching's normalisation is the identity.

``--server-statistics`` gives breaching's deep-inversion prior the model's BatchNorm running statistics
where the client ran BatchNorm in train mode: breaching loads a user's or server's buffers only by
switching the model to eval mode, and otherwise resets them to 0 and 1, so stock breaching matches the
dummy batch's statistics to N(0, 1) there. With the option the running statistics are loaded into its
train-mode model (``track_running_stats`` off, so they stay as loaded); give such a run its own
``--out`` (its results record ``server_statistics``).

One untimed one-iteration attack runs first, on each side, so that imports and first calls are
not timed. Before attacking, breaching's own objective is evaluated at the true images; it must be ~0 (the
cosine objective at most 1e-5; the task loss that ``wei`` adds is left out), otherwise the case is
reported as broken and not attacked. An attack breaching cannot run is reported with its error.
Writes ``<out>/<case>_<attack>_<iterations>x<restarts>.pt`` with the images, labels and times.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from benchmarks.peers.common import (attack_options, breaching_attacker, breaching_payloads, load, model_of,
                                     profiled, quiet, run_record, selected_cases, start)

ATTACKS = {"ig": "invertinggradients", "dlg": "deepleakage", "modern": "modern", "clsattack": "clsattack",
           "wei": "wei", "beyondinfering": "beyondinfering", "multiscale": "multiscale_ghiasi",
           "seethrough": "seethroughgradients"}


def payloads(case: dict, model: torch.nn.Module, labels_given: bool = True) -> tuple[list[dict], list[dict]]:
    """The case as breaching is handed it; the model's buffers only when BatchNorm ran in eval mode."""
    return breaching_payloads(model, case["in_shape"], case["num_classes"], case["gradients"], case["batch"],
                              case["labels"] if labels_given else None, buffers=not case["bn_train"])


def objective_at_truth(attacker, case: dict, server: list[dict], user: list[dict]) -> float:
    rec_models, labels, _ = attacker.prepare_attack(server, user)
    attacker.objective.initialize(attacker.loss_fn, attacker.cfg.impl, None)
    value, task_loss = attacker.objective(rec_models[0], user[0]["gradients"], case["images"].clone(), labels)
    return float(value.detach() - attacker.objective.task_regularization * task_loss)


def grey_overrides(case: dict, attack: str) -> list[str]:
    """breaching's TotalVariation convolves three channel groups and fails on one-channel images; there its
    TV term is left out (seethroughgradients: 1e-4 of its objective at a random start on the trained
    MNIST ConvNet, where its deep-inversion term is 15 times the gradient term)."""
    import breaching

    if case["in_shape"][0] == 3:
        return []
    with quiet():
        config = breaching.get_attack_config(ATTACKS[attack])
    return ["regularization.total_variation.scale=0.0"] if "total_variation" in (config.regularization or {}) else []


def with_server_statistics(attacker, case: dict) -> None:
    """Load the case's BatchNorm running statistics into every model breaching reconstructs with, keeping
    the train mode it chose (see the module docs)."""
    build = attacker._construct_models_from_payload_and_buffers
    state = case["state_dict"]

    def construct(server_payload, shared_data):
        models = build(server_payload, shared_data)
        for model in models:
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    buffer.copy_(state[name])
        return models

    attacker._construct_models_from_payload_and_buffers = construct


def warm_up(attacker, server: list[dict], user: list[dict]) -> None:
    """One untimed iteration, so that first-call costs fall outside the timed run (as on fastleak's side)."""
    attacker.reconstruct(server, user, server_secrets={}, dryrun=False)


def run(case_path: Path, attack: str, iterations: int, restarts: int, out: Path, profile: bool = False,
        server_statistics: bool = False, seed: int | None = None) -> Path:
    case = load(case_path)
    model = model_of(case)
    loss = torch.nn.CrossEntropyLoss(reduction=case["reduction"])
    statistics = server_statistics and case["bn_train"]

    def attacker_for(iterations: int):
        attacker = breaching_attacker(model, loss, ATTACKS[attack], [f"optim.max_iterations={iterations}",
                                                                     f"restarts.num_trials={restarts}",
                                                                     "optim.callback=100000", *grey_overrides(case, attack)])
        if statistics:
            with_server_statistics(attacker, case)
        return attacker

    stem = f"{case['name']}_{attack}_{iterations}x{restarts}"
    result = {"case": case["name"], "attack": attack, "iterations": iterations, "restarts": restarts,
              "server_statistics": statistics, "seed": seed, **run_record(peer=True)}
    server, user = payloads(case, model, labels_given=attack != "dlg")  # DLG optimises the labels jointly
    try:
        warm_up(attacker_for(1), *payloads(case, model, labels_given=attack != "dlg"))
    except Exception as exc:  # an attack breaching cannot run (multiscale_ghiasi in 0.1.2)
        result["error"] = f"breaching fails: {type(exc).__name__}: {exc}"
        path = out / f"{stem}.pt"
        torch.save(result, path)
        return path
    attacker = attacker_for(iterations)
    at_truth = objective_at_truth(attacker, case, *payloads(case, model))
    result["objective_at_truth"] = at_truth
    limit = 1e-5 if attacker.cfg.objective.type == "cosine-similarity" else 1e-6 * max(1.0, sum(
        float(g.pow(2).sum()) for g in case["gradients"]))
    if not at_truth <= limit:
        result["error"] = f"breaching's objective at the true images is {at_truth:.3g}, not ~0: the case is broken"
    else:
        if seed is not None:
            torch.manual_seed(seed)
        with profiled(profile, out / f"{stem}_profile.txt"):
            started = time.perf_counter()
            reconstruction, _ = attacker.reconstruct(server, user, server_secrets={}, dryrun=False)
            seconds = time.perf_counter() - started
        result.update(images=reconstruction["data"].detach().clamp(0, 1), labels=reconstruction["labels"],
                      seconds=seconds, seconds_per_iteration=seconds / iterations,
                      overrides=grey_overrides(case, attack))
    path = out / f"{stem}.pt"
    torch.save(result, path)
    return path


def main() -> None:
    ap = attack_options(__doc__.split("\n\n")[0], "runs/peers/breaching")
    ap.add_argument("--server-statistics", action="store_true",
                    help="give the deep-inversion prior the BatchNorm running statistics (module docs)")
    args = ap.parse_args()
    out = start(args)
    logging.basicConfig(level=logging.WARNING)
    for case_path in selected_cases(args.cases, args.only):
        attack = case_path.stem.split("_")[0]
        path = run(case_path, attack, args.iterations, args.restarts, out, args.profile, args.server_statistics,
                   args.seed)
        result = load(path)
        print(f"{case_path.stem}: " + (result.get("error") or
              f"{result['seconds']:.1f} s, {1e3 * result['seconds_per_iteration']:.1f} ms/it, objective at the "
              f"truth {result['objective_at_truth']:.2e}"), flush=True)


if __name__ == "__main__":
    main()
