"""fastleak's side of the peer comparison, and the table of both.

    python -m benchmarks.peers.fastleak_side [--cases runs/peers/cases] [--only ig_convnet16]
        [--iterations 300] [--restarts 1] [--threads 1] [--out runs/peers/fastleak]
    python -m benchmarks.peers.fastleak_side --to-peer --iterations 2000 [--restarts 1] [--only ...]
    python -m benchmarks.peers.fastleak_side --table [--peer runs/peers/breaching] [--out runs/peers/fastleak]
    python -m benchmarks.peers.fastleak_side --seeds-table --peer OUT/breaching --out OUT/fastleak

Runs in fastleak's venv on the case files of ``cases``: the preset of the case name's prefix
(``PRESETS``: ``inverting`` for ``ig_``, ``dlg`` for ``dlg_``, the preset of breaching's name for the
others), or ``--preset`` for every case (give it its own ``--out``), the preset's defaults with only
the budget changed, the labels given as breaching is given them (DLG: optimised jointly on both
sides), one problem per case, after one untimed one-iteration attack (imports and first calls, as on
breaching's side). A case breaching could not attack is tabulated with breaching's error.
``--table`` scores both sides' images against the truth with ``fastleak.metrics.evaluate`` (PSNR
after matching the images one to one) and prints a markdown table with the per-iteration time
ratio breaching / fastleak (> 1: fastleak is faster).

``--seeds-table`` tabulates ``compare_seeds.sh``'s runs: one row per case and seed, with fastleak's
fastest run (over the budgets it ran) that reaches breaching's PSNR.

``--to-peer`` measures the time to the peer's quality: for each case with a breaching result at
``--iterations`` × ``--restarts``, fastleak runs the budgets of ``LADDER`` below ``--iterations``
in ascending order, each a full run with its own schedule as a user would choose it, and stops
at the first whose PSNR reaches breaching's; that run's wall time against breaching's is the
ratio. When no smaller budget reaches it, the ``--iterations`` run itself (already on disk) is
the answer, reached or not; when that run falls short, the smaller budgets are not run.
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.peers.common import (attack_options, load, model_of, paired_results, profiled, run_record,
                                     selected_cases, start, with_gradients)

PRESETS = {"ig": "inverting", "dlg": "dlg", "modern": "modern", "clsattack": "clsattack", "wei": "wei",
           "beyondinfering": "beyondinfering", "multiscale": "multiscale_ghiasi", "seethrough": "seethroughgradients"}
LADDER = (10, 25, 50, 100, 250, 500, 1000)
RECONSTRUCTED_DB = 18.0  # below it a run has not reconstructed the image: no time to its quality


def observation(case: dict):
    """The case's model (its BatchNorm mode set) and an observation whose shared gradient is the case's,
    bit for bit what breaching is given (after checking that fastleak recomputes it)."""
    from fastleak.federated import fedsgd

    model = model_of(case)
    obs = fedsgd(model, case["images"], case["labels"])
    ours, theirs = (torch.cat([g.flatten() for g in gs]) for gs in (obs.pairs[0].shared, case["gradients"]))
    if not (ours - theirs).norm() <= 1e-4 * theirs.norm():
        raise RuntimeError(f"{case['name']}: the recomputed gradient differs from the case's")
    return model, with_gradients(obs, case["gradients"])


def run(case_path: Path, iterations: int, restarts: int, out: Path, profile: bool = False,
        preset: str | None = None, seed: int | None = None) -> Path:
    from fastleak.attacks import attack

    case = load(case_path)
    model, obs = observation(case)
    kind = case["name"].split("_")[0]
    preset = preset or PRESETS[kind]
    labels = None if kind == "dlg" else case["labels"]  # DLG optimises the labels jointly, as in breaching
    stem = f"{case['name']}_{kind}_{iterations}x{restarts}"
    attack(obs, model, preset, labels=labels, restarts=restarts, iterations=1)  # untimed warm-up
    with profiled(profile, out / f"{stem}_profile.txt"):
        res = attack(obs, model, preset, labels=labels, restarts=restarts, iterations=iterations, seed=seed or 0)
    path = out / f"{stem}.pt"
    torch.save({"case": case["name"], "attack": kind, "preset": preset, "seed": seed or 0, "iterations": iterations,
                "restarts": restarts,
                "images": res.images, "labels": res.labels, "seconds": res.wall_time,
                "seconds_per_iteration": res.wall_time / iterations, **run_record()}, path)
    return path


def psnr(result: dict, truth: dict) -> float:
    from fastleak.metrics import evaluate

    return evaluate(result["images"].to(truth["images"].dtype), truth["images"]).psnr


def to_peer(case_path: Path, iterations: int, restarts: int, out: Path, peer: Path,
            preset: str | None = None, seed: int | None = None) -> Path | None:
    """The cheapest ladder budget that reaches the peer's PSNR at ``iterations`` (see the docstring)."""
    truth = load(case_path)
    kind = case_path.stem.split("_")[0]
    other_path = peer / f"{case_path.stem}_{kind}_{iterations}x{restarts}.pt"
    if not other_path.exists() or "error" in (other := load(other_path)):
        return None
    target = psnr(other, truth)
    rungs = []
    full = out / f"{case_path.stem}_{kind}_{iterations}x{restarts}.pt"
    # a full-budget run that falls short settles it: the smaller budgets are not run
    ladder = [b for b in LADDER if b < iterations] if not full.exists() or psnr(load(full), truth) >= target else []
    for budget in ladder + [iterations]:
        path = out / f"{case_path.stem}_{kind}_{budget}x{restarts}.pt"
        if not path.exists():
            path = run(case_path, budget, restarts, out, preset=preset, seed=seed)
        mine = load(path)
        rungs.append({"iterations": budget, "psnr": psnr(mine, truth), "seconds": mine["seconds"]})
        if rungs[-1]["psnr"] >= target:
            break
    summary = out / f"{case_path.stem}_{kind}_{iterations}x{restarts}_to_peer.pt"
    torch.save({"case": case_path.stem, "restarts": restarts, "peer_iterations": iterations, "peer_psnr": target,
                "peer_seconds": other["seconds"], "reached": rungs[-1]["psnr"] >= target, "rungs": rungs}, summary)
    return summary


def to_peer_table(ours: Path) -> str:
    lines = ["| case | restarts | breaching: iterations, PSNR, s | fastleak: iterations to reach it, PSNR, s | "
             "time to the peer's quality (breaching s / fastleak s) |", "|---|---:|---|---|---:|"]
    for path in sorted(ours.glob("*_to_peer.pt")):
        t = load(path)
        last = t["rungs"][-1]
        ratio = f"{t['peer_seconds'] / last['seconds']:.1f}" if t["reached"] else "not reached"
        lines.append(f"| {t['case']} | {t['restarts']} | {t['peer_iterations']}, {t['peer_psnr']:.1f} dB, "
                     f"{t['peer_seconds']:.1f} | {last['iterations']}, {last['psnr']:.1f} dB, {last['seconds']:.1f} | "
                     f"{ratio} |")
    return "\n".join(lines)


def table(cases: Path, ours: Path, peer: Path) -> str:
    lines = ["| case | iterations × restarts | PSNR fastleak | PSNR breaching | s fastleak | s breaching | "
             "per-iteration ratio (breaching / fastleak) |", "|---|---|---:|---:|---:|---:|---:|"]
    for _, mine, other in paired_results(ours, peer):
        truth = load(cases / f"{mine['case']}.pt")
        if "error" in other:
            lines.append(f"| {mine['case']} | {mine['iterations']} × {mine['restarts']} | {psnr(mine, truth):.1f} | "
                         f"{other['error']} | {mine['seconds']:.1f} | | |")
            continue
        a, b = psnr(mine, truth), psnr(other, truth)
        # breaching runs its restarts one after another; per iteration means per iteration of all of them
        ratio = other["seconds"] / mine["seconds"]
        lines.append(f"| {mine['case']} | {mine['iterations']} × {mine['restarts']} | {a:.1f} | {b:.1f} | "
                     f"{mine['seconds']:.1f} | {other['seconds']:.1f} | {ratio:.2f} |")
    return "\n".join(lines)


def seeds_table(cases: Path, ours: Path, peer: Path) -> str:
    """Per seed (``<ours>/s<SEED>`` beside ``<peer>/s<SEED>``, as ``compare_seeds.sh`` writes them):
    breaching's run, fastleak's runs at each budget, and fastleak's time to breaching's quality (its
    fastest run that reaches breaching's PSNR)."""
    lines = ["| case | seed | breaching: iterations, PSNR, s | fastleak: iterations, PSNR, s | "
             "time to the peer's quality (breaching s / fastleak s) |", "|---|---:|---|---|---:|"]
    seeds = [d for d in ours.glob("s*") if d.is_dir() and d.name[1:].isdigit()]
    for seed_dir in sorted(seeds, key=lambda d: int(d.name[1:])):
        runs: dict[str, list[dict]] = {}
        for path in seed_dir.glob("*.pt"):
            mine = load(path)
            runs.setdefault(mine["case"], []).append(mine)
        for case, mine in sorted(runs.items()):
            truth = load(cases / f"{case}.pt")
            others = [load(p) for p in (peer / seed_dir.name).glob(f"{case}_*.pt")]
            if len(others) != 1 or "error" in others[0]:
                continue
            other, target = others[0], psnr(others[0], truth)
            mine = sorted(mine, key=lambda r: r["iterations"])
            scores = [(r["iterations"], psnr(r, truth), r["seconds"]) for r in mine]
            reached = [s for s in scores if s[1] >= target]
            ratio = (f"breaching's run failed (< {RECONSTRUCTED_DB:.0f} dB)" if target < RECONSTRUCTED_DB else
                     f"{other['seconds'] / min(s[2] for s in reached):.1f}" if reached else "not reached")
            lines.append(f"| {case} | {seed_dir.name[1:]} | {other['iterations']}, {target:.1f} dB, "
                         f"{other['seconds']:.1f} | " + "; ".join(f"{i}, {p:.1f} dB, {t:.1f}" for i, p, t in scores)
                         + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = attack_options(__doc__.split("\n\n")[0], "runs/peers/fastleak", peer="runs/peers/breaching")
    ap.add_argument("--to-peer", action="store_true", help="the time to the peer's PSNR at --iterations (docstring)")
    ap.add_argument("--preset", default=None, help="this preset on every case instead of the prefix's (docstring)")
    ap.add_argument("--seeds-table", action="store_true", help="the table of compare_seeds.sh's runs (docstring)")
    args = ap.parse_args()
    if args.seeds_table:
        print(seeds_table(Path(args.cases), Path(args.out), Path(args.peer)))
        return
    if args.table:
        print(table(Path(args.cases), Path(args.out), Path(args.peer)))
        print()
        print(to_peer_table(Path(args.out)))
        return
    out = start(args)
    for case_path in selected_cases(args.cases, args.only):
        if args.to_peer:
            summary = to_peer(case_path, args.iterations, args.restarts, out, Path(args.peer), args.preset, args.seed)
            print(f"{case_path.stem}: " + (f"{summary}" if summary else "no breaching result to reach"), flush=True)
            continue
        path = run(case_path, args.iterations, args.restarts, out, args.profile, args.preset, args.seed)
        result = load(path)
        print(f"{case_path.stem}: {result['seconds']:.1f} s, {1e3 * result['seconds_per_iteration']:.1f} ms/it",
              flush=True)


if __name__ == "__main__":
    main()
