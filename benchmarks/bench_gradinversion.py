"""GradInversion against Inverting Gradients on trained BatchNorm models, where the BatchNorm prior has
real running statistics to match: presets and variants of them side by side on the same gradients.

    python -m benchmarks.bench_gradinversion [--round 5] [--batches 8] [--iterations 300] [--restarts 2]
        [--labels given|recover] [--threads 1] [--out runs/bench/gradinversion.jsonl]
        --variant inverting --variant gradinversion --variant "signed=gradinversion signed=true lr=0.1"

A variant is ``NAME=PRESET [KEY=VALUE ...]`` (or just ``PRESET``): the preset with ``AttackConfig.replace``
keywords (``tv=0.01`` sets a prior's weight) and prior parameters as ``PRIOR.PARAM=VALUE``
(``tv_power.inner=2``; a prior of a module of your own: ``module.name.weight=0.1``). The model is the
MNIST trainer's ConvNet (width 16, BatchNorm) after ``--round`` rounds (``benchmarks.trained_states``),
in train mode as a FedSGD client runs it; the victims are held-out digits (data seed 0, random labels). Every variant attacks the same observation with the same seed;
each line of ``--out`` holds one (variant, B) result.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.trained_states import trained_model

DATA_SEED = 0


def parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return {"none": None, "true": True, "false": False}.get(text.lower(), text)


def parse_variant(text: str) -> tuple[str, str, dict[str, Any], dict[str, dict[str, Any]]]:
    """(name, preset, overrides, prior parameters) of ``NAME=PRESET KEY=VALUE ...``."""
    head, *items = text.split()
    name, _, preset = head.rpartition("=")
    overrides: dict[str, Any] = {}
    priors: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant items are KEY=VALUE, got {item!r}")
        if "." in key:
            prior, _, param = key.rpartition(".")
            priors.setdefault(prior, {})[param] = parse_value(value)
        else:
            overrides[key] = parse_value(value)
    return name or preset, preset, overrides, priors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="convnet")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--round", type=int, default=5)
    ap.add_argument("--bn", choices=("train", "eval"), default="train")
    ap.add_argument("--batches", default="8")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--labels", choices=("given", "recover"), default="given")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--out", default="runs/bench/gradinversion.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fastleak import data, federated
    from fastleak.attacks import attack
    from fastleak.metrics import evaluate

    model, info = trained_model(args.model, args.round, width=args.width)
    model.train(args.bn == "train")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for b in [int(v) for v in args.batches.split(",")]:
        x, y = data.load("mnist", b, seed=DATA_SEED, labels="random", split="test")
        obs = federated.fedsgd(model, x, y)
        for text in args.variant or ["inverting", "gradinversion"]:
            name, preset, overrides, priors = parse_variant(text)
            started = time.perf_counter()
            r = attack(obs, model, preset, labels=y if args.labels == "given" else None, restarts=args.restarts,
                       iterations=args.iterations, seed=args.seed, priors=priors or None, **overrides)
            seconds = time.perf_counter() - started
            score = evaluate(r.images, x)
            row = {"variant": name, "spec": text, "model": args.model, "width": args.width, "round": args.round,
                   "test_accuracy": info["test_accuracy"], "bn": args.bn, "B": b, "iterations": args.iterations,
                   "restarts": args.restarts, "seed": args.seed, "labels": args.labels,
                   "labels_exact": bool(torch.equal(r.labels.sort().values, y.sort().values)),
                   "psnr": score.psnr, "seconds": seconds, "threads": args.threads}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"B={b} {name:28s} {score.psnr:6.2f} dB  {seconds:6.1f} s", flush=True)


if __name__ == "__main__":
    main()
