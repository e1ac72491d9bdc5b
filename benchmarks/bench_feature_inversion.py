"""feature_inversion against inverting on the same gradient: PSNR and seconds at several budgets.

    python -m benchmarks.bench_feature_inversion [--seeds 0,1,2] [--batch 16] [--width 16]
        [--inverting 300,1000] [--features 200,500] [--threads 1] [--out runs/bench/feature_inversion.jsonl] [--table]

A FedSGD client with the plainconv (``--width``, three blocks, BatchNorm in train mode) trains on a batch
of ``--batch`` CIFAR-100 images with unique labels (the shipped samples; seed s draws the batch and builds
the model). The server is given the labels; both presets run one restart with their defaults and only the
budget changed: ``inverting`` (gradient matching, a double backward per step) and ``feature_inversion``
(the classifier's inputs in closed form, then images that produce them: one backward per step). Each run
is appended to ``--out`` (JSON lines); ``--table`` prints the markdown table, seed by seed and the means.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def run(preset: str, iterations: int, seed: int, batch: int, width: int) -> dict:
    from fastleak import data, models
    from fastleak.attacks import attack
    from fastleak.federated import fedsgd
    from fastleak.metrics import evaluate

    x, y = data.load("cifar100", batch, seed=seed, labels="unique")
    model = models.build("plainconv", 100, seed=seed, width=width)
    obs = fedsgd(model, x, y)
    res = attack(obs, model, preset, labels=y, restarts=1, iterations=iterations, seed=seed)
    return {"preset": preset, "iterations": iterations, "seed": seed, "batch": batch, "width": width,
            "psnr": round(evaluate(res.images, x).psnr, 2), "seconds": round(res.wall_time, 2)}


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = sorted({(r["preset"], r["iterations"]) for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    lines = ["| preset | iterations | " + " | ".join(f"seed {s}: PSNR, s" for s in seeds) + " | mean PSNR | mean s |",
             "|---|---:|" + "---|" * len(seeds) + "---:|---:|"]
    for preset, iterations in keys:
        mine = {r["seed"]: r for r in rows if (r["preset"], r["iterations"]) == (preset, iterations)}
        cells = [f"{mine[s]['psnr']:.1f} dB, {mine[s]['seconds']:.1f}" if s in mine else "" for s in seeds]
        lines.append(f"| `{preset}` | {iterations} | " + " | ".join(cells) + " | "
                     f"{statistics.mean(r['psnr'] for r in mine.values()):.1f} | "
                     f"{statistics.mean(r['seconds'] for r in mine.values()):.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--inverting", default="300,1000", help="inverting's budgets")
    ap.add_argument("--features", default="200,500", help="feature_inversion's budgets")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench/feature_inversion.jsonl")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    if args.table:
        print(table(out))
        return
    import torch

    torch.set_num_threads(args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    budgets = [("feature_inversion", int(i)) for i in args.features.split(",")] + \
              [("inverting", int(i)) for i in args.inverting.split(",")]
    for seed in (int(s) for s in args.seeds.split(",")):
        for preset, iterations in budgets:  # the presets in turn, seed by seed: machine load falls on both alike
            row = run(preset, iterations, seed, args.batch, args.width)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
