"""Accuracy and throughput of fastleak.labels on real images (fastleak.data), FedSGD and FedAvg.

    python -m benchmarks.bench_labels --quick
    python -m benchmarks.bench_labels --models lenet,resnet18 --batches 8,32,128 --trials 10 \
        --json runs/bench/labels.json --markdown runs/bench/labels.md

Grid: model x dataset (``--datasets``: cifar10, cifar100, mnist; ``--classes 10,100`` is the older
spelling of cifar10,cifar100) x state (``untrained``; ``roundN``: the global model of the MNIST
trainer after N rounds of FedAvg on the 4,000 train digits, attacked on the 1,000 held-out digits it
never saw, see trained_states; cached under runs/trained/) x BatchNorm
mode (train: batch statistics; eval: running statistics; models without BatchNorm run once) x
protocol (fedsgd, fedavgK: K full-batch local SGD steps at ``--local-lr``) x batch size x label
pattern. Every cell draws ``--trials`` batches (seeds seed..seed+trials-1) and scores every
applicable method on all of them with one batched ``counts_many`` call.

``--grid`` runs the trained-model grid of trained_states.GRID (its models, states, batches, patterns,
protocols and methods; options given as well override them), with the server's public data the
other split (``--public mnist:train``).

Besides the registered methods, ``--methods`` takes: ``auto+public`` and ``posterior+public`` (with
``--public NAME:SPLIT``: ``--public-images`` images of that split, one ``PublicData`` for the whole
run, so each model state, protocol and batch size is fitted once); ``uniform`` (equal counts, the
largest-remainder rounding of B/C) and ``frequency`` (B times the public class frequencies): the
guesses a method must beat; ``set_oracle``: the batch split equally among the classes it holds
(the ceiling of a method that reads only which classes are present); ``population`` (``--population``): ``geng_bias`` with dummies from the
victim's own distribution, which knows the population but not the batch. For methods that report
intervals the cell records ``coverage``: the share of (class, batch) pairs whose true count lies
in the interval, over all classes and over the active ones; for ``auto+public`` also the seconds
per observation once its model state is fitted (``obs_seconds``, a second call on the same
``PublicData``).

Label patterns: those of ``fastleak.data`` (random, repeat:K, unique) and ``dirichlet:A``: each
batch's class proportions drawn from Dirichlet(A) (seeded by the trial), its labels from them, as
non-IID FL clients hold them.

Metrics per method, over the classes that are present in the truth or in the recovery:
LnAcc = share whose count is exact, LeAcc = share whose presence is right; exact = share of
batches whose whole multiset is exact. Cells that the data cannot provide (e.g. "unique" with more
samples than classes that have images) are skipped and listed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

import fastleak.data as D
import fastleak.labels as L
import fastleak.models as M
from benchmarks.environment import environment, write_json
from benchmarks.trained_states import DATASET as TRAINED_DATASET
from benchmarks.trained_states import GRID, trained_model
from fastleak.federated import fedavg, fedsgd

CLASSES_TO_DATASET = {10: "cifar10", 100: "cifar100"}
HAS_BN = {"lenet": False, "convnet": True, "resnet18": True}


def build(name: str, dataset: str, seed: int, width: int) -> torch.nn.Module:
    meta = D.info(dataset)
    return M.build(name, meta.num_classes, in_shape=meta.shape, seed=seed,
                   **({"width": width} if name == "convnet" else {}))


def state_model(name: str, dataset: str, state: str, seed: int, width: int) -> tuple[torch.nn.Module, dict | None]:
    """The model of a grid state: ``untrained`` (built with ``seed``) or ``roundN`` (the MNIST trainer)."""
    if state == "untrained":
        return build(name, dataset, seed, width), None
    if not state.startswith("round") or not state[5:].isdigit():
        raise SystemExit(f"unknown state {state!r}: use untrained or roundN (the MNIST trainer after N rounds)")
    if dataset != TRAINED_DATASET:
        raise SystemExit(f"state {state} is a model trained on {TRAINED_DATASET}; pass --datasets {TRAINED_DATASET}")
    return trained_model(name, int(state[5:]), seed=seed, width=width if name == "convnet" else None)


def methods_for(batch: int, pattern: str, classes: int, has_bias: bool, wanted: list[str]) -> list[str]:
    out = []
    for m in wanted:
        if m == "idlg" and batch != 1:
            continue
        if m == "yin" and (pattern != "unique" or batch > classes):
            continue
        if m in GUESSES or m in ORACLES or "+" in m:
            out.append(m)
            continue
        if m != "auto" and L.registry.get(m).needs_bias and not has_bias:
            continue
        out.append(m)
    return out


def score(found: list[L.LabelCounts] | list[torch.Tensor], truths: list[torch.Tensor]) -> dict:
    ln = le = exact = 0.0
    for f, t in zip(found, truths):
        counts = f.counts if isinstance(f, L.LabelCounts) else f
        active = (t > 0) | (counts > 0)
        ln += float((counts[active] == t[active]).double().mean())
        le += float(((counts[active] > 0) == (t[active] > 0)).double().mean())
        exact += float(torch.equal(counts, t))
    n = len(truths)
    out = {"LnAcc": ln / n, "LeAcc": le / n, "exact": exact / n}
    if found and isinstance(found[0], L.LabelCounts) and all(f.interval is not None for f in found):
        inside = [((t >= f.interval[:, 0]) & (t <= f.interval[:, 1])) for f, t in zip(found, truths)]
        active = [(t > 0) | (f.counts > 0) for f, t in zip(found, truths)]
        out["coverage"] = float(torch.cat(inside).double().mean())
        out["coverage_active"] = float(torch.cat([i[a] for i, a in zip(inside, active)]).double().mean())
        out["pairs"] = sum(len(i) for i in inside)
        out["level"] = found[0].level
    return out


def draw_labels(dataset: str, batch: int, pattern: str, seed: int):
    """A batch of ``dataset``'s test split with the label pattern ``pattern`` (see the module docstring)."""
    if pattern.startswith("dirichlet:"):
        classes = D.info(dataset).num_classes
        rng = np.random.default_rng([DIRICHLET_SEED, seed])
        probs = rng.dirichlet(np.full(classes, float(pattern.partition(":")[2])))
        return D.load(dataset, batch, seed=seed, labels=rng.choice(classes, batch, p=probs).tolist())
    return D.load(dataset, batch, seed=seed, labels=pattern)


def public_data(spec: str | None, images: int) -> L.PublicData | None:
    """The server's public data ``NAME:SPLIT``: up to ``images`` images of that split (natural labels)."""
    from fastleak.labels.public import load_public

    return load_public(spec, images=images) if spec else None


# Real images of other datasets, never the victim's: the attacker's public auxiliary data.
AUXILIARY = {"cifar10": ("cifar100", "imagenet"), "cifar100": ("cifar10", "imagenet"), "mnist": ("fashion_mnist",)}
AUXILIARY_SEED = 1000


def label_config(dummies: str, dataset: str, num_dummies: int, simulations: int = L.LabelConfig.simulations
                 ) -> L.LabelConfig:
    """Noise dummies ("pink", "uniform", "normal"), or "auxiliary": equal shares of the AUXILIARY
    datasets of ``dataset``, at its image side."""
    if dummies != "auxiliary":
        return L.LabelConfig(num_dummies=num_dummies, dummy_distribution=dummies, simulations=simulations)
    sources = AUXILIARY[dataset]
    sizes = [num_dummies // len(sources) + (i < num_dummies % len(sources)) for i in range(len(sources))]
    side = D.info(dataset).size
    parts = [D.load(name, n, seed=AUXILIARY_SEED, size=side)[0] for name, n in zip(sources, sizes)]
    return L.LabelConfig(dummies=torch.cat(parts), simulations=simulations)


def observe(model, x, y, protocol: str, local_lr: float):
    if protocol == "fedsgd":
        return fedsgd(model, x, y)
    steps = int(protocol.removeprefix("fedavg"))
    return fedavg(model, x, y, local_steps=steps, lr=local_lr)


POPULATION_IMAGES = 1000


def population_config(dataset: str) -> L.LabelConfig:
    """The population oracle: dummies drawn from the victim's own distribution (the train split,
    disjoint from the held-out victims). It knows the population but not the batch."""
    return L.LabelConfig(dummies=D.load(dataset, POPULATION_IMAGES, seed=AUXILIARY_SEED, split="train")[0])


GUESSES = ("uniform", "frequency")
DIRICHLET_SEED = 1905
# Knows which classes the batch holds (not how many of each) and splits the batch equally among them:
# the ceiling of a method that reads only presence from the gradient.
ORACLES = ("set_oracle",)


def run_cell(model, dataset, classes, batch, pattern, protocol, trials, seed, methods, local_lr, config,
             population=None, public=None):
    observations, truths = [], []
    for t in range(trials):
        x, y = draw_labels(dataset, batch, pattern, seed + t)
        observations.append(observe(model, x, y, protocol, local_lr))
        truths.append(torch.bincount(y, minlength=classes))
    result = {}
    for m in methods:
        t0 = time.time()
        if m in GUESSES:
            f = torch.full((classes,), 1.0 / classes, dtype=torch.float64) if m == "uniform" else \
                public.frequencies(classes)
            guess = L.largest_remainder(batch * f[None], torch.tensor([batch]))[0]
            result[m] = score([guess] * trials, truths)
            continue
        if m in ORACLES:
            present = torch.stack(truths) > 0
            split = batch * present.double() / present.sum(1, keepdim=True)
            result[m] = score(list(L.largest_remainder(split, torch.full((trials,), batch))), truths)
            continue
        name, _, with_public = m.partition("+")
        found = L.counts_many(observations, model, name, config=config, public=public if with_public else None)
        result[m] = {**score(found, truths), "seconds": time.time() - t0}
        if name == "auto":
            result[m]["chose"] = sorted({f.method for f in found})
        if m == "auto+public":
            t0 = time.time()
            L.counts_many(observations, model, name, config=config, public=public)
            result[m]["obs_seconds"] = (time.time() - t0) / trials
    if population is not None and batch > 1:
        method = "geng_bias" if M.final_linear(model).bias is not None else "geng"
        result["population"] = score(L.counts_many(observations, model, method, config=population), truths)
    return result


def throughput(n: int, batch: int, seed: int) -> list[dict]:
    """Observations/s of counts_many on n FedSGD observations vs a Python loop of counts()."""
    rows = []
    model = M.build("lenet", 10, seed=seed)
    observations = []
    for t in range(n):
        x, y = D.load("cifar10", batch, seed=seed + t, labels="random")
        observations.append(fedsgd(model, x, y))
    for method in ("ilrg", "llg", "geng_bias", "geng_shift", "geng"):
        L.counts_many(observations[:2], model, method)  # warm-up
        t0 = time.time()
        together = L.counts_many(observations, model, method)
        batched = time.time() - t0
        t0 = time.time()
        alone = [L.counts(o, model, method) for o in observations]
        loop = time.time() - t0
        same = all(torch.equal(a.counts, b.counts) for a, b in zip(together, alone))
        rows.append({"method": method, "observations": n, "batch": batch, "batched_obs_per_s": n / batched,
                     "loop_obs_per_s": n / loop, "speedup": loop / batched, "identical_counts": same})
    return rows


def markdown(report: dict) -> str:
    a = report["args"]
    lines = ["## Label-count recovery (fastleak.labels)", "",
             f"Command: `{report['command']}`  ",
             f"Seed {a['seed']}, {a['trials']} batches per cell, torch {report['torch']}, "
             f"{report['threads']} CPU threads ({report['machine']}), {report['seconds']:.0f} s in all.  ",
             "Cell entries: exact-multiset rate / LnAcc / LeAcc, over the classes present in the truth "
             "or the recovery; `-` = method not applicable.", ""]
    if report["trained"]:
        lines.append("Trained states (FedAvg on the 4,000 MNIST train digits; batches from the 1,000 held-out digits):")
        for k, v in report["trained"].items():
            lines.append(f"- {k}: held-out accuracy {v['test_accuracy']:.3f}, {v['train_seconds']:.0f} s of training "
                         f"(`{v['command']}`)")
        lines.append("")
    methods = a["methods"].split(",") + (["population"] if a["population"] else [])
    head = "| model | data | state | BN | protocol | B | pattern | " + " | ".join(methods) + " | auto chose |"
    lines += [head, "|" + "---|" * (len(methods) + 8)]
    for cell in report["cells"]:
        r = cell["result"]
        vals = [(f"{r[m]['exact']:.2f} / {r[m]['LnAcc']:.2f} / {r[m]['LeAcc']:.2f}" if m in r else "-")
                for m in methods]
        chose = ",".join(r["auto"]["chose"]) if "auto" in r else ""
        lines.append(f"| {cell['model']} | {cell['dataset']} | {cell['state']} | {cell['bn']} | {cell['protocol']} | "
                     f"{cell['batch']} | {cell['pattern']} | " + " | ".join(vals) + f" | {chose} |")
    if report["skipped"]:
        lines += ["", "Skipped (the image pool cannot provide the pattern): " + "; ".join(report["skipped"])]
    if report["throughput"]:
        lines += ["", "Throughput, FedSGD observations of an untrained LeNet (one model state):", "",
                  "| method | observations | B | counts_many obs/s | loop obs/s | speedup | same counts |",
                  "|---|---|---|---|---|---|---|"]
        for t in report["throughput"]:
            lines.append(f"| {t['method']} | {t['observations']} | {t['batch']} | {t['batched_obs_per_s']:.1f} | "
                         f"{t['loop_obs_per_s']:.1f} | {t['speedup']:.1f}x | {t['identical_counts']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small grid: lenet and resnet18, C=10, B 1/8/32, 3 trials")
    p.add_argument("--models", default="lenet,convnet,resnet18")
    p.add_argument("--datasets", default="cifar10,cifar100", help="victim datasets: cifar10, cifar100, mnist")
    p.add_argument("--classes", default=None, help="the older spelling of --datasets: 10 (cifar10), 100 (cifar100)")
    p.add_argument("--batches", default="1,8,32,64,128")
    p.add_argument("--patterns", default="unique,random,repeat:4")
    p.add_argument("--states", default="untrained", help="untrained and/or roundN (the MNIST trainer after N "
                   "rounds; needs --datasets mnist), e.g. untrained,round1,round5,round20")
    p.add_argument("--bn", default="train,eval", help="BatchNorm modes for models that have BatchNorm")
    p.add_argument("--protocols", default="fedsgd,fedavg1,fedavg4,fedavg16")
    p.add_argument("--methods", default="idlg,yin,llg,bias,geng,geng_bias,geng_shift,ilrg,rlg,auto")
    p.add_argument("--grid", action="store_true", help="the trained-model grid of trained_states.GRID (its states, "
                   "batches, patterns and protocols; options given as well override them)")
    p.add_argument("--population", action="store_true", help="also score the population oracle: geng_bias with "
                   "dummies from the victim's own distribution")
    p.add_argument("--public", default=None, metavar="NAME:SPLIT",
                   help="the server's public data for the +public methods (with --grid: mnist:train)")
    p.add_argument("--public-images", type=int, default=1000)
    p.add_argument("--simulations", type=int, default=L.LabelConfig.simulations,
                   help="public batches simulated per model state, protocol and batch size (LabelConfig)")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--convnet-width", type=int, default=64)
    p.add_argument("--local-lr", type=float, default=0.01)
    p.add_argument("--num-dummies", type=int, default=L.LabelConfig.num_dummies)
    p.add_argument("--dummies", default=L.LabelConfig.dummy_distribution,
                   choices=("pink", "uniform", "normal", "auxiliary"),
                   help="the inputs of the dummy statistics: noise, or real images of other datasets")
    p.add_argument("--throughput", type=int, default=0, help="observations for the throughput comparison (0: skip)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="runs/bench/labels.json", help="the report, after every cell")
    p.add_argument("--markdown", default=None, help="the report's markdown tables, after every cell")
    argv = sys.argv[1:] if argv is None else list(argv)
    a = p.parse_args(argv)
    if a.grid:
        models = [] if "--models" in argv else ["--models", ",".join(GRID.models)]
        a = p.parse_args([*GRID.label_args(), *argv, *models])
    if a.quick:
        a.models, a.datasets, a.batches, a.trials = "lenet,resnet18", "cifar10", "1,8,32", 3
        a.protocols, a.states, a.throughput = "fedsgd,fedavg4", "untrained", a.throughput or 64
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("fastleak.data").setLevel(logging.ERROR)
    methods = a.methods.split(",")
    report = {"command": "python -m benchmarks.bench_labels " + " ".join(argv),
              "args": vars(a), **environment("cpu"), "cells": [], "skipped": [], "trained": {}, "throughput": []}
    t_start = time.time()
    datasets = [CLASSES_TO_DATASET[int(c)] for c in a.classes.split(",")] if a.classes else a.datasets.split(",")
    for name in a.models.split(","):
        for dataset in datasets:
            classes = D.info(dataset).num_classes
            config = label_config(a.dummies, dataset, a.num_dummies, a.simulations)
            population = population_config(dataset) if a.population else None
            public = public_data(a.public, a.public_images)
            grid_states = a.grid and "--states" not in argv
            for state in (GRID.states(name) if grid_states else a.states.split(",")):
                model, info = state_model(name, dataset, state, a.seed, a.convnet_width)
                if info is not None:
                    report["trained"][f"{name}/{state}"] = info
                has_bias = M.final_linear(model).bias is not None
                for bn in (a.bn.split(",") if HAS_BN[name] else ["none"]):
                    model.train(bn != "eval")
                    for protocol in a.protocols.split(","):
                        for batch in [int(b) for b in a.batches.split(",")]:
                            for pattern in a.patterns.split(","):
                                if batch == 1 and pattern != a.patterns.split(",")[0]:
                                    continue
                                label = f"{name}/{dataset}/B={batch}/{pattern}"
                                try:
                                    draw_labels(dataset, batch, pattern, a.seed)
                                except ValueError:
                                    if label not in report["skipped"]:
                                        report["skipped"].append(label)
                                    continue
                                ms = methods_for(batch, pattern, classes, has_bias, methods)
                                t0 = time.time()
                                result = run_cell(model, dataset, classes, batch, pattern, protocol, a.trials, a.seed,
                                                  ms, a.local_lr, config, population, public)
                                cell = {"model": name, "dataset": dataset, "classes": classes, "state": state, "bn": bn,
                                        "protocol": protocol, "batch": batch, "pattern": pattern,
                                        "seconds": time.time() - t0, "result": result}
                                report["cells"].append(cell)
                                summary = " ".join(f"{m}={r['exact']:.2f}/{r['LnAcc']:.2f}" for m, r in result.items())
                                print(f"[{time.time() - t_start:6.0f}s] {name} {dataset} {state} bn={bn} {protocol} "
                                      f"B={batch} {pattern}: {summary}", flush=True)
                                write(report, a, t_start)
    if a.throughput:
        report["throughput"] = throughput(a.throughput, 8, a.seed)
        for t in report["throughput"]:
            print(f"throughput {t['method']}: batched {t['batched_obs_per_s']:.1f} obs/s, loop "
                  f"{t['loop_obs_per_s']:.1f} obs/s ({t['speedup']:.1f}x), identical={t['identical_counts']}")
    write(report, a, t_start)
    return report


def write(report: dict, a: argparse.Namespace, t_start: float) -> None:
    """The report so far (after every cell, so that an interrupted run keeps its finished cells)."""
    report["seconds"] = time.time() - t_start
    write_json(a.json, report, indent=1)
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(markdown(report))


if __name__ == "__main__":
    main()
