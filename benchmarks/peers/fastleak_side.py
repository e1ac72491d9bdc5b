"""fastleak's side of the peer comparison, and the table of both.

    python benchmarks/peers/fastleak_side.py [--cases runs/peers/cases] [--only ig_convnet16]
        [--iterations 300] [--restarts 1] [--threads 1] [--out runs/peers/fastleak]
    python benchmarks/peers/fastleak_side.py --table [--peer runs/peers/breaching] [--out runs/peers/fastleak]

Runs in fastleak's venv on the case files of ``cases.py``: ``inverting`` for the ``ig_`` cases
and ``dlg`` for the ``dlg_`` ones, the presets' defaults with only the budget changed, the labels
given as breaching is given them (DLG: optimised jointly on both sides), one problem per case. ``--table`` scores both sides' images
against the truth with ``fastleak.metrics.evaluate`` (PSNR after matching the images one to one)
and prints a markdown table with the per-iteration time ratio breaching / fastleak (> 1: fastleak
is faster).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from common import selected_cases, side_options

PRESETS = {"ig": "inverting", "dlg": "dlg"}


def run(case_path: Path, iterations: int, restarts: int, out: Path) -> Path:
    from fastleak import models
    from fastleak.attacks import attack
    from fastleak.federated import Pair, fedsgd

    case = torch.load(case_path, weights_only=False)
    model = models.build(case["model"], case["num_classes"], in_shape=case["in_shape"], seed=case["seed"],
                         **case["options"])
    model.load_state_dict(case["state_dict"])
    model.train(case["bn_train"])
    obs = fedsgd(model, case["images"], case["labels"])
    ours, theirs = (torch.cat([g.flatten() for g in gs]) for gs in (obs.pairs[0].shared, case["gradients"]))
    if not (ours - theirs).norm() <= 1e-4 * theirs.norm():
        raise RuntimeError(f"{case['name']}: the recomputed gradient differs from the case's")
    # the case's own gradient, bit for bit what breaching is given
    obs = dataclasses.replace(obs, pairs=(Pair(state=obs.pairs[0].state, shared=tuple(case["gradients"])),))
    kind = case["name"].split("_")[0]
    labels = None if kind == "dlg" else case["labels"]  # DLG optimises the labels jointly, as in breaching
    res = attack(obs, model, PRESETS[kind], labels=labels, restarts=restarts, iterations=iterations)
    path = out / f"{case['name']}_{kind}_{iterations}x{restarts}.pt"
    torch.save({"case": case["name"], "attack": kind, "iterations": iterations, "restarts": restarts,
                "images": res.images, "labels": res.labels, "seconds": res.wall_time,
                "seconds_per_iteration": res.wall_time / iterations, "threads": torch.get_num_threads(),
                "torch": torch.__version__}, path)
    return path


def table(cases: Path, ours: Path, peer: Path) -> str:
    from fastleak.metrics import evaluate

    lines = ["| case | iterations × restarts | PSNR fastleak | PSNR breaching | s fastleak | s breaching | "
             "per-iteration ratio (breaching / fastleak) |", "|---|---|---:|---:|---:|---:|---:|"]
    for path in sorted(ours.glob("*.pt")):
        mine = torch.load(path, weights_only=False)
        other_path = peer / path.name
        if not other_path.exists():
            continue
        other = torch.load(other_path, weights_only=False)
        truth = torch.load(cases / f"{mine['case']}.pt", weights_only=False)
        if "error" in other:
            lines.append(f"| {mine['case']} | {mine['iterations']} × {mine['restarts']} | | {other['error']} | | | |")
            continue
        a = evaluate(mine["images"], truth["images"]).psnr
        b = evaluate(other["images"].to(truth["images"].dtype), truth["images"]).psnr
        # breaching runs its restarts one after another; per iteration means per iteration of all of them
        ratio = other["seconds"] / mine["seconds"]
        lines.append(f"| {mine['case']} | {mine['iterations']} × {mine['restarts']} | {a:.1f} | {b:.1f} | "
                     f"{mine['seconds']:.1f} | {other['seconds']:.1f} | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = side_options(__doc__.split("\n\n")[0], "runs/peers/fastleak")
    ap.add_argument("--peer", default="runs/peers/breaching")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.table:
        print(table(Path(args.cases), Path(args.out), Path(args.peer)))
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for case_path in selected_cases(args.cases, args.only):
        path = run(case_path, args.iterations, args.restarts, out)
        result = torch.load(path, weights_only=False)
        print(f"{case_path.stem}: {result['seconds']:.1f} s, {1e3 * result['seconds_per_iteration']:.1f} ms/it",
              flush=True)


if __name__ == "__main__":
    main()
