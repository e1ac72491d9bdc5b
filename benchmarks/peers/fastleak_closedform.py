"""fastleak's side of the closed-form comparison, and the table of both.

    python -m benchmarks.peers.fastleak_closedform [--cases runs/peers/closedform/cases] [--only rgap_]
        [--repeat 3] [--threads 1] [--out runs/peers/closedform/fastleak]
    python -m benchmarks.peers.fastleak_closedform --table [--peer runs/peers/closedform/breaching]

Runs in fastleak's venv on the case files of ``closedform_cases``: ``fastleak.attack`` with the case's
closed-form method (its defaults), the labels given as breaching is given them, on the case's gradient
bit for bit (``fastleak_side.observation``). One untimed call, then the median of ``--repeat`` timed
ones (a call of ten seconds or more: timed once, ``closedform_cases.timed``); the time covers the whole
call (checks, the reconstruction, the gradient residual it reports).
``--table`` scores both sides' images against the truth with ``fastleak.metrics.evaluate`` (PSNR after
matching the images one to one; 100 dB is its cap, an exact answer) and prints one markdown table per
attack, with the time ratio breaching / fastleak (> 1: fastleak is faster).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from benchmarks.peers.closedform_cases import ATTACKS, timed
from benchmarks.peers.common import load, options, paired_results, run_record, selected_cases, start
from benchmarks.peers.fastleak_side import observation, psnr


def run(case_path: Path, repeat: int, out: Path) -> Path:
    from fastleak.attacks import attack

    case = load(case_path)
    model, obs = observation(case)
    seconds, times, res = timed(lambda: attack(obs, model, case["attack"], labels=case["labels"]), repeat)
    path = out / f"{case['name']}.pt"
    torch.save({"case": case["name"], "attack": case["attack"], "images": res.images, "labels": res.labels,
                "seconds": seconds, "times": times, "residual": float(res.restart_losses[res.best_restart]),
                **run_record()}, path)
    return path


def table(cases: Path, ours: Path, peer: Path) -> str:
    """One table per attack: each case's PSNR and median time on both sides, then the case family's median."""
    rows: dict[str, list[str]] = defaultdict(list)
    for _, mine, other in paired_results(ours, peer):
        truth = load(cases / f"{mine['case']}.pt")
        a = psnr(mine, truth)
        if "error" in other:
            rows[mine["attack"]].append(f"| {mine['case']} | {a:.1f} | {mine['seconds']:.3f} | {other['error']} | | |")
            continue
        b = psnr(other, truth)
        rows[mine["attack"]].append(f"| {mine['case']} | {a:.1f} | {mine['seconds']:.3f} | {b:.1f} | "
                                    f"{other['seconds']:.3f} | {other['seconds'] / mine['seconds']:.1f} |")
    out = []
    for attack, lines in rows.items():
        out += [f"{attack} (breaching: {ATTACKS[attack]})", "",
                "| case | PSNR fastleak | s fastleak | PSNR breaching | s breaching | time ratio (breaching / fastleak) |",
                "|---|---:|---:|---:|---:|---:|", *lines, ""]
    return "\n".join(out)


def main() -> None:
    ap = options(__doc__.split("\n\n")[0], "runs/peers/closedform/cases", "runs/peers/closedform/fastleak",
                 peer="runs/peers/closedform/breaching")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.table:
        print(table(Path(args.cases), Path(args.out), Path(args.peer)))
        return
    out = start(args)
    for case_path in selected_cases(args.cases, args.only):
        result = load(run(case_path, args.repeat, out))
        print(f"{case_path.stem}: {result['seconds']:.3f} s, gradient residual {result['residual']:.1e}", flush=True)


if __name__ == "__main__":
    main()
