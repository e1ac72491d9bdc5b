"""The client's side: how often ``fastleak.inspect`` finds a malicious model, and how often it cries wolf.

    python -m benchmarks.bench_inspect detection [--batches 8,16,64,128,256] [--seeds 0,1,2]
                                                 [--only trap] [--trap-seeded] [--out runs/bench/inspect_detection.jsonl]
    python -m benchmarks.bench_inspect honest --train-root DIR [--batches 8,64] [--out runs/bench/inspect_honest.jsonl]
    python -m benchmarks.bench_inspect --table [--out ...]

``detection``: every malicious preset (``imprint`` sparse and cumulative, ``imprint_pca``,
``trap``) in front of LeNet, sized for each batch size, on MNIST and CIFAR-size images
(``bench_imprint.pools``: the server fits on its public data, the client inspects with its own
pool), and trap weights planted into the first layer of an unchanged MLP (the weights-only
setting of Boenisch et al.), each inspected without data and with the client's data at its
batch size. A case counts as detected when the verdict is malicious.

``honest``: every registry model at the rounds saved by ``fastleak train`` runs under
``--train-root`` (``DIR/<model>/round_NNN.pt``; the runs used are listed in RESULTS.md), and
user-style models written here (an ``nn.Sequential`` MLP behind a normalisation, a CNN with
BatchNorm, a sigmoid MLP, an MLP initialised to one constant, a scalar-input MLP, a one-convolution
sigmoid network), each at initialisation and after 50 SGD steps on MNIST, inspected without data and
with 1,000 held-out MNIST digits at each batch size; ``--recipes`` adds MLPs of three widths trained
with SGD, SGD with momentum, Adam and AdamW for 1 to 1,000 steps. A case is a false alarm when the
verdict is malicious.

Per case: the verdict, its kind, the alarming signals, the estimated readable share and seconds.
Rows are appended to ``--out`` (JSON lines); ``--table`` prints the summaries.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.bench_imprint import pools

PRESETS = (("imprint", {"structure": "sparse"}), ("imprint", {"structure": "cumulative"}), ("imprint_pca", {}),
           ("trap", {}))
ROUNDS = (0, 1, 2, 5, 10, 20, 50, 100)


def _verdict_row(verdict, seconds: float) -> dict:
    return {"malicious": verdict.malicious, "kind": verdict.kind, "readable": verdict.recoverable_fraction,
            "alarms": sorted({e.signal for e in verdict.evidence if e.alarming}), "seconds": seconds}


def _inspect(model: nn.Module, x: torch.Tensor | None, batch: int, in_shape: tuple[int, ...]) -> dict:
    import fastleak

    started = time.perf_counter()
    verdict = fastleak.inspect(model, x, batch_size=batch, in_shape=in_shape)
    return _verdict_row(verdict, time.perf_counter() - started)


def planted_trap_mlp(public: torch.Tensor, batch: int, seed: int) -> nn.Module:
    """A registry MLP whose first layer holds trap weights for ``batch`` (its class unchanged)."""
    from fastleak import models
    from fastleak.malicious.trap import TrapConfig, trap_weights

    net = models.build("mlp", 10, in_shape=tuple(public.shape[1:]), seed=seed)
    with torch.no_grad():
        net.linear0.weight.copy_(trap_weights(public, TrapConfig(rows=net.linear0.out_features,
                                                                 activation_rate=min(1 / batch, 0.25), seed=seed)))
        net.linear0.bias.zero_()
    return net


def detection(datasets: list[str], batches: list[int], seeds: list[int], only: set[str] | None = None,
              trap_seeded: bool = False) -> list[tuple[dict, callable]]:
    """The detection cases of the module docs; ``only`` keeps the named models, ``trap_seeded`` draws the
    ``trap`` preset's weights with the case's seed (by default they keep the preset's seed 0 and the
    case's seed draws the LeNet behind them)."""
    from fastleak import models
    from fastleak.malicious import presets

    jobs = []
    for dataset in datasets:
        def make(preset, options, b, seed, dataset=dataset):
            x, _, public = pools(dataset)
            shape = tuple(x.shape[1:])
            if preset == "planted trap":
                model = planted_trap_mlp(public, b, seed)
            else:
                seeded = {"seed": seed} if preset == "trap" and trap_seeded else {}
                model = presets.build(preset, models.build("lenet", 10, in_shape=shape, seed=seed), public, b,
                                      **options, **seeded)
            return model, x, shape

        for (preset, options), b, seed in itertools.product(PRESETS + (("planted trap", {}),), batches, seeds):
            key = {"study": "detection", "dataset": dataset, "model": preset + "".join(f" {v}" for v in options.values()),
                   "batch": b, "seed": seed}
            if only is not None and key["model"] not in only:
                continue
            jobs.append((key, lambda preset=preset, options=options, b=b, seed=seed, make=make:
                         make(preset, options, b, seed)))
    return jobs


class NormalisedMLP(nn.Module):
    """A user's MLP that standardises its input first (``nn.Sequential`` of its own layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.net((x - 0.1307) / 0.3081)


def user_models() -> dict[str, callable]:
    def constant_mlp():
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
        nn.init.constant_(net[1].weight, 0.01)
        nn.init.zeros_(net[1].bias)
        return net

    class ScalarMLP(nn.Module):   # reads one number (the mean brightness) through a wide first layer
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(1, 64), nn.ReLU(), nn.Linear(64, 10))

        def forward(self, x):
            return self.net(x.flatten(1).mean(1, keepdim=True))


    return {
        "sequential mlp behind a normalisation": NormalisedMLP,
        "cnn with batchnorm": lambda: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                    nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)),
        "sigmoid mlp": lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Sigmoid(), nn.Linear(128, 10)),
        "constant-initialised mlp": constant_mlp,
        "scalar-input mlp": ScalarMLP,
        "one-convolution sigmoid net": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.Sigmoid(),
                                                             nn.Flatten(), nn.Linear(4 * 14 * 14, 10)),
    }


OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.05),
              "sgd momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
              "adam": lambda p: torch.optim.Adam(p, lr=1e-3),
              "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.05)}
RECIPE_WIDTHS = (16, 64, 512)
RECIPE_STEPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _trained(model: nn.Module, steps: int, seed: int, optimizer: str = "sgd") -> nn.Module:
    from fastleak import data

    x, y = data.load("mnist", 2000, seed=seed, split="train")
    opt = OPTIMIZERS[optimizer](model.parameters())
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(x), (32,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[index]), y[index]).backward()
        opt.step()
    return model.eval()


def honest(train_root: Path | None, recipes: bool = False) -> list[tuple[dict, callable]]:
    """The honest cases of the module docs; ``recipes`` adds MLPs (784-``RECIPE_WIDTHS``-10) trained with each
    of ``OPTIMIZERS`` for each of ``RECIPE_STEPS``."""
    from fastleak import models

    jobs = []
    if train_root is not None:
        for run in sorted(p for p in train_root.iterdir() if (p / "train.json").exists()):
            summary = json.loads((run / "train.json").read_text())
            spec = {**summary["model"], "in_shape": tuple(summary["model"]["in_shape"])}
            if summary["config"]["dataset"] != "mnist" or spec["in_shape"] != (1, 28, 28):
                continue
            for r in ROUNDS:
                path = run / f"round_{r:03d}.pt"
                if not path.exists():
                    continue

                def make(spec=spec, path=path, options=summary["config"]["model_options"]):
                    net = models.build(**{**spec, **options})
                    models.load_state(net, path)
                    return net.eval(), None, spec["in_shape"]

                jobs.append(({"study": "honest", "dataset": "mnist", "model": f"{spec['name']} ({run.name})",
                              "round": r, "seed": 0}, make))
    for name, factory in user_models().items():
        for steps in (0, 50):
            def make(factory=factory, steps=steps):
                torch.manual_seed(0)
                net = factory()
                return (_trained(net, steps, 0) if steps else net.eval()), None, (1, 28, 28)

            jobs.append(({"study": "honest", "dataset": "mnist", "model": f"user: {name}", "round": steps,
                          "seed": 0}, make))
    for optimizer, width, steps in itertools.product(OPTIMIZERS if recipes else (), RECIPE_WIDTHS, RECIPE_STEPS):
        def make(optimizer=optimizer, width=width, steps=steps):
            torch.manual_seed(0)
            net = nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))
            return _trained(net, steps, 0, optimizer), None, (1, 28, 28)

        jobs.append(({"study": "honest", "dataset": "mnist", "model": f"recipe: mlp 784-{width}, {optimizer}",
                      "round": steps, "seed": 0}, make))
    return jobs


def run(key: dict, make, batches: list[int]) -> list[dict]:
    from fastleak import data

    model, pool, shape = make()
    if pool is None:
        pool = data.load("mnist", 1000, seed=0)[0]
    rows = [{**key, "batch": key.get("batch"), "data": False, **_inspect(model, None, key.get("batch") or 64, shape)}]
    for b in ([key["batch"]] if "batch" in key else batches):
        rows.append({**key, "batch": b, "data": True, **_inspect(model, pool, b, shape)})
    return rows


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = []
    detect = [r for r in rows if r["study"] == "detection"]
    if detect:
        lines += ["| model | data | B | inspected without data: detected | with the client's data: detected | "
                  "kinds | readable (mean) | seconds (with data, mean) |", "|---|---|---:|---:|---:|---|---:|---:|"]
        groups: dict[tuple, list[dict]] = {}
        for r in detect:
            groups.setdefault((r["model"], r["dataset"], r["batch"]), []).append(r)
        for (model, dataset, b), g in sorted(groups.items()):
            bare = [r for r in g if not r["data"]]
            with_data = [r for r in g if r["data"]]
            lines.append(f"| {model} | {dataset} | {b} | {sum(r['malicious'] for r in bare)}/{len(bare)} | "
                         f"{sum(r['malicious'] for r in with_data)}/{len(with_data)} | "
                         f"{', '.join(sorted({str(r['kind']) for r in g}))} | "
                         f"{statistics.mean(r['readable'] for r in with_data):.3f} | "
                         f"{statistics.mean(r['seconds'] for r in with_data):.2f} |")
        total = sum(r["malicious"] for r in detect)
        lines += ["", f"Detected: {total} of {len(detect)} inspections.", ""]
    fair = [r for r in rows if r["study"] == "honest"]
    if fair:
        lines += ["| model | rounds or steps | inspections | false alarms | readable with data: max (B) |",
                  "|---|---|---:|---:|---|"]
        groups = {}
        for r in fair:
            groups.setdefault(r["model"], []).append(r)
        for model, g in sorted(groups.items()):
            readable = [(r["readable"], r["batch"]) for r in g if r["data"]]
            top = max(readable) if readable else (None, None)
            lines.append(f"| {model} | {', '.join(str(v) for v in sorted({r['round'] for r in g}))} | {len(g)} | "
                         f"{sum(r['malicious'] for r in g)} | "
                         + ("—" if top[0] is None else f"{top[0]:.3f} (B = {top[1]})") + " |")
        lines += ["", f"False alarms: {sum(r['malicious'] for r in fair)} of {len(fair)} inspections."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", nargs="?", choices=("detection", "honest"))
    ap.add_argument("--datasets", default="mnist,cifar")
    ap.add_argument("--batches", default=None, help="detection: 8,16,64,128,256; honest: 8,64")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--train-root", default=None, help="honest: the folder of 'fastleak train' runs")
    ap.add_argument("--recipes", action="store_true",
                    help="honest: also MLPs trained with several optimizers for 1 to 1,000 steps (honest docs)")
    ap.add_argument("--only", default=None, help="detection: only these models, comma-separated (e.g. trap)")
    ap.add_argument("--trap-seeded", action="store_true",
                    help="detection: the trap preset's weights drawn with each case's seed (default: the preset's 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    out = Path(args.out or f"runs/bench/inspect_{args.study or 'detection'}.jsonl")
    if args.table:
        print(table(out))
        return
    if args.study is None:
        ap.error("name a study: detection or honest")
    torch.set_num_threads(args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.study == "detection":
        batches = [int(b) for b in (args.batches or "8,16,64,128,256").split(",")]
        jobs = detection(args.datasets.split(","), batches, [int(s) for s in args.seeds.split(",")],
                         set(args.only.split(",")) if args.only else None, args.trap_seeded)
    else:
        batches = [int(b) for b in (args.batches or "8,64").split(",")]
        jobs = honest(Path(args.train_root) if args.train_root else None, args.recipes)
    done = {json.dumps({k: v for k, v in json.loads(line).items() if k in ("study", "dataset", "model", "round",
                                                                              "batch", "seed")}, sort_keys=True)
            for line in out.read_text().splitlines() if line.strip()} if out.exists() else set()
    for key, make in jobs:
        if json.dumps({**key, **({} if "batch" in key else {"batch": None})}, sort_keys=True) in done:
            continue
        for row in run(key, make, batches):
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{row['model']} {row['dataset']} B={row['batch']} data={row['data']}: "
                  f"{'MALICIOUS ' + str(row['kind']) if row['malicious'] else 'honest'} "
                  f"readable={row['readable']}", flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
