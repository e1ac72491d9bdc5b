"""breaching's side of the peer comparison: its Inverting Gradients and DLG through its public API.

    benchmarks/peers/.venv/bin/python benchmarks/peers/breaching_side.py [--cases runs/peers/cases]
        [--only ig_convnet16] [--iterations 300] [--restarts 1] [--threads 1] [--out runs/peers/breaching]

Runs in the peer venv (``make_venv.sh``). For every case file (``cases.py``) it rebuilds the model
from ``fastleak.models`` (pure PyTorch, imported from this source tree) with the case's state
dict, hands breaching the gradient as a user's ``shared_data`` with no buffers (so breaching runs
BatchNorm in train mode when the client did) and the labels given (DLG: none, it optimises them
jointly), and runs
``breaching.attacks.prepare_attack(...).reconstruct`` with the attack's stock configuration
(``get_attack_config``) and only the budget changed. Images stay in [0, 1]: the metadata carries
no mean/std, so breaching's normalisation is the identity.

One untimed one-iteration attack runs first, on each side, so that imports and first calls are
not timed. Before attacking, breaching's own objective is evaluated at the true images; it must be ~0 (the
cosine objective at most 1e-5), otherwise the case is reported as broken and not attacked.
Writes ``<out>/<case>_<attack>_<iterations>x<restarts>.pt`` with the images, labels and times.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import torch
from common import profiled, selected_cases, side_options

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

ATTACKS = {"ig": "invertinggradients", "dlg": "deepleakage"}


def model_of(case: dict) -> torch.nn.Module:
    from fastleak import models  # the registry only: pure PyTorch, no compiled extension

    model = models.build(case["model"], case["num_classes"], in_shape=case["in_shape"], seed=case["seed"],
                         **case["options"])
    model.load_state_dict(case["state_dict"])
    return model.train(case["bn_train"])


def payloads(case: dict, model: torch.nn.Module, labels_given: bool = True) -> tuple[list[dict], list[dict]]:
    from omegaconf import OmegaConf  # breaching reads metadata both as attributes and as keys

    metadata = OmegaConf.create({"shape": list(case["in_shape"]), "modality": "vision", "task": "classification",
                                 "classes": case["num_classes"]})
    buffers = None if case["bn_train"] else [b.clone() for b in model.buffers()]
    server = [{"parameters": [p.detach().clone() for p in model.parameters()], "buffers": buffers,
               "metadata": metadata}]
    user = [{"gradients": [g.clone() for g in case["gradients"]], "buffers": None,
             "metadata": {"num_data_points": case["batch"], "labels": case["labels"].clone() if labels_given else None,
                          "local_hyperparams": None}}]
    return server, user


def objective_at_truth(attacker, case: dict, server: list[dict], user: list[dict]) -> float:
    rec_models, labels, _ = attacker.prepare_attack(server, user)
    attacker.objective.initialize(attacker.loss_fn, attacker.cfg.impl, None)
    value, _ = attacker.objective(rec_models[0], user[0]["gradients"], case["images"].clone(), labels)
    return float(value)


def warm_up(attacker, server: list[dict], user: list[dict]) -> None:
    """One untimed iteration, so that first-call costs fall outside the timed run (as on fastleak's side)."""
    attacker.reconstruct(server, user, server_secrets={}, dryrun=False)


def run(case_path: Path, attack: str, iterations: int, restarts: int, out: Path, profile: bool = False) -> Path:
    import breaching

    case = torch.load(case_path, weights_only=False)
    model = model_of(case)
    overrides = [f"restarts.num_trials={restarts}", "optim.callback=100000"]
    loss = torch.nn.CrossEntropyLoss(reduction=case["reduction"])
    setup = dict(device=torch.device("cpu"), dtype=torch.float)

    def attacker_for(iterations: int):
        cfg = breaching.get_attack_config(ATTACKS[attack], overrides=[f"optim.max_iterations={iterations}", *overrides])
        return breaching.attacks.prepare_attack(model, loss, cfg, setup), cfg

    server, user = payloads(case, model, labels_given=attack != "dlg")  # DLG optimises the labels jointly
    warm_up(attacker_for(1)[0], *payloads(case, model, labels_given=attack != "dlg"))
    attacker, cfg = attacker_for(iterations)
    stem = f"{case['name']}_{attack}_{iterations}x{restarts}"
    at_truth = objective_at_truth(attacker, case, *payloads(case, model))
    result = {"case": case["name"], "attack": attack, "iterations": iterations, "restarts": restarts,
              "objective_at_truth": at_truth, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "peer": f"breaching {getattr(breaching, '__version__', '0.1.2')}"}
    limit = 1e-5 if cfg.objective.type == "cosine-similarity" else 1e-6 * max(1.0, sum(
        float(g.pow(2).sum()) for g in case["gradients"]))
    if not at_truth <= limit:
        result["error"] = f"breaching's objective at the true images is {at_truth:.3g}, not ~0: the case is broken"
    else:
        with profiled(profile, out / f"{stem}_profile.txt"):
            start = time.perf_counter()
            reconstruction, _ = attacker.reconstruct(server, user, server_secrets={}, dryrun=False)
            seconds = time.perf_counter() - start
        result.update(images=reconstruction["data"].detach().clamp(0, 1), labels=reconstruction["labels"],
                      seconds=seconds, seconds_per_iteration=seconds / iterations)
    path = out / f"{stem}.pt"
    torch.save(result, path)
    return path


def main() -> None:
    args = side_options(__doc__.split("\n\n")[0], "runs/peers/breaching").parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for case_path in selected_cases(args.cases, args.only):
        attack = case_path.stem.split("_")[0]
        path = run(case_path, attack, args.iterations, args.restarts, out, args.profile)
        result = torch.load(path, weights_only=False)
        print(f"{case_path.stem}: " + (result.get("error") or
              f"{result['seconds']:.1f} s, {1e3 * result['seconds_per_iteration']:.1f} ms/it, objective at the "
              f"truth {result['objective_at_truth']:.2e}"), flush=True)


if __name__ == "__main__":
    main()
