"""How well the gradient alone chooses a preset's prior weight, and what successive halving keeps.

    python -m benchmarks.tuning --cases grid [--models lenet,convnet] [--rounds 0,1,5,20] [--batches 1,4,8]
                                [--protocols fedsgd,fedavg4] [--budgets 300,2000] [--preset inverting]
                                [--knob tv] [--values 1e-6,1e-5,...] [--select distance|holdout]
                                [--out runs/tuning/grid.jsonl]
    python -m benchmarks.tuning --cases demo,conv64 ...
    python -m benchmarks.tuning --summary runs/tuning/grid.jsonl [--schedules "1/16,1/8,1/4;1/8,1/4,1/2"]

Every cell (a model state, a batch, a protocol and a budget) is attacked once with one row per value
of the knob (a constant setting each, one restart, labels given, attack seed 0), all rows in one
batched run without halving. At fractions of the budget every row's gradient distance (the ranking
criterion: no prior term), its objective and its PSNR against the true batch are recorded. Rows are
independent of each other, so the record answers, for any halving schedule, what the search would
have kept and chosen, and how that compares with the best constant value chosen afterwards with the
truth (the oracle) and with each single value (the presets' former defaults among them).

Cells: ``grid`` the trained-model grid (``trained_states``: the MNIST trainer's LeNet and width-16
ConvNet, BatchNorm in train mode, held-out digits, data seed 0, random labels; FedSGD and FedAvg with
4 local steps at lr 0.01); ``demo`` the demo's client (plainconv width 16 depth 3, train mode, 4
CIFAR-10 images); ``conv64`` an untrained width-64 ConvNet in eval mode on one CIFAR-10 image.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from benchmarks.environment import environment
from benchmarks.trained_states import GRID, trained_model
from fastleak import data, federated, models
from fastleak._keyvalue import key_values
from fastleak.attacks.adam import AdamRun
from fastleak.attacks.lbfgs_run import LBFGSRun
from fastleak.attacks.presets import configure
from fastleak.attacks.problem import Problem
from fastleak.metrics import evaluate

DATA_SEED = MODEL_SEED = ATTACK_SEED = 0
LOCAL_STEPS, LOCAL_LR = 4, 0.01
MARKS = (Fraction(1, 32), Fraction(1, 16), Fraction(1, 8), Fraction(1, 4), Fraction(3, 8), Fraction(1, 2),
         Fraction(5, 8), Fraction(3, 4), Fraction(1))
RUNS = {"adam": AdamRun, "lbfgs": LBFGSRun}


def record_cell(model, obs, x, y, preset: str, iterations: int, knob: str, values: list[float], select: str,
                extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One batched run of ``len(values)`` rows; at every mark, each row's distance, objective and PSNR."""
    config, execution = configure(preset, iterations, search={knob: values}, halving=(), select=select, **extra)
    problem = Problem(model, [obs], config, 1, [y], ATTACK_SEED, torch.device("cpu"), execution)
    run = RUNS[config.optimizer](problem)
    marks = {max(1, int(f * iterations)) for f in MARKS}
    records = []
    for step in range(iterations):
        run.step(step)
        if step + 1 in marks:
            images, soft = run.variables()
            losses = run.final_losses(images, soft)
            held = problem.last_holdout
            records.append({"step": step + 1, "objective": losses.tolist(), "distance": problem.last_distance.tolist(),
                            "holdout": None if held is None else held.tolist(),
                            "psnr": [evaluate(images[q].clamp(0, 1), x).psnr for q in range(problem.Q)]})
    return records


def cells(args: argparse.Namespace):
    """(name, model, observation, images, labels) of every cell asked for."""
    if "grid" in args.cases:
        for name in args.models:
            for r in args.rounds:
                model, info = trained_model(name, r, width=GRID.convnet_width if name == "convnet" else None)
                model.train(GRID.bn == "train")
                for b in args.batches:
                    x, y = data.load("mnist", b, seed=DATA_SEED, labels="random", split="test")
                    for protocol in args.protocols:
                        obs = (federated.fedsgd(model, x, y) if protocol == "fedsgd" else
                               federated.fedavg(model, x, y, local_steps=LOCAL_STEPS, lr=LOCAL_LR))
                        yield (f"{name} round{r} B={b} {protocol}", model, obs, x, y,
                               {"accuracy": info["test_accuracy"]})
    if "demo" in args.cases:
        x, y = data.load("cifar10", 4, seed=DATA_SEED, labels="random")
        model = models.build("plainconv", 10, seed=MODEL_SEED, width=16, depth=3).train()
        yield "demo plainconv B=4 fedsgd", model, federated.fedsgd(model, x, y), x, y, {}
    if "conv64" in args.cases:
        x, y = data.load("cifar10", 1, seed=DATA_SEED, labels="random")
        model = models.build("convnet", 10, seed=MODEL_SEED, width=64).eval()
        yield "convnet64 eval B=1 fedsgd", model, federated.fedsgd(model, x, y), x, y, {}


def measure(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {(r["cell"], r["budget"], r["preset"], r["select"]) for r in map(json.loads, out.open())}
    env = environment("cpu")
    for name, model, obs, x, y, info in cells(args):
        for budget in args.budgets:
            if (name, budget, args.preset, args.select) in done:
                continue
            start = time.perf_counter()
            records = record_cell(model, obs, x, y, args.preset, budget, args.knob, args.values, args.select,
                                  args.set)
            row = {"cell": name, "budget": budget, "preset": args.preset, "select": args.select, "knob": args.knob,
                   "values": args.values, "records": records, "seconds": time.perf_counter() - start,
                   "labels": y.tolist(), "extra": args.set, "info": info, "environment": env}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            best = max(records[-1]["psnr"])
            print(f"{name} {budget} it: oracle {best:.1f} dB, rows {[round(p, 1) for p in records[-1]['psnr']]} "
                  f"({row['seconds']:.0f} s)", flush=True)


def spearman(a: list[float], b: list[float]) -> float:
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        for rank, i in enumerate(order):
            r[i] = float(rank)
        return r

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    num = sum((p - ma) * (q - mb) for p, q in zip(ra, rb))
    den = math.sqrt(sum((p - ma) ** 2 for p in ra) * sum((q - mb) ** 2 for q in rb))
    return num / den if den else float("nan")


def chosen(row: dict[str, Any], schedule: list[Fraction], criterion: str) -> int:
    """The row a search with halving at ``schedule`` would choose, by ``criterion``: "distance", "holdout", or
    "discrepancy:K" (the largest value among the rows whose distance is within K times the smallest)."""
    by_step = {r["step"]: r for r in row["records"]}
    alive = list(range(len(row["values"])))
    for f in schedule:
        rec = by_step[max(1, int(f * row["budget"]))]
        alive = _ranked(row, rec, alive, criterion)[:max(1, len(alive) // 2)]
    return _ranked(row, row["records"][-1], alive, criterion)[0]


def _ranked(row: dict[str, Any], rec: dict[str, Any], alive: list[int], criterion: str) -> list[int]:
    name, _, k = criterion.partition(":")
    if name != "discrepancy":
        return sorted(alive, key=lambda q: _finite(rec[criterion][q]))
    best = min(_finite(rec["distance"][q]) for q in alive)
    within = [q for q in alive if _finite(rec["distance"][q]) <= float(k) * best]
    rest = sorted((q for q in alive if q not in within), key=lambda q: _finite(rec["distance"][q]))
    return sorted(within, key=lambda q: -row["values"][q]) + rest


def _finite(v: float) -> float:
    return v if v is not None and math.isfinite(v) else math.inf


def restricted(row: dict[str, Any], values: list[float] | None) -> dict[str, Any]:
    """``row`` with only the rows of ``values`` (None: all), as if the grid had been those values; its
    ``oracle`` (PSNR, value) stays the best of every measured value."""
    psnr = row["records"][-1]["psnr"]
    best = max(range(len(psnr)), key=lambda q: psnr[q])
    row = {**row, "oracle": (psnr[best], row["values"][best])}
    if not values:
        return row
    keep = [i for i, v in enumerate(row["values"]) if any(math.isclose(v, w) for w in values)]
    records = [{k: (None if v is None else [v[i] for i in keep]) if isinstance(v, list) or v is None else v
                for k, v in rec.items()} for rec in row["records"]]
    return {**row, "values": [row["values"][i] for i in keep], "records": records}


def summary(args: argparse.Namespace) -> None:
    rows = [restricted(json.loads(line), args.grid) for path in args.summary for line in open(path)]
    schedules = [[Fraction(f) for f in s.split(",") if f] for s in args.schedules.split(";")]
    criterion = args.criterion
    print(f"| cell | budget | oracle (value) | {' | '.join(f'const {v:g}' for v in rows[0]['values'])} | "
          f"chosen at the end | " + " | ".join(f"halving {','.join(map(str, s)) or 'none'}" for s in schedules)
          + " | Spearman(distance, -PSNR) |")
    print("|---|---:|" + "---:|" * (len(rows[0]["values"]) + 3 + len(schedules)))
    gaps = {i: [] for i in range(len(schedules))}
    for row in rows:
        final = row["records"][-1]
        psnr = final["psnr"]
        oracle, oracle_value = row["oracle"]
        end = chosen(row, [], criterion)
        picks = [chosen(row, s, criterion) for s in schedules]
        for i, q in enumerate(picks):
            gaps[i].append(oracle - psnr[q])
        rho = spearman([_finite(d) for d in final[criterion.partition(":")[0].replace("discrepancy", "distance")]],
                       [-p for p in psnr])
        print(f"| {row['cell']} | {row['budget']} | {oracle:.1f} ({oracle_value:g}) | "
              + " | ".join(f"{p:.1f}" for p in psnr) + f" | {psnr[end]:.1f} ({row['values'][end]:g}) | "
              + " | ".join(f"{psnr[q]:.1f} ({row['values'][q]:g})" for q in picks) + f" | {rho:.2f} |")
    for i, s in enumerate(schedules):
        g = gaps[i]
        print(f"halving {','.join(map(str, s)) or 'none'}: below the oracle by {statistics.mean(g):.2f} dB on "
              f"average, at most {max(g):.2f} dB; within 1 dB in {sum(v <= 1 for v in g)} of {len(g)} cells")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="grid")
    ap.add_argument("--models", default="lenet,convnet")
    ap.add_argument("--rounds", default="0,1,5,20")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--protocols", default="fedsgd,fedavg4")
    ap.add_argument("--budgets", default="300,2000")
    ap.add_argument("--preset", default="inverting")
    ap.add_argument("--knob", default="tv")
    ap.add_argument("--values", default="1e-6,1e-5,1e-4,1e-3,3e-3,1e-2,3e-2,1e-1")
    ap.add_argument("--select", default="distance", choices=("distance", "holdout"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="other attack options")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/tuning/grid.jsonl")
    ap.add_argument("--summary", nargs="*", help="summarise these result files instead of measuring")
    ap.add_argument("--schedules", default=";1/16,1/8,1/4;1/8,1/4,1/2;1/4,1/2,3/4")
    ap.add_argument("--criterion", default="distance", help="distance, holdout or discrepancy:K")
    ap.add_argument("--grid", type=lambda t: [float(v) for v in t.split(",")], default=None,
                    help="summarise as if the grid had held only these values")
    args = ap.parse_args(argv)
    if args.summary:
        return summary(args)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    torch.set_num_threads(args.threads)
    args.cases = args.cases.split(",")
    args.models = args.models.split(",")
    args.rounds = [int(r) for r in args.rounds.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    args.protocols = args.protocols.split(",")
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.values = [float(v) for v in args.values.split(",")]
    args.set = key_values(args.set, "--set", "lr=0.05")
    measure(args)


if __name__ == "__main__":
    main()
